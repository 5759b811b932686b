"""The store: every statement against ``columnist.*`` lives in this subpackage.

What the rest of columnist may ask of it is split by role, so each caller types against the
part it uses: ``IngestStore`` (the batch path), ``VocabularyLedger`` (which vocabularies are
applied), ``ReplayStore`` (the in-engine replay), ``WorkbenchReads`` (calibrate, try,
gallery) and ``OperatorSQL`` (the operator's own queries and the worker's guarded page).
``Store`` is all of them; ``ClickHouseStore`` (store.clickhouse) answers for the embedded
engine (``chdb://PATH``) and a server (``http://host:8123``) alike. A store that cannot be
reached raises ``StoreUnavailable``, the one exception callers retry on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, Sequence

from columnist.errors import ConfigurationError, Locked, Unavailable

if TYPE_CHECKING:
    import numpy as np

    from columnist.records import KnownImage, ModelCalibration, ModelState, ScoredBatch
    from columnist.store.replay import Replayer
    from columnist.vocab.schema import Vocabulary

Rows = tuple[list[str], list[tuple]]
"""Column names and rows of a query result."""


class StoreUnavailable(Unavailable, ConnectionError):
    """ClickHouse could not be reached: try again later (as opposed to a statement it refused)."""

    hint = "start the server, or point --db / COLUMNIST_DB at one (chdb://PATH needs no server)"


class NoStore(ConfigurationError):
    """No columnist database at the DSN a reading command was given (readers never create one)."""

    hint = "nothing was tagged or ingested there yet: --db or COLUMNIST_DB names another"


class StoreLocked(Locked, RuntimeError):
    """Another process (a running worker) owns the embedded database."""


class ModelMismatch(ConfigurationError, ValueError):
    """The store's embeddings were made by another model; the message names both."""


class ModelMovedOn(ModelMismatch):
    """The model asked for is one the store moved away from; ``state`` names the one it serves
    (a worker or `tag` started with the old setting takes that one instead)."""

    def __init__(self, message: str, state: "ModelState"):
        super().__init__(message)
        self.state = state


@dataclass(frozen=True)
class QueryLimits:
    """Bounds of a query run for someone else (the worker's control page)."""

    seconds: float = 30.0
    rows: int = 100_000
    bytes: int = 100_000_000


class IngestStore(Protocol):
    """What the batch path (worker and tag) needs."""

    def write(self, batch: "ScoredBatch") -> int:
        """Images, embeddings and scores of a batch, idempotently; returns the score rows."""

    def write_model_rows(self, batch: "ScoredBatch", new_frames_only: bool = False) -> int:
        """One model's embeddings and scores of a batch without its images rows (a migration's
        target; ``new_frames_only``: a re-embed adds the frames it sampled, replaces none)."""

    def delete_images(self, image_ids: Sequence[str]) -> None:
        """Forget these images (a file deleted or moved away): every model's rows."""

    def stored_content(self, model: str, image_ids: Sequence[str]) -> dict[str, str]:
        """image_id -> sha256 of the given ids stored with an embedding of that content."""

    def known_images(self, model: str, sha256s: Sequence[str]) -> dict[str, "KnownImage"]:
        """sha256 -> size and embedding, for content already encoded by ``model``."""

    def embedding_models(self) -> list[str]:
        """Models whose embeddings the store holds (one, normally)."""


class ModelLedger(Protocol):
    """Which model the views read, and where a migration to another stands."""

    def model_state(self) -> "ModelState | None":
        """None for a store no model has written to yet."""

    def set_model_state(self, state: "ModelState") -> None:
        """One insert: a reader sees the old state or the new one."""

    def remember_ref(self, model: str, ref: str) -> None:
        """How ``model`` is loaded here (a folder, a pulled id), kept as the serving model's
        reference when it is the store's first writer, so other processes load the same."""

    def embedding_models(self) -> list[str]: ...


class PromptStore(Protocol):
    """Text embeddings of prompts, per model: each prompt goes through the text tower once."""

    def prompt_embeddings(self, model: str, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], "np.ndarray"]:
        """(language or '', prompt) -> its stored embedding, for the keys stored."""

    def save_prompt_embeddings(self, model: str, keys: Sequence[tuple[str, str]], embeddings: "np.ndarray") -> None: ...


class VocabularyLedger(Protocol):
    """Which vocabularies are applied, and their views."""

    def apply_vocabulary(self, vocab: "Vocabulary", model: str, default: bool = False,
                         model_calibration: "ModelCalibration | None" = None) -> None:
        """Record ``vocab`` as applied and regenerate its view ``columns_<name>`` (and
        ``image_columns`` for the ``default`` vocabulary); ``model_calibration``: the model's
        own default centre and scale, recorded for attributes that do not set theirs."""

    def record_vocabulary_rows(self, vocab: "Vocabulary", model: str,
                               model_calibration: "ModelCalibration | None" = None) -> None:
        """What each attribute means for ``model`` (a migration's target), without applying."""

    def applied_vocabulary(self, name: str) -> "Vocabulary | None": ...

    def create_columns_view(self, vocab: "Vocabulary", view: str) -> None:
        """Make (again) the wide view ``view`` of ``vocab``, and its ``some_`` sibling."""

    def applied_vocabularies(self) -> list["Vocabulary"]: ...

    def was_applied(self, name: str, content_hash: str) -> bool:
        """Whether this exact document was applied at some time."""

    def was_refused(self, name: str, event_sha256: str) -> bool:
        """Whether this exact vocabulary event was refused (and dead-lettered) before."""

    def record_refusal(self, name: str, event_sha256: str, reason: str) -> None: ...

    def count_scores(self, vocab_name: str, codes: Sequence[str], model: str | None = None) -> int:
        """Current scores of these attributes of one vocabulary (counted with FINAL), of
        ``model`` (the serving one by default)."""


class ReplayStore(Protocol):
    def replayer(self, model: str, logit_scale: float, source: str, chunks: int = 0,
                 job: str | None = None, model_calibration: "ModelCalibration | None" = None) -> "Replayer":
        """The in-engine replay of attributes over stored embeddings, with checkpoints."""


class ChangeStore(VocabularyLedger, ReplayStore, Protocol):
    """What a vocabulary change needs: the ledger, and the replay."""


class Statements(Protocol):
    """Plain statements with bound parameters: what the replayer runs (store.replay)."""

    def command(self, sql: str, parameters: dict | None = None, settings: dict | None = None) -> None: ...

    def query(self, sql: str, parameters: dict | None = None) -> Rows: ...

    def scalar(self, sql: str, parameters: dict | None = None) -> Any: ...


class WorkbenchReads(Protocol):
    """Stored embeddings and scores, for calibrate, try and gallery."""

    def read_embeddings(self, model: str, image_ids: Sequence[str] | None = None,
                        sample: int | None = None) -> tuple[list[str], "np.ndarray"]: ...

    def image_uris(self, image_ids: Sequence[str]) -> dict[str, str]:
        """Each id's URI (a video frame's is its video's), for the ids that are stored."""

    def attribute_scores(self, vocab_name: str, code: str) -> list[tuple[str, float, float]]:
        """(image_id, score, logit) of every image for one attribute of one vocabulary."""


class OperatorSQL(Protocol):
    """SQL from people: the operator's own (their rights), or guarded for the control page."""

    def summary(self) -> dict[str, Any]:
        """Counts, applied vocabularies and scores per attribute, for `columnist status`."""

    def query(self, sql: str, parameters: dict | None = None) -> Rows:
        """The operator's own SQL, with the operator's own rights (`columnist query`)."""

    def select(self, sql: str, limits: QueryLimits, fmt: str | None = None) -> "Rows | bytes":
        """One SELECT checked by store.query_guard, run read-only within ``limits``; with
        ``fmt``, the bytes of that ClickHouse output format."""

    def query_raw(self, sql: str, fmt: str) -> bytes:
        """The operator's own SQL, as ClickHouse writes output format ``fmt``."""


class Store(IngestStore, PromptStore, VocabularyLedger, ModelLedger, ReplayStore, WorkbenchReads, OperatorSQL, Protocol):
    dsn: str

    def close(self) -> None: ...


def connect(dsn: str, cluster: str | None = None, create: bool = True) -> Store:
    """The store at ``dsn`` (its schema created or migrated first, unless ``create`` is
    false: a reader, which never creates one: NoStore when there is none); StoreUnavailable
    if unreachable, StoreLocked if another process owns the embedded database."""
    from columnist.store.clickhouse import ClickHouseStore

    return ClickHouseStore.connect(dsn, cluster, create)


def check_model(store: "ModelLedger", model: str, where: str = "the store") -> "ModelState | None":
    """The store's model state (None: no model wrote to it yet), once ``model`` is the one it
    serves: embeddings and scores of two models are never mixed in one view. ModelMovedOn for
    a model it moved away from (a cutover, a retire); ModelMismatch for any other model,
    the target of a running migration included (written beside the serving one, not instead)."""
    state = store.model_state()
    if state is None:
        others = [m for m in store.embedding_models() if m != model]
        if others:
            raise ModelMismatch(f"{where} holds embeddings of model {others[0]!r}, not {model!r}: scores of two "
                                f"models are not comparable. Use --model {others[0]} (or COLUMNIST_MODEL), "
                                f"or move the store to it: columnist model migrate --to {model}")
        return None
    if model == state.serving:
        return state
    if model == state.previous or model in state.retired:
        raise ModelMovedOn(f"{where} moved from model {model!r} to {state.serving!r} (cut over"
                           f"{', then retired the old one' if model in state.retired else ''})", state)
    if model == state.target:
        raise ModelMismatch(f"{where} is moving to model {model!r} and serves {state.serving!r} until the cutover; "
                            f"use --model {state.serving_ref}: new images are encoded with both")
    raise ModelMismatch(f"{where} serves model {state.serving!r}, not {model!r}: scores of two models are not "
                        f"comparable. Use --model {state.serving_ref} (or COLUMNIST_MODEL), or move the store to "
                        f"it: columnist model migrate --to {model}")
