"""CLIP on onnxruntime: one class per tower, and the encoder that pairs them.

The image tower takes (n, 3, S, S) float32 pixels, the text tower (n, 77) int64 token ids;
both have a dynamic batch axis and return projected embeddings, which are L2-normalised
here so a dot product is a cosine.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from columnist.models.encoder import l2_normalise
from columnist.models.preprocess import preprocess
from columnist.models.sessions import open_session, resolve_runtime
from columnist.models.spec import ModelSpec
from columnist.models.tokenizer import ClipTokenizer

if TYPE_CHECKING:
    import numpy as np
    from PIL.Image import Image


def _run_in_batches(session: Any, feed_name: str, inputs: "np.ndarray", batch_size: int) -> "np.ndarray":
    import numpy as np

    outputs = [session.run(None, {feed_name: inputs[i:i + batch_size]})[0] for i in range(0, len(inputs), batch_size)]
    return np.concatenate(outputs) if outputs else np.zeros((0, 0), np.float32)


class ImageTower:
    def __init__(self, session: Any, spec: ModelSpec, batch_size: int = 32):
        self.session, self.spec, self.batch_size = session, spec, batch_size
        self.input_name = session.get_inputs()[0].name

    def pixels(self, images: Sequence["Image"]) -> "np.ndarray":
        return preprocess(images, self.spec.image_size, self.spec.mean, self.spec.std)

    def encode_pixels(self, pixels: "np.ndarray") -> "np.ndarray":
        return l2_normalise(_run_in_batches(self.session, self.input_name, pixels, self.batch_size))

    def __call__(self, images: Sequence["Image"]) -> "np.ndarray":
        return self.encode_pixels(self.pixels(images))


class TextTower:
    def __init__(self, session: Any, tokenizer: ClipTokenizer, batch_size: int = 32):
        self.session, self.tokenizer, self.batch_size = session, tokenizer, batch_size
        self.input_name = session.get_inputs()[0].name

    def __call__(self, texts: Sequence[str]) -> "np.ndarray":
        return l2_normalise(_run_in_batches(self.session, self.input_name, self.tokenizer(texts), self.batch_size))


class ClipEncoder:
    """The Encoder interface over a model directory; towers load on first use."""

    source = "clip"

    def __init__(self, directory: Path, spec: ModelSpec, threads: int = 0, batch_size: int = 32,
                 runtime: str = "auto"):
        self.directory, self.spec = Path(directory), spec
        self.runtime = resolve_runtime(runtime, spec.runtime, spec.dtype, self.directory / spec.visual)
        self.name, self.dim, self.logit_scale = spec.name, spec.embedding_dim, spec.logit_scale
        self.image_size = spec.image_size
        self.threads, self.batch_size = threads, batch_size
        self._image_tower: ImageTower | None = None
        self._text_tower: TextTower | None = None

    @classmethod
    def from_directory(cls, directory: Path, threads: int = 0, batch_size: int = 32,
                       runtime: str = "auto") -> "ClipEncoder":
        return cls(directory, ModelSpec.read(directory), threads, batch_size, runtime)

    @property
    def image_tower(self) -> ImageTower:
        if self._image_tower is None:
            session = open_session(self.runtime, self.directory / self.spec.visual, self.threads)
            self._image_tower = ImageTower(session, self.spec, self.batch_size)
        return self._image_tower

    @property
    def text_tower(self) -> TextTower:
        if self._text_tower is None:
            session = open_session(self.runtime, self.directory / self.spec.textual, self.threads)
            tokenizer = ClipTokenizer.from_file(self.directory / self.spec.tokenizer, self.spec.context_length)
            self._text_tower = TextTower(session, tokenizer, self.batch_size)
        return self._text_tower

    def prepare_image(self, image: "Image") -> "np.ndarray":
        return preprocess([image], self.spec.image_size, self.spec.mean, self.spec.std)[0]

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

    def encode_texts(self, texts: Sequence[str]) -> "np.ndarray":
        import numpy as np

        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return self.text_tower(texts)
