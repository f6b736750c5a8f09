"""PocketBase's thumb sizes and output formats, as `tools/filesystem` and `apis/file.go` define them.

`WxH` fills and crops from the center, `WxHt` from the top, `WxHb` from the bottom, `WxHf`
fits inside without upscaling, and `0xH` / `Wx0` resize keeping the aspect ratio (the suffix
is then ignored). Sizes are rounded the way PocketBase's imaging library rounds them, so a
thumbnail here has exactly the dimensions PocketBase would give.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shipyard.images.errors import ThumbSpecError

_SPEC_RE = re.compile(r"^(\d+)x(\d+)(t|b|f)?$")
MAX_SIDE = 16384  # a thumb side above this is refused (no image format here holds more)

# source types PocketBase makes thumbnails of (apis/file.go imageContentTypes)
THUMB_SOURCE_TYPES = frozenset({"image/png", "image/jpg", "image/jpeg", "image/gif", "image/webp"})
DEFAULT_THUMB_SIZES = ("100x100",)  # always allowed, besides the sizes listed on the field

MIME = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "gif": "image/gif",
    "webp": "image/webp",
    "avif": "image/avif",
}


@dataclass(frozen=True)
class ThumbSpec:
    """A parsed thumb size: `mode` is "center", "top", "bottom", "fit" or "ratio"."""

    width: int
    height: int
    mode: str

    def size_for(self, src_w: int, src_h: int) -> tuple[int, int]:
        """The thumbnail's dimensions for a source of src_w x src_h (after orientation)."""
        if self.mode == "ratio":
            if self.width == 0:
                return max(1, _round(self.height * src_w / src_h)), self.height
            return self.width, max(1, _round(self.width * src_h / src_w))
        if self.mode == "fit":
            if src_w <= self.width and src_h <= self.height:
                return src_w, src_h  # fit never upscales
            if src_w / src_h > self.width / self.height:
                return self.width, max(1, int(self.width / (src_w / src_h)))
            return max(1, int(self.height * (src_w / src_h))), self.height
        return self.width, self.height

    def scaled_size(self, src_w: int, src_h: int) -> tuple[int, int]:
        """The size the whole image is resized to: the thumbnail's, or for the fill modes the
        box it covers before the crop (imaging.Fill resizes keeping the ratio, then crops)."""
        if self.mode in ("ratio", "fit"):
            return self.size_for(src_w, src_h)
        if (src_w, src_h) == (self.width, self.height):
            return src_w, src_h
        if src_w / src_h < self.width / self.height:
            return ThumbSpec(self.width, 0, "ratio").size_for(src_w, src_h)
        return ThumbSpec(0, self.height, "ratio").size_for(src_w, src_h)


def _round(x: float) -> int:
    """Go's math.Floor(x + 0.5), as imaging.Resize rounds a kept-ratio side."""
    return int(x + 0.5)


def parse_spec(spec: str) -> ThumbSpec:
    """`"640x0"` → ThumbSpec(640, 0, "ratio"); anything PocketBase refuses raises ThumbSpecError."""
    m = _SPEC_RE.match(spec)
    if not m:
        raise ThumbSpecError(f"thumb size {spec!r} must be in WxH, WxHt, WxHb or WxHf format")
    width, height = int(m.group(1)), int(m.group(2))
    if width == 0 and height == 0:
        raise ThumbSpecError("thumb width and height cannot be zero at the same time")
    if width > MAX_SIDE or height > MAX_SIDE:
        raise ThumbSpecError(f"thumb sides must be at most {MAX_SIDE} pixels")
    if width == 0 or height == 0:
        return ThumbSpec(width, height, "ratio")
    mode = {"t": "top", "b": "bottom", "f": "fit"}.get(m.group(3) or "", "center")
    return ThumbSpec(width, height, mode)


def can_thumb(content_type: str) -> bool:
    """Whether PocketBase makes thumbnails of a file of this type (others are served as is)."""
    return content_type.split(";")[0].strip().lower() in THUMB_SOURCE_TYPES


def pocketbase_format(content_type: str) -> str:
    """The thumbnail format PocketBase writes: JPEG and GIF stay, everything else becomes PNG."""
    kind = content_type.split(";")[0].strip().lower()
    if kind in ("image/jpeg", "image/jpg"):
        return "jpeg"
    if kind == "image/gif":
        return "gif"
    return "png"


def thumb_filename(filename: str, spec: str, fmt: str, content_type: str) -> str:
    """The stored thumbnail's name: PocketBase's `{spec}_{filename}` for PocketBase's format,
    `{spec}_{filename}.{fmt}` for a negotiated one (never the same name for other bytes)."""
    name = f"{spec}_{filename}"
    return name if fmt == pocketbase_format(content_type) else f"{name}.{fmt}"
