"""The interfaces every model and runtime implements: ``Encoder`` (mock, ONNX CLIP/SigLIP, ...)
and ``Session`` (onnxruntime, OpenVINO, ...).

Embeddings come back as float32 rows of unit length, so a dot product is a cosine. Callers
use only what is declared here: nothing is probed with ``getattr``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Protocol, Sequence, runtime_checkable

if TYPE_CHECKING:
    from columnist.models.runtime_choice import Choice
    import numpy as np
    from PIL.Image import Image

    from columnist.records import ModelCalibration


@runtime_checkable
class Session(Protocol):
    """One tower opened by a runtime (models.sessions.RUNTIMES): onnxruntime's
    InferenceSession is one, OpenVINOSession another (the shape of Immich's ModelSession)."""

    def get_inputs(self) -> Sequence[Any]:
        """Each input's ``name``, ``shape`` (None where dynamic) and ``type`` ('tensor(int64)', ...)."""
        ...

    def get_outputs(self) -> Sequence[Any]: ...

    def run(self, outputs: Sequence[str] | None, feeds: Mapping[str, "np.ndarray"]) -> list["np.ndarray"]: ...


@runtime_checkable
class Encoder(Protocol):
    name: str
    """Stored with every embedding and score, so a model change is never mixed up."""
    dim: int
    image_size: int
    """The side of the square the image tower sees (images are decoded at twice this at least)."""
    logit_scale: float
    source: str
    """The ``source`` written with scores: 'clip' for a real model, 'mock' for the mock."""
    runtime: str
    """What runs the towers ('onnxruntime', 'openvino', ...; 'numpy' for the mock)."""
    choice: "Choice | None"
    """How ``auto`` chose the runtime on this CPU (models.runtime_choice), when it measured."""
    calibration: "ModelCalibration | None"
    """The model's own default centre and scale: models with a learned logit bias (SigLIP)
    have one; None leaves the vocabulary's."""
    reads_language: bool
    """Whether the text tower reads a language code before each text (NLLB)."""
    shared_prompts_key: str | None
    """What names the text tower's content, under which its prompts are kept for every store
    of this user (columnist.prompt_cache); None: they are not."""

    def prepare_image(self, image: "Image") -> "np.ndarray":
        """What the image tower needs of one decoded image (CLIP: its normalised pixels).

        The worker prepares each image as soon as it is decoded and keeps only this, so a
        batch never holds more than one full-size decoded image."""
        ...

    def encode_prepared(self, prepared: Sequence["np.ndarray"]) -> "np.ndarray":
        """(len(prepared), dim) unit-length float32 embeddings of prepared images."""
        ...

    def encode_images(self, images: Sequence["Image"]) -> "np.ndarray":
        """(len(images), dim) unit-length float32 embeddings of decoded RGB images."""
        ...

    def encode_texts(self, texts: Sequence[str]) -> "np.ndarray":
        """(len(texts), dim) unit-length float32 embeddings."""
        ...

    def encode_texts_in(self, texts: Sequence[str], language: str | None) -> "np.ndarray":
        """Texts in ``language`` (a vocabulary's translation key); None: the model's own."""
        ...

    def open_image_tower(self) -> None:
        """Open the image tower now (it opens on first use otherwise): a worker's start says
        at once that its model cannot be opened (models.sessions.ModelUnreadable)."""
        ...

    def warm_up(self) -> None:
        """Run a blank image through the image tower, so that a worker's first images do not
        pay for the runtime's first run."""
        ...

    def open_image_tower_soon(self) -> Any:
        """Open the image tower on a thread of its own while the caller does other work; the
        first encode waits for it."""
        ...
