"""Bad and unusual images: each is decoded correctly or refused with a reason naming it."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from bench.media import camera_jpeg
from columnist.models.images import ImageError, open_image


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, with almost no pixel data behind it."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b"")


def photo() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))


@pytest.mark.parametrize("data, reason", [
    (b"", "empty file (0 bytes)"),
    (b"hello, I am a text file\n", "not an image"),
    (encode(photo(), "JPEG")[:300], "cannot decode"),
    (encode(photo(), "JPEG")[:-200], "cannot decode JPEG"),
    (png_header_only(30000, 30000), "refused before decoding"),
    (png_header_only(9000, 9000), "refused before decoding: 9000x9000 is 81,000,000 pixels, over the limit"),
])
def test_refused_with_reason_naming_the_image(data, reason):
    with pytest.raises(ImageError) as info:
        open_image(data, "bad/input.jpg")
    assert info.value.name == "bad/input.jpg"
    assert reason in str(info.value)
    assert str(info.value).startswith("bad/input.jpg: ")


def test_cmyk_becomes_rgb():
    image = open_image(encode(photo().convert("CMYK"), "JPEG"), "cmyk.jpg")
    assert image.mode == "RGB" and image.size == (64, 48)


def test_sixteen_bit_is_scaled_not_clipped():
    grey = np.full((10, 10), 32768, np.uint16)
    image = open_image(encode(Image.fromarray(grey), "PNG"), "deep.png")
    assert image.mode == "RGB"
    assert abs(int(np.asarray(image)[0, 0, 0]) - 128) <= 1


def test_palette_with_alpha():
    palette = photo().convert("P", palette=Image.ADAPTIVE)
    palette.info["transparency"] = 0
    image = open_image(encode(palette, "PNG", transparency=0), "palette.png")
    assert image.mode == "RGB" and image.size == (64, 48)


def test_rgba_drops_alpha_like_clip_processor():
    rgba = photo().convert("RGBA")
    image = open_image(encode(rgba, "PNG"), "alpha.png")
    np.testing.assert_array_equal(np.asarray(image), np.asarray(photo()))


def test_animated_gif_uses_first_frame():
    frames = [Image.new("RGB", (16, 16), c) for c in ("red", "blue", "green")]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    image = open_image(data, "anim.gif")
    assert image.getpixel((0, 0))[0] > 200 and image.getpixel((0, 0))[2] < 50


def test_multipage_tiff_uses_first_page():
    pages = [Image.new("RGB", (16, 16), c) for c in ("blue", "red")]
    image = open_image(encode(pages[0], "TIFF", save_all=True, append_images=pages[1:]), "pages.tif")
    assert image.getpixel((0, 0)) == (0, 0, 255)


def test_exif_orientation_is_applied():
    wide = Image.new("RGB", (40, 20), "white")
    wide.paste((255, 0, 0), (0, 0, 20, 20))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    image = open_image(encode(wide, "JPEG", exif=exif.tobytes()), "rotated.jpg")
    assert image.size == (20, 40)
    top = np.asarray(image)[2, 10]
    assert top[0] > 200 and top[1] < 60  # the red half is now on top


def test_a_camera_jpeg_decoded_at_the_size_needed_embeds_like_the_full_decode():
    from columnist.models.images import decode
    from columnist.models.registry import load_encoder

    data = camera_jpeg()
    full, reduced = decode(data, "camera.jpg"), decode(data, "camera.jpg", at_least=224)
    assert full.image.size == (4000, 3000) and reduced.image.size == (500, 375)  # the 1/8 DCT scale
    assert (reduced.width, reduced.height) == (4000, 3000)  # the recorded size is the photo's
    encoder = load_encoder("tiny-clip")
    pixels = [encoder.prepare_image(d.image) for d in (full, reduced)]
    assert float(np.abs(pixels[0] - pixels[1]).mean()) < 0.02  # normalised units; about 1/255 of a level
    embeddings = encoder.encode_prepared(pixels)
    assert float(embeddings[0] @ embeddings[1]) >= 0.9999


def test_a_rotated_camera_jpeg_keeps_its_upright_full_size():
    from columnist.models.images import decode

    decoded = decode(camera_jpeg(orientation=6), "rotated.jpg", at_least=224)
    assert (decoded.width, decoded.height) == (3000, 4000) and decoded.image.size == (375, 500)


def test_an_mpo_photo_is_decoded_at_the_size_needed_like_a_jpeg():
    """Phones write JPEGs with a gain map as MPO: the same draft decoding and scan limit apply."""
    import io

    from PIL import Image

    from columnist.models.images import decode, decoded_pixels

    buffer = io.BytesIO()
    photo = Image.new("RGB", (4000, 3000), (90, 120, 200))
    photo.save(buffer, "MPO", save_all=True, append_images=[Image.new("RGB", (400, 300))])
    data = buffer.getvalue()
    assert Image.open(io.BytesIO(data)).format == "MPO"
    decoded = decode(data, "phone.jpg", at_least=224)
    assert (decoded.width, decoded.height) == (4000, 3000) and decoded.image.size == (500, 375)
    assert decoded_pixels(data, at_least=224) == 500 * 375


@pytest.mark.parametrize("limit, reason", [(60_000_000, "200,000,000 pixels, over the limit of 60,000,000"),
                                           (500_000_000, "truncated")])  # past Pillow's own 178,956,970
def test_the_pixel_limit_pillow_applies_when_it_opens_is_columnists(limit, reason):
    from columnist.models.images import decode, decoded_pixels

    header = png_header_only(20_000, 10_000)
    assert decoded_pixels(header, max_pixels=500_000_000) == 200_000_000  # read from the header, not refused
    with pytest.raises(ImageError, match=reason):
        decode(header, "big.png", max_pixels=limit)
