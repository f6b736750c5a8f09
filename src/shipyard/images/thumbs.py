"""Thumbnails as PocketBase makes them, encoded without metadata.

Geometry follows PocketBase's imaging calls (Fill with an anchor, Fit, Resize keeping the
ratio) with the same rounding; resampling is Pillow's bilinear filter on the pixels, like
PocketBase's `imaging.Linear`, but with Pillow's reducing pre-pass for large shrink factors.
Output keeps the pixels and the ICC colour profile only: EXIF (GPS, camera serials), XMP and
text chunks never reach a served thumbnail.
"""

from __future__ import annotations

import io

from PIL import Image

from shipyard.images.decode import DEFAULT_MAX_PIXELS, PILLOW_FORMAT, Source, open_image
from shipyard.images.errors import ThumbSpecError
from shipyard.images.specs import ThumbSpec, parse_spec

# encoder settings per output format: sizes are what matters for thumbnails
QUALITY = {"jpeg": 85, "webp": 80, "avif": 50}  # AVIF 50 looks like WebP 80, a bit smaller
AVIF_SPEED = 8  # libavif's 0 (slowest, smallest) .. 10; 8 keeps a thumbnail under ~100 ms


def thumbnail(source: Source, spec: str, fmt: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """The `spec` thumbnail of `source` (bytes or a path) encoded as `fmt` ("jpeg", "png",
    "gif", "webp", "avif"). Raises an ImageError subclass for anything it refuses."""
    if fmt not in PILLOW_FORMAT:
        raise ThumbSpecError(f"unknown thumbnail format {fmt!r}")
    parsed = parse_spec(spec)
    opened = open_image(source, max_pixels, want=parsed.scaled_size)
    return encode(resize(opened.image, parsed, opened.size), fmt)


def resize(im: Image.Image, spec: ThumbSpec, full_size: tuple[int, int]) -> Image.Image:
    """Apply a parsed thumb size to an upright image whose full size is `full_size` (the
    image may have been decoded smaller): the geometry is always the full size's."""
    im = _working_mode(im)
    w, h = spec.size_for(*full_size)
    cover = spec.scaled_size(*full_size)
    scaled = im if im.size == cover else im.resize(cover, Image.Resampling.BILINEAR)
    if cover == (w, h):
        return scaled
    # fill: the box is covered keeping the ratio (imaging.Fill), now crop at the anchor
    x = (scaled.width - w) // 2
    y = {"top": 0, "bottom": scaled.height - h}.get(spec.mode, (scaled.height - h) // 2)
    return scaled.crop((x, y, x + w, y + h))


def _working_mode(im: Image.Image) -> Image.Image:
    """RGB or RGBA (palette and grey images resample badly and lose transparency otherwise)."""
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):  # 16-bit grey: down to 8 bits
        im = im.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    has_alpha = im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info
    want = "RGBA" if has_alpha else "RGB"
    return im if im.mode == want else im.convert(want)


def encode(im: Image.Image, fmt: str) -> bytes:
    """Encode pixels only (plus the ICC profile): no EXIF, XMP, comments or text chunks."""
    icc = im.info.get("icc_profile")
    clean = im.copy()
    clean.info = {}
    options: dict[str, object] = {}
    if icc:
        options["icc_profile"] = icc
    if fmt == "jpeg":
        if clean.mode != "RGB":
            clean = _flatten(clean)
        options.update(quality=QUALITY["jpeg"], optimize=True)
    elif fmt == "webp":
        options.update(quality=QUALITY["webp"], method=4)
    elif fmt == "avif":
        options.update(quality=QUALITY["avif"], speed=AVIF_SPEED)
    elif fmt == "gif":
        options.pop("icc_profile", None)
    out = io.BytesIO()
    clean.save(out, PILLOW_FORMAT[fmt], **options)
    return out.getvalue()


def _flatten(im: Image.Image) -> Image.Image:
    """Transparent pixels on white, for JPEG (which has no alpha)."""
    rgba = im.convert("RGBA")
    base = Image.new("RGB", rgba.size, (255, 255, 255))
    base.paste(rgba, mask=rgba.getchannel("A"))
    return base
