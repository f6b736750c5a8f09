"""Untrusted images: metadata never reaches a thumbnail, bombs and corrupt data are refused
with typed errors (the caller's 400), and only the five supported formats are decoded."""

from __future__ import annotations

import io
import os
import random

import pytest
from PIL import Image, ImageCms

from shipyard.images import (
    CorruptImage,
    ImageError,
    ImageTooLarge,
    UnsupportedImage,
    inspect,
    placeholder,
    thumbnail,
)
from tests.helpers.images import encoded, png_header_only

GPS_IFD = 0x8825


def _with_gps() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x0131] = "SecretCam 1.0"  # Software
    exif[GPS_IFD] = {1: "N", 2: (48.0, 51.0, 29.0), 3: "E", 4: (2.0, 17.0, 40.0)}
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    im = Image.new("RGB", (120, 80), (200, 120, 40))
    return encoded(im, "JPEG", exif=exif.tobytes(), icc_profile=icc)


def test_the_source_really_carries_gps() -> None:
    with Image.open(io.BytesIO(_with_gps())) as im:
        assert im.getexif().get_ifd(GPS_IFD)


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp", "avif", "gif"])
def test_exif_and_gps_are_stripped(fmt: str) -> None:
    out = thumbnail(_with_gps(), "60x40", fmt)
    assert b"PhoneMaker" not in out
    assert b"SecretCam" not in out
    with Image.open(io.BytesIO(out)) as im:
        assert "exif" not in im.info
        assert "xmp" not in im.info
        assert not im.getexif().get_ifd(GPS_IFD)
        assert len(im.getexif()) == 0


def test_the_colour_profile_is_kept() -> None:
    with Image.open(io.BytesIO(thumbnail(_with_gps(), "60x40", "webp"))) as im:
        assert im.info.get("icc_profile")


def test_a_decompression_bomb_is_refused_from_its_header() -> None:
    bomb = png_header_only(100_000, 100_000)  # 10 gigapixels, 100 bytes
    assert len(bomb) < 200
    _refused_everywhere(bomb, ImageTooLarge)


def test_the_pixel_limit_is_a_parameter() -> None:
    data = encoded(Image.new("RGB", (100, 100)), "PNG")
    with pytest.raises(ImageTooLarge, match="100x100 pixels, more than the limit of 9999"):
        thumbnail(data, "10x10", "png", max_pixels=9999)
    assert thumbnail(data, "10x10", "png", max_pixels=10_000)


def test_a_bomb_between_the_setting_and_pillows_own_limit_is_refused() -> None:
    header = png_header_only(8000, 6000)  # 48 MP: under Pillow's limit, over the default 40 MP
    with pytest.raises(ImageTooLarge):
        inspect(header)


def _photo() -> bytes:
    im = Image.effect_mandelbrot((256, 256), (-2, -1.5, 1, 1.5), 64).convert("RGB")
    return encoded(im, "JPEG", quality=90)


@pytest.mark.parametrize(
    ("name", "data", "error"),
    [
        ("truncated jpeg", _photo()[:1500], CorruptImage),
        ("random bytes", os.urandom(2048), UnsupportedImage),
        ("empty", b"", UnsupportedImage),
        ("text", b"<svg xmlns='http://www.w3.org/2000/svg'/>", UnsupportedImage),
        ("png with a broken body", png_header_only(64, 64)[:-12] + b"garbage!", CorruptImage),
        (
            "bmp (not a supported source)",
            encoded(Image.new("RGB", (8, 8)), "BMP"),
            UnsupportedImage,
        ),
    ],
)
def test_bad_images_give_typed_errors(name: str, data: bytes, error: type[ImageError]) -> None:
    _refused_everywhere(data, error)


def _refused_everywhere(data: bytes, error: type[ImageError]) -> None:
    """Upload check, placeholder and thumbnail all raise `error`, a 400 with a message."""
    for call in (
        lambda: thumbnail(data, "10x10", "png"),
        lambda: inspect(data),
        lambda: placeholder(data),
    ):
        with pytest.raises(error) as caught:
            call()
        assert caught.value.status == 400
        assert caught.value.message


def test_inspect_describes_an_upload() -> None:
    exif = Image.Exif()
    exif[0x0112] = 8  # shown turned: the displayed size swaps the sides
    info = inspect(encoded(Image.new("RGB", (30, 20)), "JPEG", exif=exif.tobytes()))
    assert (info.format, info.mime, info.width, info.height, info.animated) == (
        "jpeg",
        "image/jpeg",
        20,
        30,
        False,
    )
    frames = [Image.new("RGB", (8, 8), c) for c in ((1, 2, 3), (200, 100, 0))]
    gif = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert inspect(gif).frames == 2
    assert inspect(gif).animated


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "AVIF"])
def test_mangled_images_give_image_errors_only(fmt: str) -> None:
    """Seeded byte flips and truncations: every outcome is a thumbnail or an ImageError
    (the AVIF decoder, for one, fails with RuntimeError, which must not escape)."""
    rng = random.Random(fmt)
    exif = Image.Exif()
    exif[0x0112] = 6
    options = {"exif": exif.tobytes()} if fmt != "GIF" else {}
    seed = encoded(
        Image.effect_mandelbrot((96, 64), (-2, -1, 1, 1), 40).convert("RGB"), fmt, **options
    )
    refused = []
    for _ in range(120):
        data = bytearray(seed)
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.3:
            data = data[: rng.randrange(len(data))]
        try:
            thumbnail(bytes(data), "20x20", "png")
        except ImageError as exc:
            refused.append(exc.status)
    assert refused
    assert set(refused) == {400}


def test_inspect_gives_the_placeholder_from_the_same_decode() -> None:
    big = encoded(
        Image.effect_mandelbrot((1600, 1200), (-2, -1.5, 1, 1.5), 60).convert("RGB"), "JPEG"
    )
    info = inspect(big, with_placeholder=True)
    assert (info.width, info.height) == (1600, 1200)
    assert info.placeholder == placeholder(big)
