"""CLIP on onnxruntime: one class per tower, and the encoder that pairs them.

The image tower takes (n, 3, S, S) float32 pixels, the text tower (n, 77) int64 token ids;
both have a dynamic batch axis and return projected embeddings, which are L2-normalised
here so a dot product is a cosine.
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from contextlib import contextmanager
from pathlib import Path
from threading import Timer
from time import monotonic
from typing import TYPE_CHECKING, Iterator, Sequence

from columnist.models.machine import LARGE_MODEL_BYTES, fingerprint
from columnist.models.preprocess import preprocess
from columnist.models.runtime_choice import Choice, choose
from columnist.models.sessions import open_session, resolve_runtime, worth_measuring
from columnist.models.spec import ModelSpec
from columnist.models.tokenizer import ClipTokenizer
from columnist.errors import ConfigurationError
from columnist.printable import printable
from columnist.records import ModelCalibration
from columnist.vectors import l2_normalise

if TYPE_CHECKING:
    import numpy as np
    from PIL.Image import Image

    from columnist.models.encoder import Session


def _run_in_batches(session: "Session", feeds: dict[str, "np.ndarray"], batch_size: int, output: int) -> "np.ndarray":
    """Run ``session`` over the rows of ``feeds`` (same length) ``batch_size`` rows at a time."""
    import numpy as np

    rows = len(next(iter(feeds.values())))
    outputs = [session.run(None, {name: value[i:i + batch_size] for name, value in feeds.items()})[output]
               for i in range(0, rows, batch_size)]
    return np.concatenate(outputs) if outputs else np.zeros((0, 0), np.float32)


def _batch_size(session: "Session", wanted: int) -> int:
    """1 for a tower exported with a fixed batch of one (Immich's are), else ``wanted``."""
    shape = session.get_inputs()[0].shape or [None]
    return 1 if shape[0] == 1 else wanted


def _output_index(session: "Session", name: str | None) -> int:
    if name is None:
        return 0
    names = [o.name for o in session.get_outputs()]
    if name not in names:
        raise ValueError(f"the tower has no output {name!r} (it has {', '.join(names)})")
    return names.index(name)


OPENING_THREAD = "columnist-open-model"
"""The thread open_image_tower_soon starts: not a daemon, so that no exit cuts short what the
runtime writes to its cache while it opens (cli.common.exit_now waits for it)."""

TEXT_TOWER_IDLE_S = 60.0
"""A text tower unused this long is closed. It is needed only while prompts are encoded (a
vocabulary applied or changed, a `model try`), and a ViT-B/32 one holds 410-440 MB of a
worker's RSS (OpenVINO int8: 570-595 MB with it, 159 MB without); it opens again in under a
second."""

SHARED_PROMPTS_MIN_BYTES = LARGE_MODEL_BYTES
"""Text towers from this size keep their prompts for every store (a ViT-B/32 text tower costs
17-40 ms a prompt here); smaller ones encode them at once."""


class ImageTower:
    def __init__(self, session: "Session", spec: ModelSpec, batch_size: int = 32):
        self.session, self.spec = session, spec
        self.batch_size = _batch_size(session, batch_size)
        self.input_name = session.get_inputs()[0].name
        self.output = _output_index(session, spec.visual_output)

    def pixels(self, images: Sequence["Image"]) -> "np.ndarray":
        spec = self.spec
        return preprocess(images, spec.image_size, spec.mean, spec.std, spec.resize, spec.interpolation)

    def encode_pixels(self, pixels: "np.ndarray") -> "np.ndarray":
        return l2_normalise(_run_in_batches(self.session, {self.input_name: pixels}, self.batch_size, self.output))

    def __call__(self, images: Sequence["Image"]) -> "np.ndarray":
        return self.encode_pixels(self.pixels(images))


class TextTower:
    """Token ids in the integer type the tower declares (Immich's take int32), plus the
    attention mask where the tower asks for one (multilingual M-CLIP)."""

    def __init__(self, session: "Session", tokenizer: ClipTokenizer, batch_size: int = 32, output: str | None = None):
        self.session, self.tokenizer = session, tokenizer
        self.batch_size = _batch_size(session, batch_size)
        inputs = session.get_inputs()
        self.input_name = inputs[0].name
        self.mask_name = next((i.name for i in inputs[1:] if "mask" in i.name), None)
        self.dtype = "int32" if "int32" in str(inputs[0].type) else "int64"
        self.output = _output_index(session, output)

    def __call__(self, texts: Sequence[str], prefix: str | None = None) -> "np.ndarray":
        """Tokenized and encoded a batch at a time: ten thousand prompts never sit in the
        tokenizer at once."""
        import numpy as np

        chunk = max(self.batch_size, 32)
        parts = [self._encode_chunk(texts[start:start + chunk], prefix) for start in range(0, len(texts), chunk)]
        return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)

    def _encode_chunk(self, texts: Sequence[str], prefix: str | None) -> "np.ndarray":
        ids, mask = self.tokenizer.encode(texts, prefix)
        feeds = {self.input_name: ids.astype(self.dtype)}
        if self.mask_name:
            feeds[self.mask_name] = mask.astype(self.dtype)
        return l2_normalise(_run_in_batches(self.session, feeds, self.batch_size, self.output))


class LanguageNotRead(ConfigurationError):
    """A translation in a language the model's text tower has no code for."""


class ClipEncoder:
    """The Encoder interface over a model directory; towers load on first use."""

    source = "clip"

    def __init__(self, directory: Path, spec: ModelSpec, threads: int = 0, batch_size: int = 32,
                 runtime: str = "auto"):
        self.directory, self.spec = Path(directory), spec
        self.ref = str(self.directory)
        """How this model is named to load it again elsewhere (registry.load_encoder sets the name given)."""
        self.choice: Choice | None = None
        """How ``auto`` chose the runtime (measured now or remembered), when it measured."""
        if runtime == "auto" and worth_measuring(self.directory / spec.visual):
            self.choice = choose(self.directory, spec, threads, batch_size)
            self.runtime = self.choice.runtime
        else:
            self.runtime = resolve_runtime(runtime, spec.runtime)
        self.name, self.dim, self.logit_scale = spec.name, spec.embedding_dim, spec.logit_scale
        self.image_size = spec.image_size
        self.threads, self.batch_size = threads, batch_size
        self._image_tower: ImageTower | None = None
        self._text_tower: TextTower | None = None
        self._text_used = 0.0
        self._text_users = 0
        self._text_lock = threading.Lock()
        self.text_idle_s = TEXT_TOWER_IDLE_S
        self._opening = threading.Lock()
        self._opening_soon: threading.Thread | None = None
        self._starting = threading.Lock()
        """Guards ``_opening_soon`` only: a second ask must not wait for the opening under way."""

    @classmethod
    def from_directory(cls, directory: Path, threads: int = 0, batch_size: int = 32,
                       runtime: str = "auto") -> "ClipEncoder":
        return cls(directory, ModelSpec.read(directory), threads, batch_size, runtime)

    @property
    def image_tower(self) -> ImageTower:
        with self._opening:  # one opening, whichever thread asks first (open_image_tower_soon)
            if self._image_tower is None:
                session = open_session(self.runtime, self.directory / self.spec.visual, self.threads)
                self._image_tower = ImageTower(session, self.spec, self.batch_size)
        return self._image_tower

    def open_image_tower(self) -> None:
        self.image_tower  # noqa: B018 - opened now, by this thread

    def open_image_tower_soon(self) -> threading.Thread:
        """Open the image tower on a thread of its own while the caller does other work
        (`tag` opens the store or reads its vocabulary meanwhile: the runtime's first session
        takes most of a second); the first encode waits for it. Asked again, the same opening.
        A tower that cannot open is opened again by that encode, which says why."""
        def open_quietly() -> None:
            try:
                self.image_tower
            except Exception:  # noqa: BLE001 - reported where it is used, not on this thread
                pass
        with self._starting:
            if self._opening_soon is None:
                self._opening_soon = threading.Thread(target=open_quietly, name=OPENING_THREAD)
                self._opening_soon.start()
            return self._opening_soon

    @property
    def text_tower(self) -> TextTower:
        """Opened on first use and closed once unused for ``text_idle_s``."""
        with self._text_in_use() as tower:
            return tower

    @contextmanager
    def _text_in_use(self) -> Iterator[TextTower]:
        """The text tower, kept open while the caller encodes with it (an encoding longer than
        ``text_idle_s`` must not lose its tower, nor make a second one be opened beside it);
        its idle time starts when the last user is done."""
        with self._text_lock:
            if self._text_tower is None:
                session = open_session(self.runtime, self.directory / self.spec.textual, self.threads)
                spec = self.spec
                tokenizer = ClipTokenizer.from_file(self.directory / spec.tokenizer, spec.context_length,
                                                    spec.pad_token, spec.canonicalize, spec.text_prefix)
                self._text_tower = TextTower(session, tokenizer, self.batch_size, spec.textual_output)
                _close_text_tower_when_idle(weakref.ref(self), self.text_idle_s)
            self._text_users += 1
            tower = self._text_tower
        try:
            yield tower
        finally:
            with self._text_lock:
                self._text_users -= 1
                self._text_used = monotonic()

    def _close_text_tower_if_idle(self) -> float:
        """Close the text tower if no one has used it for ``text_idle_s``; else the seconds
        until it may be. The runtime's session is torn down after the lock is let go."""
        with self._text_lock:
            if self._text_users:
                return self.text_idle_s  # in use: its idle time starts when it is done
            idle = monotonic() - self._text_used
            if idle < self.text_idle_s:
                return self.text_idle_s - idle
            closing, self._text_tower = self._text_tower, None
        del closing
        return 0.0

    @property
    def calibration(self) -> ModelCalibration | None:
        """A model with a learned logit bias (SigLIP) scores sigmoid(logit + bias): centre
        -bias, scale 1 (Vocabulary.calibration_for). None: the vocabulary's calibration."""
        bias = self.spec.logit_bias
        if bias is None:
            return None
        return ModelCalibration(centre=-bias, scale=1.0, source=f"model {self.name[:200]}: logit bias {bias:g}")

    def prepare_image(self, image: "Image") -> "np.ndarray":
        spec = self.spec
        return preprocess([image], spec.image_size, spec.mean, spec.std, spec.resize, spec.interpolation)[0]

    def warm_up(self) -> None:
        """One blank image through the image tower: a runtime's first run allocates and
        prepares its kernels, which a worker pays at its start rather than on its first images
        (ViT-B/32 int8 on OpenVINO here: a first batch of 32 took 0.63 s cold, 0.42 s after
        this 0.14 s warm-up, 0.39 s after that; a batch of 32 to warm up saved no more, and
        held 54 MB more)."""
        import numpy as np

        side = self.spec.image_size
        self.image_tower.encode_pixels(np.zeros((1, 3, side, side), np.float32))

    def encode_prepared(self, prepared: Sequence["np.ndarray"]) -> "np.ndarray":
        import numpy as np

        if not len(prepared):
            return np.zeros((0, self.dim), np.float32)
        return self.image_tower.encode_pixels(np.stack(prepared))

    def encode_images(self, images: Sequence["Image"]) -> "np.ndarray":
        import numpy as np

        if not images:
            return np.zeros((0, self.dim), np.float32)
        return self.image_tower(images)

    @property
    def shared_prompts_key(self) -> str | None:
        """What names this text tower's content (its fingerprint), under which the prompts it
        encodes are kept for every store of this user (columnist.prompt_cache); None for a
        tower small enough to encode prompts at once (the tiny test model), or none at all."""
        spec, tower = self.spec, self.directory / self.spec.textual
        try:
            if tower.stat().st_size < SHARED_PROMPTS_MIN_BYTES:
                return None
            content = "|".join([fingerprint(tower), fingerprint(self.directory / spec.tokenizer), spec.text_prefix,
                                str(spec.context_length), str(spec.pad_token), str(spec.canonicalize)])
        except OSError:
            return None
        name, content = (hashlib.sha256(text.encode()).hexdigest()[:16] for text in (self.name, content))
        return f"{name}-{content}"

    @property
    def reads_language(self) -> bool:
        """Whether the text tower reads a language code before each text (NLLB)."""
        return bool(self.spec.text_prefix)

    def encode_texts_in(self, texts: Sequence[str], language: str | None) -> "np.ndarray":
        """Texts in ``language`` (a vocabulary's translation key: 'de', or a FLORES-200 code
        such as 'deu_Latn'); None is the model's default language."""
        import numpy as np

        if not texts:
            return np.zeros((0, self.dim), np.float32)
        with self._text_in_use() as tower:
            if not self.reads_language or language is None:
                return tower(texts)
            code = flores_code(language)
            if tower.tokenizer.token_id(code) is None:
                raise LanguageNotRead(f"translation language {printable(language, 40)!r} ({code}): the text tower of "
                                      f"{printable(self.name)} has no token for it, so it would read the text as "
                                      "something else; use a language the model knows, or leave the translation out")
            return tower(texts, code)

    def encode_texts(self, texts: Sequence[str]) -> "np.ndarray":
        import numpy as np

        if not texts:
            return np.zeros((0, self.dim), np.float32)
        with self._text_in_use() as tower:
            return tower(texts)


def _close_text_tower_when_idle(encoder: "weakref.ref[ClipEncoder]", after: float) -> None:
    """A daemon timer that closes the encoder's text tower once idle, or looks again when it
    may be. It holds the encoder weakly: an encoder replaced (a worker's model change) is not
    kept alive by its timer, and its timer ends."""
    def check() -> None:
        alive = encoder()
        if alive is not None and (again := alive._close_text_tower_if_idle()):
            _close_text_tower_when_idle(encoder, again)

    timer = Timer(after, check)
    timer.name, timer.daemon = "columnist-text-tower-idle", True
    timer.start()


FLORES = {"ar": "arb_Arab", "bg": "bul_Cyrl", "ca": "cat_Latn", "cs": "ces_Latn", "da": "dan_Latn", "de": "deu_Latn",
          "el": "ell_Grek", "en": "eng_Latn", "es": "spa_Latn", "et": "est_Latn", "fa": "pes_Arab", "fi": "fin_Latn",
          "fr": "fra_Latn", "he": "heb_Hebr", "hi": "hin_Deva", "hr": "hrv_Latn", "hu": "hun_Latn", "id": "ind_Latn",
          "it": "ita_Latn", "ja": "jpn_Jpan", "ko": "kor_Hang", "lt": "lit_Latn", "lv": "lvs_Latn", "nl": "nld_Latn",
          "nb": "nob_Latn", "no": "nob_Latn", "pl": "pol_Latn", "pt": "por_Latn", "ro": "ron_Latn", "ru": "rus_Cyrl",
          "sk": "slk_Latn", "sl": "slv_Latn", "sr": "srp_Cyrl", "sv": "swe_Latn", "th": "tha_Thai", "tr": "tur_Latn",
          "uk": "ukr_Cyrl", "vi": "vie_Latn", "zh": "zho_Hans", "zh-hant": "zho_Hant", "zh-tw": "zho_Hant",
          "zh-hk": "zho_Hant", "zh-mo": "zho_Hant", "sr-latn": "srp_Latn"}
"""ISO 639-1 codes to the FLORES-200 codes NLLB reads (the languages Immich maps)."""


def flores_code(language: str) -> str:
    """'de' -> 'deu_Latn', 'zh-Hant' -> 'zho_Hant'; a FLORES-200 code ('deu_Latn') as it is.
    An unknown language is read as English, as Immich does, with a warning naming it."""
    import logging
    import re

    if re.fullmatch(r"[a-z]{3}_[A-Z][a-z]{3}", language):
        return language
    tag = language.replace("_", "-").lower()
    code = FLORES.get(tag) or FLORES.get(tag.split("-")[0])
    if code is None:
        logging.getLogger(__name__).warning(
            "translation language %r: no FLORES-200 code known for it, read as English (eng_Latn); "
            "give the code itself as the key, e.g. 'epo_Latn'", language[:40])
        return "eng_Latn"
    return code
