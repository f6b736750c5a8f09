"""Opening untrusted image bytes safely: known formats only, the pixel limit checked on the
header before any pixel is decoded, EXIF orientation applied, the first frame of animations.

Pillow is asked for five formats only (PNG, JPEG, GIF, WebP, AVIF), so a file that claims to
be, say, EPS never reaches a decoder that shells out. Every decoder failure becomes a
`CorruptImage`; a caller never sees a Pillow exception.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from PIL import Image, ImageOps, UnidentifiedImageError

from shipyard.images.errors import CorruptImage, ImageTooLarge, UnsupportedImage

Source = bytes | str | os.PathLike[str] | BinaryIO  # a file object: read from its start

FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "AVIF")
PILLOW_FORMAT = {"jpeg": "JPEG", "png": "PNG", "gif": "GIF", "webp": "WEBP", "avif": "AVIF"}
DEFAULT_MAX_PIXELS = 40_000_000
# Pillow warns past this many pixels and refuses twice as many; the setting stays below it
PILLOW_MAX_PIXELS = int(Image.MAX_IMAGE_PIXELS or 89_478_485)


@dataclass(frozen=True)
class ImageInfo:
    """What an upload holds: format name ("jpeg"…), MIME type, displayed size, frame count
    and, when asked for, its BlurHash placeholder ("" otherwise)."""

    format: str
    mime: str
    width: int
    height: int
    frames: int
    placeholder: str = ""

    @property
    def animated(self) -> bool:
        return self.frames > 1


class _Borrowed:
    """A caller's open file handed to Pillow, which closes the file of an image it closes:
    the caller keeps it open (an upload is still to be stored)."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f

    def read(self, n: int = -1) -> bytes:
        return self._f.read(n)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def close(self) -> None:
        """Left to the owner."""


def _open(source: Source) -> Image.Image:
    fp: BinaryIO | Path
    if isinstance(source, bytes | bytearray):
        fp = io.BytesIO(source)
    elif isinstance(source, str | os.PathLike):
        fp = Path(source)
    else:
        source.seek(0)
        fp = _Borrowed(source)  # type: ignore[assignment]
    try:
        return Image.open(fp, formats=FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):  # warning: as error
        raise ImageTooLarge("the image has too many pixels") from None
    except UnidentifiedImageError:
        raise UnsupportedImage(
            "not an image of a supported format (PNG, JPEG, GIF, WebP, AVIF)"
        ) from None
    except Exception as exc:  # any decoder failure on untrusted bytes (AVIF: RuntimeError)
        raise CorruptImage(f"the image cannot be read ({type(exc).__name__})") from None


@dataclass
class Opened:
    """The decoded, upright first frame, its format name, the source's frame count and its
    full displayed size (the image itself may be smaller when decoded for a small target)."""

    image: Image.Image
    format: str
    frames: int
    size: tuple[int, int]


ORIENTATION = 0x0112
TURNED = (5, 6, 7, 8)  # EXIF orientations that swap width and height


def open_image(
    source: Source,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    want: Callable[[int, int], tuple[int, int]] | None = None,
) -> Opened:
    """Decode the first frame upright; refuses bombs (on the header) and corrupt data.

    `want(width, height)` → the size the caller scales the displayed image to: a JPEG is then
    decoded at 1/2, 1/4 or 1/8 scale when that still covers it (libjpeg's DCT scaling), which
    makes a thumbnail of a camera photo several times faster and smaller in memory."""
    im = _open(source)
    try:
        w, h = im.size
        if w <= 0 or h <= 0:
            raise CorruptImage("the image has no pixels")
        if w * h > max_pixels:
            raise ImageTooLarge(
                f"the image has {w}x{h} pixels, more than the limit of {max_pixels}"
            )
        fmt = (im.format or "").lower()
        try:
            frames = int(getattr(im, "n_frames", 1))
            turned = im.getexif().get(ORIENTATION, 1) in TURNED
            size = (h, w) if turned else (w, h)
            if want is not None and fmt == "jpeg":
                need = want(*size)
                im.draft(None, need[::-1] if turned else need)
            im.seek(0)
            im.load()
            upright = ImageOps.exif_transpose(im)
        except Exception as exc:  # any decoder failure on untrusted bytes (AVIF: RuntimeError)
            raise CorruptImage(f"the image cannot be decoded ({type(exc).__name__})") from None
        return Opened(upright, fmt, frames, size)
    finally:
        im.close()
