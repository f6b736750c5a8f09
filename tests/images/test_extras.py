"""Placeholders, srcset values, demo pictures and the image settings."""

from __future__ import annotations

import io

import blurhash
import pytest
from PIL import Image

from shipyard.images import allowed_spec, demo_images, placeholder, srcset
from shipyard.settings import SettingsError, load_settings
from tests.helpers.images import bands, encoded


def test_placeholder_is_a_deterministic_blurhash() -> None:
    data = encoded(bands(300, 200, [(255, 0, 0), (0, 0, 255)]), "PNG")
    first = placeholder(data)
    assert first == placeholder(data)
    assert len(first) == 28
    blurhash.decode(first, 8, 8)  # a valid hash
    assert first.startswith("L")  # 4x3 components for a landscape image
    other = encoded(bands(300, 200, [(0, 255, 0), (255, 255, 0)]), "PNG")
    assert placeholder(other) != first
    portrait = placeholder(encoded(bands(200, 300, [(255, 0, 0), (0, 0, 255)]), "PNG"))
    assert portrait[0] != first[0]  # 3x4 components


def test_placeholder_of_a_transparent_image() -> None:
    data = encoded(Image.new("RGBA", (40, 40), (0, 0, 0, 0)), "PNG")
    decoded = blurhash.decode(placeholder(data), 4, 4)
    assert [round(v) for v in decoded[2][2][:3]] == [255, 255, 255]  # transparent shows white


def test_srcset_lists_allowed_widths_below_the_original() -> None:
    url = "/api/files/posts/abc/pic_0123456789.jpg"
    assert srcset(url, [640, 320, 1920], original_width=1200) == (
        f"{url}?thumb=320x0 320w, {url}?thumb=640x0 640w, {url} 1200w"
    )
    assert srcset(url + "?token=t", [320]) == f"{url}?token=t&thumb=320x0 320w"


def test_allowed_specs() -> None:
    assert allowed_spec("100x100", [], [])
    assert allowed_spec("50x50t", ["50x50t"], [])
    assert allowed_spec("640x0", [], [320, 640])
    assert not allowed_spec("641x0", [], [320, 640])
    assert not allowed_spec("0x640", [], [640])


def test_demo_images_are_distinct_jpegs() -> None:
    images = demo_images(3)
    assert [name for name, _ in images] == ["demo-1.jpg", "demo-2.jpg", "demo-3.jpg"]
    assert len({data for _, data in images}) == 3
    for _, data in images:
        with Image.open(io.BytesIO(data)) as im:
            assert im.format == "JPEG"
            assert im.size == (1200, 800)
    assert demo_images(1) == images[:1]


def test_image_settings_have_safe_defaults() -> None:
    s = load_settings(env={})
    assert 0 < s.image_max_pixels <= 89_478_485
    assert s.thumbs_concurrency >= 1
    assert s.image_formats == "avif,webp"
    assert s.image_placeholders


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SHIPYARD_IMAGE_MAX_PIXELS": "0"}, "SHIPYARD_IMAGE_MAX_PIXELS: must be greater than 0"),
        ({"SHIPYARD_IMAGE_MAX_PIXELS": "200000000"}, "SHIPYARD_IMAGE_MAX_PIXELS: must be at most"),
        (
            {"SHIPYARD_THUMBS_CONCURRENCY": "0"},
            "SHIPYARD_THUMBS_CONCURRENCY: must be greater than 0",
        ),
        ({"SHIPYARD_THUMBS_MAX_WAIT": "nan"}, "SHIPYARD_THUMBS_MAX_WAIT"),
        (
            {"SHIPYARD_IMAGE_FORMATS": "avif,jxl"},
            "SHIPYARD_IMAGE_FORMATS: 'jxl' is not one of avif, webp",
        ),
        ({"SHIPYARD_IMAGE_WIDTHS": "320,wide"}, "SHIPYARD_IMAGE_WIDTHS: 'wide' is not a width"),
        ({"SHIPYARD_IMAGE_WIDTHS": "0"}, "SHIPYARD_IMAGE_WIDTHS: .0. is not a width"),
        ({"SHIPYARD_IMAGE_WIDTHS": "9000"}, "SHIPYARD_IMAGE_WIDTHS: .9000. is not a width"),
        ({"SHIPYARD_IMAGE_WIDTHS": "-5"}, "SHIPYARD_IMAGE_WIDTHS: .-5. is not a width"),
    ],
)
def test_bad_image_settings_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(env=env)


def test_image_settings_parse() -> None:
    from shipyard.settings import parse_image_formats, parse_image_widths

    assert parse_image_formats(" WebP, avif,webp") == ("webp", "avif")
    assert parse_image_formats("") == ()
    assert parse_image_widths("640, 320,640") == (320, 640)
