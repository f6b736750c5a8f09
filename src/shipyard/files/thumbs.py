"""Thumbnails as PocketBase defines them (`WxH` crop from the centre, `WxHt` from the top,
`WxHb` from the bottom, `WxHf` fit inside, `0xH` / `Wx0` keep the aspect ratio), behind a
small interface (`Thumbnailer`) that a richer image pipeline can implement. This one uses
Pillow: EXIF orientation applied, the first frame of animations, PocketBase's formats
(JPEG stays JPEG, GIF stays GIF, the rest become PNG), metadata left out."""

from __future__ import annotations

import io
import re
from typing import Protocol

from PIL import Image, ImageOps

SIZE_RE = re.compile(r"^(\d+)x(\d+)(t|b|f)?$")
DEFAULT_SIZES = ("100x100",)
IMAGE_TYPES = ("image/png", "image/jpg", "image/jpeg", "image/gif", "image/webp")


class ThumbError(Exception):
    """The image cannot be thumbnailed (corrupt, too large): the original is served."""


class Thumbnailer(Protocol):
    def __call__(self, data: bytes, spec: str, accept: str | None) -> tuple[bytes, str]: ...


def allowed(spec: str, field_thumbs: list[str]) -> bool:
    return bool(spec) and (spec in DEFAULT_SIZES or spec in field_thumbs) and valid(spec)


def valid(spec: str) -> bool:
    m = SIZE_RE.match(spec)
    return m is not None and (int(m.group(1)) > 0 or int(m.group(2)) > 0)


class PillowThumbnailer:
    def __init__(self, max_pixels: int) -> None:
        self.max_pixels = max_pixels

    def __call__(self, data: bytes, spec: str, accept: str | None = None) -> tuple[bytes, str]:
        m = SIZE_RE.match(spec)
        if m is None:
            raise ThumbError(f"invalid thumb size {spec!r}")
        w, h, mode = int(m.group(1)), int(m.group(2)), m.group(3) or ""
        try:
            src = Image.open(io.BytesIO(data))
            if src.width * src.height > self.max_pixels:
                raise ThumbError("the image has too many pixels")
            fmt = src.format or "PNG"
            src.seek(0)  # the first frame of an animation
            img = self._resize(ImageOps.exif_transpose(src) or src, w, h, mode)
            out = io.BytesIO()
            if fmt == "JPEG":
                img.convert("RGB").save(out, "JPEG", quality=85)
                return out.getvalue(), "image/jpeg"
            if fmt == "GIF":
                img.save(out, "GIF")
                return out.getvalue(), "image/gif"
            img.save(out, "PNG")
            return out.getvalue(), "image/png"
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise ThumbError(str(exc)) from exc

    @staticmethod
    def _resize(img: Image.Image, w: int, h: int, mode: str) -> Image.Image:
        if w == 0 or h == 0:  # keep the aspect ratio
            if w == 0:
                w = max(1, round(img.width * h / img.height))
            else:
                h = max(1, round(img.height * w / img.width))
            return img.resize((w, h), Image.Resampling.LANCZOS)
        if mode == "f":
            fitted = img.copy()
            fitted.thumbnail((w, h), Image.Resampling.LANCZOS)
            return fitted
        centering = {"t": (0.5, 0.0), "b": (0.5, 1.0)}.get(mode, (0.5, 0.5))
        return ImageOps.fit(img, (w, h), Image.Resampling.LANCZOS, centering=centering)
