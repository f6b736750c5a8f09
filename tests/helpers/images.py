"""Images the image tests make with Pillow (no downloads)."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

from PIL import Image


def encoded(im: Image.Image, fmt: str, **options: Any) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **options)
    return buf.getvalue()


def bands(
    width: int, height: int, colours: list[tuple[int, int, int]], vertical: bool = True
) -> Image.Image:
    """Equal bands of `colours`, top to bottom (vertical) or left to right."""
    im = Image.new("RGB", (width, height))
    n = len(colours)
    for i, colour in enumerate(colours):
        if vertical:
            box = (0, i * height // n, width, (i + 1) * height // n)
        else:
            box = (i * width // n, 0, (i + 1) * width // n, height)
        im.paste(colour, box)
    return im


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height pixels but holds almost no data: a bomb's header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grey
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def pixel(data: bytes, xy: tuple[int, int]) -> tuple[int, ...]:
    with Image.open(io.BytesIO(data)) as im:
        value = im.convert("RGB").getpixel(xy)
    assert isinstance(value, tuple)
    return value


def size_of(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as im:
        return im.size


def close(a: tuple[int, ...], b: tuple[int, ...], tolerance: int = 40) -> bool:
    return all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))
