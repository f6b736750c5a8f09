"""Thumbnails have PocketBase's geometry for every size form, its output formats, and the
pixels upright (EXIF orientation) from the first frame of an animation."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from shipyard.images import (
    ThumbSpecError,
    can_thumb,
    parse_spec,
    pocketbase_format,
    thumb_filename,
    thumbnail,
)
from tests.helpers.images import bands, close, encoded, pixel, size_of

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


@pytest.fixture(scope="module")
def tall() -> bytes:
    """100x300: red on top, green in the middle, blue at the bottom."""
    return encoded(bands(100, 300, [RED, GREEN, BLUE]), "PNG")


@pytest.mark.parametrize(
    ("spec", "size"),
    [
        ("100x100", (100, 100)),
        ("50x50t", (50, 50)),
        ("50x50b", (50, 50)),
        ("200x100", (200, 100)),  # fill upscales, like imaging.Fill
        ("50x50f", (16, 50)),  # fit truncates like Go: int(50 * 100/300)
        ("500x600f", (100, 300)),  # fit never upscales
        ("50x0", (50, 150)),
        ("0x30", (10, 30)),
        ("0x31f", (10, 31)),  # with a zero side the suffix is ignored: round(31/3) = 10
        ("400x0", (400, 1200)),  # keep-ratio resizes upscale, like imaging.Resize
    ],
)
def test_each_size_form_has_pocketbases_dimensions(
    tall: bytes, spec: str, size: tuple[int, int]
) -> None:
    assert size_of(thumbnail(tall, spec, "png")) == size


@pytest.mark.parametrize(
    ("spec", "colour"), [("100x100", GREEN), ("100x100t", RED), ("100x100b", BLUE)]
)
def test_fill_crops_at_its_anchor(tall: bytes, spec: str, colour: tuple[int, int, int]) -> None:
    out = thumbnail(tall, spec, "png")
    assert close(pixel(out, (50, 50)), colour, 5)


def test_fill_of_a_wide_image_crops_the_sides() -> None:
    wide = encoded(bands(300, 100, [RED, GREEN, BLUE], vertical=False), "PNG")
    out = thumbnail(wide, "100x100", "png")
    assert size_of(out) == (100, 100)
    assert close(pixel(out, (2, 50)), GREEN, 5)
    assert close(pixel(out, (97, 50)), GREEN, 5)


@pytest.mark.parametrize("spec", ["", "100", "0x0", "100x100c", "-1x5", "100X100", "99999x1"])
def test_sizes_pocketbase_refuses_are_refused(spec: str) -> None:
    with pytest.raises(ThumbSpecError):
        parse_spec(spec)


def test_pocketbase_formats_and_sources() -> None:
    assert [
        pocketbase_format(t) for t in ("image/jpeg", "image/gif", "image/png", "image/webp")
    ] == [
        "jpeg",
        "gif",
        "png",
        "png",  # PocketBase turns WebP into PNG
    ]
    assert can_thumb("image/webp")
    assert can_thumb("image/jpg")
    assert not can_thumb("image/svg+xml")
    assert thumb_filename("a_x.webp", "100x100", "png", "image/webp") == "100x100_a_x.webp"
    assert thumb_filename("a_x.webp", "100x100", "avif", "image/webp") == "100x100_a_x.webp.avif"


@pytest.mark.parametrize(
    ("fmt", "pillow"),
    [("jpeg", "JPEG"), ("png", "PNG"), ("gif", "GIF"), ("webp", "WEBP"), ("avif", "AVIF")],
)
def test_every_output_format_decodes(tall: bytes, fmt: str, pillow: str) -> None:
    with Image.open(io.BytesIO(thumbnail(tall, "40x40", fmt))) as im:
        assert im.format == pillow
        assert im.size == (40, 40)


def test_transparency_survives_png_and_webp() -> None:
    clear = encoded(Image.new("RGBA", (64, 64), (10, 20, 30, 0)), "PNG")
    for fmt in ("png", "webp"):
        with Image.open(io.BytesIO(thumbnail(clear, "32x32", fmt))) as im:
            assert im.convert("RGBA").getpixel((5, 5))[3] == 0  # type: ignore[index]


def test_exif_orientation_is_applied() -> None:
    # stored 200x100, left half red, right half blue; orientation 6: turn 90° clockwise to show
    stored = bands(200, 100, [RED, BLUE], vertical=False)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encoded(stored, "JPEG", exif=exif.tobytes(), quality=95)
    out = thumbnail(data, "50x0", "png")
    assert size_of(out) == (50, 100)
    assert close(pixel(out, (25, 10)), RED)
    assert close(pixel(out, (25, 90)), BLUE)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_an_animation_gives_its_first_frame(fmt: str) -> None:
    frames = [Image.new("RGB", (60, 40), c) for c in (RED, BLUE, GREEN)]
    data = encoded(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    with Image.open(io.BytesIO(data)) as im:
        assert im.n_frames == 3  # type: ignore[attr-defined]
    for out_fmt in ("png", "webp", "gif"):
        out = thumbnail(data, "30x20", out_fmt)
        assert close(pixel(out, (15, 10)), RED)
        with Image.open(io.BytesIO(out)) as im:
            assert getattr(im, "n_frames", 1) == 1


def test_a_path_is_a_source(tmp_path: object, tall: bytes) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "tall.png"
    path.write_bytes(tall)
    assert size_of(thumbnail(path, "10x10", "jpeg")) == (10, 10)


@pytest.mark.parametrize("spec", ["100x100", "100x100t", "64x0", "0x77", "100x100f", "333x100b"])
def test_a_jpeg_decoded_at_a_reduced_scale_keeps_the_exact_geometry(spec: str) -> None:
    im = bands(1601, 1203, [RED, GREEN, BLUE])
    as_jpeg = thumbnail(encoded(im, "JPEG", quality=95), spec, "png")
    as_png = thumbnail(encoded(im, "PNG"), spec, "png")  # PNG: always decoded in full
    assert size_of(as_jpeg) == size_of(as_png)
    w, h = size_of(as_png)
    assert close(pixel(as_jpeg, (w // 2, h // 2)), pixel(as_png, (w // 2, h // 2)), 12)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "1", "I;16", "RGBA"])
def test_every_pixel_mode_keeps_its_picture(mode: str) -> None:
    grey = Image.linear_gradient("L").resize((64, 64))  # black at the top, white at the bottom
    if mode == "I;16":
        src = grey.convert("I").point(lambda v: v * 257).convert("I;16")  # 16-bit grey PNG
    else:
        src = grey.convert(mode)
    out = thumbnail(encoded(src, "PNG"), "32x32", "webp")
    assert close(pixel(out, (16, 16)), (128, 128, 128), 20)
    assert pixel(out, (16, 1))[0] < pixel(out, (16, 30))[0]
