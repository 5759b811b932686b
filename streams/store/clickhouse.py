"""The ClickHouse store: schema, idempotent writes, vocabulary bookkeeping, the column view.

One code path for the embedded engine (``chdb://PATH``) and a server (``http://host:8123``);
only the DSN differs. Every table is a ReplacingMergeTree, so writing a batch twice replaces
rows instead of duplicating them. The wide view ``image_columns`` is regenerated whenever a
vocabulary is applied, with one column per attribute code.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Any, Sequence

from columnist import faults
from columnist.errors import UsageError
from columnist.records import ImageRecord, KnownImage, ModelCalibration, ModelState, ScoredBatch, Scores
from columnist.store import NoStore, QueryLimits, Rows, StoreLocked, StoreUnavailable
from columnist.store.merge_priority import merges_yield
from columnist.watchdog import stop_on_terminal_stop
from columnist.vocab.prompts import render_prompts
from columnist.vocab.schema import Attribute, Vocabulary, vocabulary_from_dict

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from columnist.store.replay import Replayer

IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]*$")
SERVING_MODEL = "(SELECT model FROM columnist.serving_model)"
"""The model whose scores the views and reads show (model_state, one insert at a cutover)."""
SORT_KEYS = {
    "feature_image_attribute": "vocab_name, model, image_id, attribute",
    "vocabulary": "vocab_name, vocab_version, code, model",
}
"""Tables whose sort key changed since stores were first made (create_schema migrates them):
scores were sorted by attribute, then image, until the wide views were measured (schema.sql)."""


class InvalidDSN(UsageError, ValueError):
    """A --db / COLUMNIST_DB that is not a ClickHouse DSN columnist can use."""


class ResultTooLarge(UsageError, ValueError):
    """A result over the control page's byte limit."""


class BadFormat(UsageError, ValueError):
    """Not the name of a ClickHouse output format."""


def check_format(fmt: str) -> None:
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", fmt or ""):
        raise BadFormat(f"{fmt!r} is not a ClickHouse output format name (e.g. CSVWithNames, JSONEachRow, Parquet)")


class _Client:
    """The clickhouse-connect client with two changes: an unreachable server (or an injected
    fault) raises StoreUnavailable, so callers retry on one exception type; and one call at a
    time (the worker prepares a batch on one thread while it writes or replays on another, and
    an http client's session refuses a second query at once: "session is locked")."""

    def __init__(self, client: Any):
        import threading

        self._client = client
        self._lock = threading.RLock()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        def call(*args, **kwargs):
            with self._lock, unavailable_as_store_error():
                return attribute(*args, **kwargs)
        return call


@contextmanager
def unavailable_as_store_error():
    from clickhouse_connect.driver.exceptions import OperationalError

    try:
        yield
    except StoreUnavailable:
        raise
    except (OperationalError, ConnectionError, TimeoutError) as err:
        raise StoreUnavailable(f"cannot reach ClickHouse: {type(err).__name__}: {err}") from err


@contextmanager
def _stderr_captured():
    """The embedded engine prints its own errors on file descriptor 2; hold them back."""
    import os
    import tempfile

    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield capture
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def engine_message(err: BaseException) -> str:
    """The engine's own sentence once: the embedded engine wraps one exception in several
    ('Code: 73. DB::Exception: Code: 73. DB::Exception: Unknown format …')."""
    text = " ".join(str(err).split())
    inner = text.rsplit("DB::Exception: ", 1)[-1]
    codes = re.findall(r"\(([A-Z][A-Z_]{2,})\)", inner)
    inner = re.sub(r"\s*\((version [^)]*|[A-Z][A-Z_]{2,})\)\.?", "", inner).strip()
    return (f"{inner} ({codes[-1]})" if codes else inner)[:2000] or text[:2000]


def normalise_dsn(dsn: str) -> str:
    """Make ``chdb://relative/path`` absolute (clickhouse-connect reads its first part as a host);
    refuse what is not a DSN columnist can use."""
    scheme = dsn.split("://", 1)[0].lower() if "://" in dsn else ""
    if scheme not in ("chdb", "http", "https", "clickhouse", "clickhouses"):
        raise InvalidDSN(f"{dsn[:100]!r} is not a ClickHouse DSN: use chdb://PATH (embedded) or "
                         "http(s)://[user:password@]host:8123 (a server)")
    if not dsn.startswith("chdb://") or dsn.startswith("chdb://memory"):
        return dsn
    if not dsn[len("chdb://"):].strip():  # an unset variable in chdb://$DB: not this folder
        raise InvalidDSN(f"{dsn!r} names no folder: use chdb:///path/to/db")
    path = Path(dsn[len("chdb://"):]).expanduser().resolve()  # one database, one name: links and slashes resolved
    return f"chdb://{path}"


def render_schema(cluster: str | None = None) -> list[str]:
    """The DDL statements, for a single server or ON CLUSTER with Replicated engines."""
    if cluster is not None and not re.fullmatch(r"[A-Za-z0-9_\-]+", cluster):
        raise ValueError(f"cluster name {cluster!r} is not a plain identifier")
    from importlib.resources import files

    text = Template(files("columnist.ddl").joinpath("schema.sql").read_text()).substitute(
        ON_CLUSTER=f"ON CLUSTER `{cluster}`" if cluster else "",
        REPLICATED="Replicated" if cluster else "",
    )
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _timestamps(count: int) -> "pa.Array":
    from columnist.store.arrow import pa

    return pa.array([_now()] * count, type=pa.timestamp("ms", tz="UTC"))


class ClickHouseStore:
    """The Store protocol (columnist.store) on clickhouse-connect."""

    def __init__(self, client: Any, cluster: str | None = None, dsn: str = ""):
        self.client = _Client(client)
        self.cluster = cluster
        self.dsn = dsn
        self._state_seen = False
        self._refs: dict[str, str] = {}

    @classmethod
    def connect(cls, dsn: str, cluster: str | None = None, create: bool = True) -> "ClickHouseStore":
        """StoreLocked when another process owns the embedded database at ``dsn``."""
        import clickhouse_connect

        import columnist.store.arrow  # noqa: F401 - pyarrow told there is no pandas, before any writer thread runs

        dsn = normalise_dsn(dsn)
        if dsn.startswith("chdb:///"):
            path = Path(dsn[len("chdb://"):])
            if not create and not (path / "metadata" / "columnist.sql").is_file():  # opening makes files: not here
                raise NoStore(f"no columnist database at {path}")
            path.mkdir(parents=True, exist_ok=True)
        with _stderr_captured() as captured:
            try:
                with unavailable_as_store_error():
                    store = cls(clickhouse_connect.get_client(dsn=dsn), cluster, dsn)
                if create:
                    store.create_schema()
                elif not store.scalar("SELECT count() FROM system.databases WHERE name = 'columnist'"):
                    raise NoStore(f"no columnist database at {dsn}")
            except Exception as err:
                captured.seek(0)
                engine_said = captured.read().decode(errors="replace")
                if "Cannot lock file" in engine_said or "Cannot lock file" in str(err):
                    raise StoreLocked(f"the database {dsn} is in use by another process (a running worker?)") from None
                sys.stderr.write(engine_said)
                raise
            finally:
                if dsn.startswith("chdb://"):  # the engine, once loaded, took Ctrl-Z for its own debugging
                    stop_on_terminal_stop()  # (opened or not: a locked store's command goes on)
        if dsn.startswith("chdb://"):
            merges_yield()  # the engine starts its merge threads with its first table
        return store

    def close(self) -> None:
        self.client.close()

    def create_schema(self) -> None:
        """Tables and views, and the migrations of stores older columnists made; skipped (one
        query instead of 0.15-0.2 s of statements, at every start) when this columnist's
        schema is in place: its digest is the comment of the images table."""
        statements = render_schema(self.cluster)
        digest = "columnist schema " + hashlib.sha256("\n".join([*statements, repr(SORT_KEYS)]).encode()).hexdigest()[:16]
        if not self.cluster and self._schema_is(digest, statements):  # a cluster's replicas each need the statements
            return
        for statement in statements:
            self.client.command(statement)
        for table, key in SORT_KEYS.items():
            self._migrate_sort_key(table, key)
        self._index_older_embeddings()
        self._first_model_state()
        self._remake_older_views()
        self.client.command(f"ALTER TABLE columnist.images{self._on_cluster} MODIFY COMMENT '{digest}'")

    @property
    def _on_cluster(self) -> str:
        """What DDL says to run on every replica of a cluster (nothing on a single server)."""
        return f" ON CLUSTER `{self.cluster}`" if self.cluster else ""

    def _index_older_embeddings(self) -> None:
        """Embeddings written before their content index existed get it, once, at the opening
        (a mutation that writes only the index): a store checked at every start, as a
        cluster's are, does not rewrite its largest table each time."""
        unindexed = self.scalar("SELECT count() FROM system.parts WHERE database = 'columnist' "
                                "AND table = 'image_embedding' AND active AND rows > 0 "
                                "AND secondary_indices_compressed_bytes = 0")
        if unindexed:
            import logging

            logging.getLogger(__name__).info("indexing the content of %d older parts of the embeddings", unindexed)
            self.client.command(f"ALTER TABLE columnist.image_embedding{self._on_cluster} MATERIALIZE INDEX sha256_index "
                                "SETTINGS mutations_sync = 1")  # it reads one column: seconds for 10M rows

    def _schema_is(self, digest: str, statements: list[str]) -> bool:
        """Whether every table and view of ``statements`` is there, sorted as SORT_KEYS say,
        every wide view has its ``some_`` companion and the images table carries ``digest``
        (what an older columnist did to the store, or a table dropped by hand, is seen: the
        statements and migrations run again)."""
        _, rows = self.query("SELECT name, comment, sorting_key FROM system.tables WHERE database = 'columnist'")
        tables = {name: (comment, key) for name, comment, key in rows}
        named = re.findall(r"^CREATE (?:TABLE IF NOT EXISTS|OR REPLACE VIEW) columnist\.(\w+)", "\n".join(statements),
                           re.MULTILINE)
        wide = [name for name in tables if name == "image_columns" or name.startswith("columns_")]
        return tables.get("images", ("",))[0] == digest and all(name in tables for name in named) \
            and all(tables.get(table, ("", ""))[1] == key for table, key in SORT_KEYS.items()) \
            and all(f"some_{name}" in tables for name in wide)

    def _remake_older_views(self) -> None:
        """Wide views an older columnist made (without their ``some_`` companion, and reading
        with FINAL) are made again from their applied vocabulary, once."""
        _, rows = self.query("SELECT name, create_table_query FROM system.tables WHERE database = 'columnist' "
                             "AND engine = 'View' AND (name = 'image_columns' OR startsWith(name, 'columns_'))")
        views = dict(rows)
        older = [name for name in views if f"some_{name}" not in views]
        if not older:
            return
        applied = {vocab.name: vocab for vocab in self.applied_vocabularies()}
        for name in older:
            named = re.search(r"vocab_name = '(\w+)'", views[name])
            vocab = applied.get(named.group(1)) if named else None
            if vocab is not None:
                self.create_columns_view(vocab, name)

    MIGRATION_CLOCK_SLACK_MS = 10 * 60 * 1000
    """How far a writer's clock may lag the server's while a sort-key migration copies its table."""

    def _migrate_sort_key(self, table: str, key: str) -> None:
        """A store made by an older columnist sorts ``table`` by an older key (scores before
        vocabularies lived side by side, or before two models did): copy its rows into a
        table sorted by ``key``, swap the two, then copy again what was written to the old one
        meanwhile. A row with a model-less key cannot exist twice. Every process on a store
        must run the same columnist: an older one would sort the table back by its own key."""
        def current() -> str:
            return self.scalar("SELECT sorting_key FROM system.tables WHERE database = 'columnist' "
                               "AND name = {t:String}", {"t": table})
        if current() == key:
            return
        import logging
        import os

        logging.getLogger(__name__).warning("re-sorting columnist.%s by (%s), once: its rows are copied", table, key)

        on_cluster = self._on_cluster
        copy = f"columnist.{table}_migrating_{os.getpid()}"  # two workers migrating at once use two copies
        create = next(s for s in render_schema(self.cluster) if f"columnist.{table} " in s and "CREATE TABLE" in s)
        version = re.search(r"ReplacingMergeTree\((\w+)\)", create).group(1)  # updated_at, applied_at
        started_ms = self.scalar("SELECT toUnixTimestamp64Milli(now64(3))")
        self.client.command(create.replace(f"columnist.{table} ", f"{copy} ", 1))
        self.client.command(f"INSERT INTO {copy} SELECT * FROM columnist.{table}")
        if current() != key:  # nobody else swapped meanwhile
            self.client.command(f"EXCHANGE TABLES columnist.{table} AND {copy}{on_cluster}")
            # rows another process wrote while the copy ran are in the old table: copied again
            # (a writer's clock may lag the server's; a row copied twice is one row once merged)
            self.client.command(f"INSERT INTO columnist.{table} SELECT * FROM {copy} WHERE "
                                f"toUnixTimestamp64Milli({version}) >= {{since:Int64}}",
                                parameters={"since": started_ms - self.MIGRATION_CLOCK_SLACK_MS})
        self.client.command(f"DROP TABLE {copy}{on_cluster}")

    def _first_model_state(self) -> None:
        """A store made before models could change holds one model's embeddings and no state
        row: that model serves (what loads it is unknown: its name)."""
        if self.scalar("SELECT count() FROM columnist.model_state"):
            return
        models = self.embedding_models()
        if len(models) == 1:
            self.set_model_state(ModelState(models[0], models[0]))

    def _first_writer_serves(self, model: str) -> None:
        """A store without a state row is served by the model that writes to it first."""
        if self.model_state() is None:
            self.set_model_state(ModelState(model, self._refs.get(model, model)))
        self._state_seen = True

    def remember_ref(self, model: str, ref: str) -> None:
        self._refs[model] = ref
        state = self.model_state()
        if state is not None and state.serving == model == state.serving_ref and ref != model:
            self.set_model_state(replace(state, serving_ref=ref))  # recorded by name only, before refs were kept

    # -- which model serves ------------------------------------------------------------

    def model_state(self) -> ModelState | None:
        _, rows = self.query("SELECT serving, serving_ref, target, target_ref, previous, previous_ref, retired "
                             "FROM columnist.model_state FINAL")
        return ModelState(*rows[0][:6], tuple(rows[0][6])) if rows else None

    def set_model_state(self, state: ModelState) -> None:
        self.command("INSERT INTO columnist.model_state (serving, serving_ref, target, target_ref, previous, "
                     "previous_ref, retired, changed_at) VALUES ({s:String}, {sr:String}, {t:String}, {tr:String}, "
                     "{p:String}, {pr:String}, {r:Array(String)}, now64(3))",
                     {"s": state.serving, "sr": state.serving_ref, "t": state.target, "tr": state.target_ref,
                      "p": state.previous, "pr": state.previous_ref, "r": list(state.retired)})

    # -- writes ------------------------------------------------------------------------

    def write(self, batch: ScoredBatch) -> int:
        """Write a batch: embeddings, scores, videos' frames, and the images rows last (an
        image row means the rest is there); return the number of score rows."""
        if not batch.images:
            return 0
        with unavailable_as_store_error():  # an injected fault looks like a lost connection
            faults.point("store_write")
        if not self._state_seen:
            self._first_writer_serves(batch.model)
        rows = self.write_model_rows(batch)
        self._replace_frames(batch)
        self.write_images(batch.images)
        return rows

    def write_model_rows(self, batch: ScoredBatch, new_frames_only: bool = False) -> int:
        """One model's embeddings and scores of a batch, without its images rows: a migration's
        second model (written before the batch itself), or a re-embed (``new_frames_only``:
        the frames a video is sampled at are added, none is replaced)."""
        self.write_embeddings(batch.model, [i for i, _ in batch.embedded], batch.embeddings,
                              [sha for _, sha in batch.embedded])
        faults.point("after_embeddings")
        rows = sum(self.write_scores(batch.scored, scores, batch.model) for scores in batch.scores)
        if new_frames_only and batch.frames:
            self._insert_frames(batch.frames)
        return rows

    def _replace_frames(self, batch: ScoredBatch) -> None:
        """The batch's videos' frames; frames an earlier version of one of its ids had (another
        video, or another sampling) go, with their embeddings and scores; and so does the
        embedding of an image an id named before it named a video (a video's are its frames')."""
        ids = [i.image_id for i in batch.images]
        videos = [i.image_id for i in batch.images if i.kind == "video"]
        if videos:
            was_image = self.rows("SELECT DISTINCT image_id FROM columnist.image_embedding "
                                  "WHERE image_id IN {v:Array(String)}", {"v": videos})
            if was_image:
                self.command("DELETE FROM columnist.image_embedding WHERE image_id IN {v:Array(String)}",
                             {"v": [i for (i,) in was_image]})
        new = {f.frame_id for f in batch.frames}
        rows = self.rows("SELECT DISTINCT frame_id FROM columnist.video_frames WHERE video_id IN {ids:Array(String)}",
                         {"ids": ids})
        stale = sorted({frame for (frame,) in rows} - new)
        if stale:
            for table, column in (("image_embedding", "image_id"), ("feature_image_attribute", "image_id"),
                                  ("video_frames", "frame_id")):
                self.command(f"DELETE FROM columnist.{table} WHERE {column} IN {{stale:Array(String)}}", {"stale": stale})
        if batch.frames:
            self._insert_frames(batch.frames)

    def _insert_frames(self, frames) -> None:
        from columnist.store.arrow import pa, strings

        self.client.insert_arrow("columnist.video_frames", pa.table({
            "video_id": strings(f.video_id for f in frames),
            "frame_id": strings(f.frame_id for f in frames),
            "seconds": pa.array([f.seconds for f in frames], pa.float64()),
            "created_at": _timestamps(len(frames)),
        }))

    def delete_images(self, image_ids: Sequence[str]) -> None:
        """Forget images (and videos with their frames): the images rows first, so the views drop
        them at once, then every model's embeddings and scores."""
        ids = list(image_ids)
        rows = self.rows("SELECT frame_id FROM columnist.video_frames WHERE video_id IN {ids:Array(String)}",
                         {"ids": ids})
        everything = ids + [frame for (frame,) in rows]
        self.command("DELETE FROM columnist.images WHERE image_id IN {ids:Array(String)}", {"ids": ids})
        for table, column in (("feature_image_attribute", "image_id"), ("image_embedding", "image_id"),
                              ("video_frames", "video_id")):
            self.command(f"DELETE FROM columnist.{table} WHERE {column} IN {{ids:Array(String)}}", {"ids": everything})

    def write_images(self, images: Sequence[ImageRecord]) -> None:
        from columnist.store.arrow import pa, strings

        table = pa.table({
            "image_id": strings(i.image_id for i in images),
            "uri": strings(i.uri for i in images),
            "collection": strings(i.collection for i in images),
            "width": pa.array([i.width for i in images], pa.uint32()),
            "height": pa.array([i.height for i in images], pa.uint32()),
            "sha256": strings(i.sha256 for i in images),
            "ingested_at": _timestamps(len(images)),
            "kind": strings(i.kind for i in images),
            "duration": pa.array([i.duration for i in images], pa.float32()),
            "frames": pa.array([i.frames for i in images], pa.uint32()),
        })
        self.client.insert_arrow("columnist.images", table)

    def write_embeddings(self, model: str, image_ids: Sequence[str], embeddings: "np.ndarray",
                         sha256s: Sequence[str] | None = None) -> None:
        import numpy as np
        from columnist.store.arrow import pa, strings

        flat = pa.array(np.ascontiguousarray(embeddings, dtype=np.float32).ravel())
        table = pa.table({
            "model": strings([model] * len(image_ids)),
            "image_id": strings(image_ids),
            "embedding": pa.FixedSizeListArray.from_arrays(flat, embeddings.shape[1]).cast(
                pa.list_(pa.float32())
            ),
            "created_at": _timestamps(len(image_ids)),
            "sha256": strings(sha256s if sha256s is not None else [""] * len(image_ids)),
        })
        self.client.insert_arrow("columnist.image_embedding", table)

    def write_scores(self, image_ids: Sequence[str], scores: Scores, model: str) -> int:
        import numpy as np
        from columnist.store.arrow import pa, strings

        codes = scores.codes
        n = len(image_ids)
        table = pa.table({
            "attribute": strings(np.repeat(codes, n).tolist()),
            "image_id": strings(list(image_ids) * len(codes)),
            "score": np.concatenate([scores.scores[c] for c in codes]).astype(np.float32),
            "logit": np.concatenate([scores.logits[c] for c in codes]).astype(np.float32),
            "source": strings(scores.sources[c] for c in codes for _ in range(n)),
            "model": strings([model] * (n * len(codes))),
            "vocab_name": strings([scores.vocab_name] * (n * len(codes))),
            "vocab_version": pa.array([scores.vocab_version] * (n * len(codes)), pa.uint32()),
            "updated_at": _timestamps(n * len(codes)),
        })
        self.client.insert_arrow("columnist.feature_image_attribute", table)
        return table.num_rows

    # -- vocabularies --------------------------------------------------------------------

    def apply_vocabulary(self, vocab: Vocabulary, model: str, default: bool = False,
                         model_calibration: ModelCalibration | None = None) -> None:
        """Record ``vocab`` as applied (its rows, with the centre and scale each attribute is
        scored with, and the whole document) and regenerate its view ``columns_<name>`` (and
        ``image_columns`` too for the ``default`` vocabulary)."""
        from columnist.store.arrow import pa, strings

        if not self._state_seen:
            self._first_writer_serves(model)
        self.record_vocabulary_rows(vocab, model, model_calibration)
        self.create_columns_view(vocab, f"columns_{vocab.name}")  # before the record: 'applied' includes the view
        if default:
            self.create_columns_view(vocab, "image_columns")
        self.client.insert_arrow("columnist.vocabulary_applied", pa.table({
            "vocab_name": strings([vocab.name]),
            "vocab_version": pa.array([vocab.version], pa.uint32()),
            "content_hash": strings([vocab.content_hash()]),
            "document": strings([json.dumps(vocab.model_dump(mode="json"))]),
            "model": strings([model]),
            "applied_at": _timestamps(1),
        }))

    def record_vocabulary_rows(self, vocab: Vocabulary, model: str,
                               model_calibration: ModelCalibration | None = None) -> None:
        """What each attribute of ``vocab`` means for ``model``: prompts, thresholds, and the
        centre and scale that model scores it with."""
        from columnist.store.arrow import pa

        rows = [self._vocabulary_row(vocab, entry, model, model_calibration)
                for entry in (*vocab.attributes, *vocab.derived)]
        self.client.insert_arrow("columnist.vocabulary", pa.Table.from_pylist(rows, schema=_VOCABULARY_SCHEMA()))

    @staticmethod
    def _vocabulary_row(vocab: Vocabulary, entry, model: str, model_calibration: ModelCalibration | None) -> dict:
        thresholds = vocab.thresholds_for(entry)
        is_base = isinstance(entry, Attribute)
        calibration = vocab.calibration_for(entry, model_calibration) if is_base else None
        return {
            "vocab_name": vocab.name, "vocab_version": vocab.version,
            "content_hash": vocab.content_hash(), "code": entry.code, "label": entry.label,
            "description": entry.description if is_base else "", "type": entry.type,
            "prompts": render_prompts(vocab, entry) if is_base else [],
            "centre": calibration.centre if calibration else None,
            "scale": calibration.scale if calibration else None,
            "accept": thresholds.accept, "reject": thresholds.reject,
            "rule": "" if is_base else entry.rule, "model": model, "applied_at": _now(),
            "calibration_source": vocab.calibration_source(entry, model_calibration) if is_base else "",
        }

    def applied_vocabulary(self, name: str) -> Vocabulary | None:
        """The document last applied under ``name``, or None."""
        result = self.client.query(
            "SELECT document FROM columnist.vocabulary_applied FINAL WHERE vocab_name = {name:String}",
            parameters={"name": name},
        )
        if not result.result_rows:
            return None
        return vocabulary_from_dict(json.loads(result.result_rows[0][0]), f"applied vocabulary {name!r}")

    def applied_vocabularies(self) -> list[Vocabulary]:
        _, rows = self.query("SELECT vocab_name, document FROM columnist.vocabulary_applied FINAL ORDER BY vocab_name")
        return [vocabulary_from_dict(json.loads(document), f"applied vocabulary {name!r}") for name, document in rows]

    def embedding_models(self) -> list[str]:
        _, rows = self.query("SELECT DISTINCT model FROM columnist.image_embedding ORDER BY model")
        return [model for (model,) in rows]

    def stored_content(self, model: str, image_ids: Sequence[str]) -> dict[str, str]:
        """image_id -> sha256 where the image row and the model's embedding agree on the content
        (for a video: where every frame it was sampled at has the model's embedding). New ids,
        what a worker mostly gets, cost one read by the images table's key; only ids found are
        checked."""
        found = self.rows("SELECT DISTINCT image_id FROM columnist.images WHERE image_id IN {ids:Array(String)}",
                          {"ids": list(image_ids)})
        if not found:
            return {}
        rows = self.rows(
            "SELECT i.image_id, i.sha256 FROM "
            "(SELECT image_id, sha256, kind FROM columnist.images FINAL WHERE image_id IN {ids:Array(String)}) AS i "
            "WHERE (i.image_id, i.sha256) IN (SELECT image_id, sha256 FROM columnist.image_embedding FINAL "
            "                                 WHERE model = {m:String} AND bucket IN ("
            "                                     SELECT toUInt8(cityHash64(arrayJoin({ids:Array(String)})) % 64)) "
            "                                 AND image_id IN {ids:Array(String)}) "
            "   OR (i.kind = 'video' AND i.image_id IN ("
            "       SELECT video_id FROM columnist.video_frames WHERE video_id IN {ids:Array(String)} GROUP BY video_id "
            "       HAVING uniqExactIf(frame_id, frame_id IN ("
            "           SELECT image_id FROM columnist.image_embedding WHERE model = {m:String} AND image_id IN ("
            "               SELECT frame_id FROM columnist.video_frames WHERE video_id IN {ids:Array(String)})))"
            "           = uniqExact(frame_id)))",
            {"ids": [i for (i,) in found], "m": model})
        return dict(rows)

    def known_images(self, model: str, sha256s: Sequence[str]) -> dict[str, "KnownImage"]:
        """Content already encoded by ``model``: an embedding made from it, and the size from an
        image row that agrees on the content (rows are written embedding first, image last).

        Any version of those rows will do (no FINAL): a row pairs an embedding, or a size, with
        the content it was made from, so an older one is as true as the latest. New content, what
        a worker mostly gets, costs one read of the embeddings' content index."""
        import numpy as np

        if not sha256s:
            return {}
        embedded = self.client.query_arrow(
            "SELECT image_id, sha256, embedding FROM columnist.image_embedding "
            "WHERE model = {m:String} AND sha256 IN {s:Array(String)}", parameters={"m": model, "s": list(set(sha256s))})
        if not embedded.num_rows:
            return {}
        candidates = list(zip(*(embedded.column(c).to_pylist() for c in ("image_id", "sha256", "embedding"))))
        rows = self.rows("SELECT image_id, sha256, width, height FROM columnist.images "
                         "WHERE image_id IN {ids:Array(String)}", {"ids": sorted({i for i, _, _ in candidates})})
        sizes = {(image_id, sha): (width, height) for image_id, sha, width, height in rows}
        known = {}
        for image_id, sha, embedding in candidates:
            if sha not in known and (image_id, sha) in sizes:
                known[sha] = KnownImage(*sizes[image_id, sha], np.asarray(embedding, dtype=np.float32))
        return known

    def prompt_embeddings(self, model: str, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], "np.ndarray"]:
        import numpy as np

        if not keys:
            return {}
        table = self.client.query_arrow(
            "SELECT language, prompt, embedding FROM columnist.prompt_embedding FINAL WHERE model = {m:String} "
            "AND (language, prompt) IN {k:Array(Tuple(String, String))}",
            parameters={"m": model, "k": [tuple(k) for k in set(keys)]})
        found = {}
        for language, prompt, embedding in zip(*(table.column(c).to_pylist() for c in ("language", "prompt", "embedding"))):
            found[(language, prompt)] = np.asarray(embedding, dtype=np.float32)
        return found

    def save_prompt_embeddings(self, model: str, keys: Sequence[tuple[str, str]], embeddings: "np.ndarray") -> None:
        import numpy as np
        from columnist.store.arrow import pa, strings

        if not len(keys):
            return
        flat = pa.array(np.ascontiguousarray(embeddings, dtype=np.float32).ravel())
        self.client.insert_arrow("columnist.prompt_embedding", pa.table({
            "model": strings([model] * len(keys)),
            "language": strings(language for language, _ in keys),
            "prompt": strings(prompt for _, prompt in keys),
            "embedding": pa.FixedSizeListArray.from_arrays(flat, embeddings.shape[1]).cast(pa.list_(pa.float32())),
            "created_at": _timestamps(len(keys)),
        }))

    def save_search_phrase(self, model: str, phrase: str, embedding: "np.ndarray", logit_scale: float, centre: float,
                           scale: float) -> None:
        """A searched phrase, so that SQL ranks by it: columnist.search(phrase = '…')."""
        from columnist.store.arrow import pa, strings

        self.client.insert_arrow("columnist.search_phrase", pa.table({
            "model": strings([model]), "phrase": strings([phrase]),
            "embedding": pa.array([[float(x) for x in embedding]], pa.list_(pa.float32())),
            "logit_scale": pa.array([logit_scale], pa.float32()), "centre": pa.array([centre], pa.float32()),
            "scale": pa.array([scale], pa.float32()), "created_at": _timestamps(1)}))

    def was_refused(self, name: str, event_sha256: str) -> bool:
        return self.scalar("SELECT count() FROM columnist.vocabulary_refused WHERE vocab_name = {n:String} "
                           "AND event_sha256 = {h:String}", {"n": name, "h": event_sha256}) > 0

    def record_refusal(self, name: str, event_sha256: str, reason: str) -> None:
        self.command("INSERT INTO columnist.vocabulary_refused (vocab_name, event_sha256, reason, refused_at) "
                     "VALUES ({n:String}, {h:String}, {r:String}, now64(3))",
                     {"n": name, "h": event_sha256, "r": reason[:2000]})

    def was_applied(self, name: str, content_hash: str) -> bool:
        return self.scalar("SELECT count() FROM columnist.vocabulary WHERE vocab_name = {n:String} "
                           "AND content_hash = {h:String}", {"n": name, "h": content_hash}) > 0

    def count_scores(self, vocab_name: str, codes: Sequence[str], model: str | None = None) -> int:
        """Current scores of these attributes of one vocabulary, of ``model`` (the serving one by default)."""
        if not codes:
            return 0
        return self.scalar("SELECT count() FROM columnist.feature_image_attribute FINAL WHERE vocab_name = {v:String} "
                           f"AND attribute IN {{c:Array(String)}} AND model = if({{m:String}} != '', {{m:String}}, "
                           f"{SERVING_MODEL})", {"v": vocab_name, "c": list(codes), "m": model or ""})

    def replayer(self, model: str, logit_scale: float, source: str, chunks: int = 0,
                 job: str | None = None, model_calibration: ModelCalibration | None = None) -> "Replayer":
        from columnist.store.replay import Replayer

        return Replayer(self, model, logit_scale, source, chunks, job, model_calibration=model_calibration)

    def create_columns_view(self, vocab: Vocabulary, view: str) -> None:
        """``columnist.<view>``: one row per image with its collection, uri and ingested_at,
        and one Nullable(Float32) column per attribute code of ``vocab``; and beside it the
        parametrised ``columnist.some_<view>(codes=[...])``, the same columns with only the
        attributes named filled (NULL the rest), which reads only their rows beyond the
        attribute column: a dashboard on two attributes of fifty in 0.6 of the wide view's time.

        The latest score of each attribute is picked inside the aggregate (argMax by
        updated_at, what ReplacingMergeTree keeps) rather than with FINAL: FINAL merges
        overlapping parts at query time, which made a dashboard right after a replay several
        times slower than once ClickHouse had merged; this costs the same in both states.

        The vocabulary name and codes are validated identifiers (checked again here), so they
        are safe as names and literals; no other text reaches this statement.
        """
        for name in (vocab.name, view, *vocab.codes):
            if not IDENTIFIER.match(name):
                raise ValueError(f"{name!r} is not an identifier")
        on_cluster = self._on_cluster
        for name, only_named in ((view, ""), (f"some_{view}", " AND attribute IN {codes:Array(String)}")):
            self.client.command(f"CREATE OR REPLACE VIEW columnist.{name}{on_cluster} AS\n"
                                + _columns_select(vocab, only_named))

    # -- reads ---------------------------------------------------------------------------

    def read_embeddings(self, model: str, image_ids: Sequence[str] | None = None,
                        sample: int | None = None) -> tuple[list[str], "np.ndarray"]:
        """Stored embeddings of ``model`` (all, the given ids, or a deterministic sample of
        ``sample`` images), read through Arrow: the fast way out of ClickHouse."""
        import numpy as np

        sql = "SELECT image_id, embedding FROM columnist.image_embedding FINAL WHERE model = {model:String}"
        parameters: dict[str, Any] = {"model": model}
        if image_ids is not None:
            sql += " AND image_id IN {ids:Array(String)}"
            parameters["ids"] = list(image_ids)
        if sample is not None:
            sql += " ORDER BY cityHash64(image_id) LIMIT {sample:UInt64}"
            parameters["sample"] = sample
        table = self.client.query_arrow(sql, parameters=parameters)
        ids = table.column("image_id").to_pylist()
        if not ids:
            return [], np.zeros((0, 0), np.float32)
        flat = np.asarray(table.column("embedding").combine_chunks().flatten(), dtype=np.float32)
        return ids, flat.reshape(len(ids), -1)

    def attribute_scores(self, vocab_name: str, code: str) -> list[tuple[str, float, float]]:
        _, rows = self.query("SELECT image_id, score, logit FROM columnist.feature_image_attribute FINAL "
                             "WHERE vocab_name = {v:String} AND attribute = {a:String} "
                             f"AND model = {SERVING_MODEL}", {"v": vocab_name, "a": code})
        return [(i, float(s), float(lg)) for i, s, lg in rows]

    def summary(self) -> dict[str, Any]:
        from columnist.store.rows import plain

        def rows(sql: str) -> dict:
            columns, found = self.query(sql)
            return {"columns": columns, "rows": [[plain(v) for v in row] for row in found]}

        return {
            "counts": rows("SELECT (SELECT count() FROM columnist.images FINAL) AS images, "
                           "(SELECT count() FROM columnist.image_embedding FINAL) AS embeddings, "
                           "(SELECT count() FROM columnist.feature_image_attribute FINAL) AS scores"),
            "kinds": rows("SELECT kind, count() AS items, sum(frames) AS frames, round(sum(duration), 1) AS seconds "
                          "FROM columnist.images FINAL GROUP BY kind ORDER BY kind"),
            "models": rows("SELECT e.model AS model, multiIf(e.model = s.serving, 'serving', e.model = s.target, "
                           "'migrating to', e.model = s.previous, 'served before (until retired)', '') AS role, "
                           "e.embeddings AS embeddings FROM (SELECT model, count() AS embeddings FROM "
                           "columnist.image_embedding FINAL GROUP BY model) AS e CROSS JOIN (SELECT serving, target, "
                           "previous FROM columnist.model_state FINAL) AS s ORDER BY role != 'serving', model"),
            "vocabularies": rows("SELECT vocab_name, vocab_version, model, applied_at "
                                 "FROM columnist.vocabulary_applied FINAL ORDER BY vocab_name"),
            "attributes": rows("SELECT vocab_name, attribute, source, count() AS scores, "
                               "avg(score) AS mean_score FROM columnist.feature_image_attribute FINAL "
                               f"WHERE model = {SERVING_MODEL} "
                               "GROUP BY vocab_name, attribute, source ORDER BY vocab_name, attribute"),
        }

    def select(self, sql: str, limits: QueryLimits, fmt: str | None = None) -> Rows | bytes:
        """After any failure the connection is replaced: a query that failed mid-stream (a
        limit, a timeout) leaves bytes on it that the next query would read as its own."""
        from columnist.store.query_guard import QueryRefused, guarded_statement, query_settings

        try:
            statement = guarded_statement(self.client, sql, limits.rows)
            settings = query_settings(limits.seconds, limits.rows, limits.bytes)
            if fmt:  # the settings as a clause of this statement: applied with SET, readonly=1 would outlive it
                check_format(fmt)
                clause = ", ".join(f"{name} = {value!r}" for name, value in settings.items())
                return self._bounded_raw(f"{statement}\nSETTINGS {clause}\nFORMAT {fmt}", limits.bytes)
            result = self.client.query(statement, settings=settings)
            return _columns(self.client, result, statement), [tuple(r) for r in result.result_rows]
        except QueryRefused:
            raise  # refused before it ran: nothing was left on the connection
        except BaseException:
            self.reconnect()
            raise

    def _bounded_raw(self, statement: str, max_bytes: int) -> bytes:
        """The formatted result, read as a stream and refused past twice ``max_bytes`` (the
        engine counts the data; a text format may be larger than it)."""
        chunks, total = [], 0
        for chunk in self.client.raw_stream(statement):
            total += len(chunk)
            if total > 2 * max_bytes + 65_536:
                raise ResultTooLarge(f"the result is over {2 * max_bytes:,} bytes in this format; "
                                     "select fewer rows or columns")
            chunks.append(chunk)
        return b"".join(chunks)

    def reconnect(self) -> None:
        """A new connection in place of this one (which is closed)."""
        import clickhouse_connect

        old = self.client
        with unavailable_as_store_error():
            self.client = _Client(clickhouse_connect.get_client(dsn=self.dsn))
        try:
            old.close()
        except Exception:  # noqa: BLE001 - a connection out of step may fail to close; it is dropped anyway
            pass

    def query_raw(self, sql: str, fmt: str) -> bytes:
        """The result as ClickHouse writes it in output format ``fmt`` (CSVWithNames, Parquet…)."""
        check_format(fmt)
        return bytes(self.client.raw_query(sql, fmt=fmt))

    def image_uris(self, image_ids: Sequence[str]) -> dict[str, str]:
        _, rows = self.query(
            "SELECT image_id, uri FROM columnist.images FINAL WHERE image_id IN {ids:Array(String)} UNION ALL "
            "SELECT f.frame_id, i.uri FROM columnist.video_frames AS f FINAL INNER JOIN "
            "(SELECT image_id, uri FROM columnist.images FINAL) AS i ON i.image_id = f.video_id "
            "WHERE f.frame_id IN {ids:Array(String)}", {"ids": list(image_ids)})
        return dict(rows)

    def query(self, sql: str, parameters: dict | None = None) -> Rows:
        result = self.client.query(sql, parameters=parameters or {})
        rows = [tuple(row) for row in result.result_rows]
        return _columns(self.client, result, sql, parameters), rows

    def rows(self, sql: str, parameters: dict | None = None) -> list[tuple]:
        """query's rows without their column names: an empty result costs no DESCRIBE (about
        1.4 ms of CPU on the embedded engine, twice a batch on the ingest path)."""
        return [tuple(row) for row in self.client.query(sql, parameters=parameters or {}).result_rows]

    def command(self, sql: str, parameters: dict | None = None, settings: dict | None = None) -> None:
        self.client.command(sql, parameters=parameters or {}, settings=settings or {})

    def scalar(self, sql: str, parameters: dict | None = None) -> Any:
        return self.query(sql, parameters)[1][0][0]


def _columns(client: Any, result: Any, sql: str, parameters: dict | None = None) -> list[str]:
    """The result's column names; the embedded engine's client gives none for an empty
    result, so they are asked of the engine (DESCRIBE runs nothing)."""
    if result.column_names or result.result_rows or not sql.lstrip().upper().startswith(("SELECT", "WITH", "(")):
        return list(result.column_names)
    try:
        described = client.query(f"DESCRIBE ({sql})", parameters=parameters or {}, settings={"readonly": 1})
        return [row[0] for row in described.result_rows]
    except Exception:  # noqa: BLE001 - the names are a courtesy; the (empty) result stands
        return []


def _VOCABULARY_SCHEMA():
    from columnist.store.arrow import pa

    return pa.schema([
        ("vocab_name", pa.string()), ("vocab_version", pa.uint32()), ("content_hash", pa.string()),
        ("code", pa.string()), ("label", pa.string()), ("description", pa.string()),
        ("type", pa.string()), ("prompts", pa.list_(pa.string())), ("centre", pa.float32()),
        ("scale", pa.float32()), ("accept", pa.float32()), ("reject", pa.float32()),
        ("rule", pa.string()), ("model", pa.string()), ("applied_at", pa.timestamp("ms", tz="UTC")),
        ("calibration_source", pa.string()),
    ])


def _columns_select(vocab: Vocabulary, only_named: str) -> str:
    """The wide view's SELECT (create_columns_view), its attribute rows narrowed by ``only_named``."""
    columns = ",\n    ".join(f"argMaxIfOrNull(score, updated_at, attribute = '{c}') AS `{c}`" for c in vocab.codes)
    in_list = ", ".join(f"'{c}'" for c in vocab.codes)
    return (f"SELECT s.image_id AS image_id, i.collection AS collection, i.uri AS uri, i.ingested_at AS ingested_at, "
            f"{', '.join(f's.`{c}` AS `{c}`' for c in vocab.codes)}\n"
            f"FROM (\n  SELECT image_id,\n    {columns}\n"
            f"  FROM columnist.feature_image_attribute\n"
            f"  WHERE vocab_name = '{vocab.name}' AND model = {SERVING_MODEL}\n"
            f"    AND attribute IN ({in_list}){only_named}\n  GROUP BY image_id\n) AS s\n"
            f"INNER JOIN (SELECT image_id, collection, uri, ingested_at FROM columnist.images FINAL) AS i "
            f"ON i.image_id = s.image_id")
