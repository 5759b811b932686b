import numpy as np
from PIL import Image

from columnist.models.encoder import Encoder
from columnist.models.mock import MockEncoder


def test_mock_is_deterministic_unit_length_and_an_encoder():
    a, b = MockEncoder(), MockEncoder()
    assert isinstance(a, Encoder)
    texts = ["a photo of the Moon", "a photo of the Earth"]
    np.testing.assert_array_equal(a.encode_texts(texts), b.encode_texts(texts))
    images = [Image.new("RGB", (8, 8), "red"), Image.new("RGB", (8, 8), "blue")]
    embedded = a.encode_images(images)
    assert embedded.shape == (2, 512) and embedded.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embedded, axis=1), 1.0, rtol=1e-6)
    assert not np.array_equal(embedded[0], embedded[1])
    np.testing.assert_array_equal(embedded, b.encode_images(images))


def test_mock_logits_sit_in_clips_range():
    encoder = MockEncoder()
    images = encoder.encode_images([Image.new("RGB", (4, 4), (i, 0, 0)) for i in range(50)])
    logits = encoder.logit_scale * images @ encoder.encode_texts(["x"])[0]
    assert 15 < logits.mean() < 30
