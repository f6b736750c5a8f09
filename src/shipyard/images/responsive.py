"""Responsive images: `srcset` values from the allowed widths, served as `?thumb=<W>x0`.

A width thumb `Wx0` keeps the aspect ratio (PocketBase's own size syntax), so any allowed
width is a valid `?thumb=` for any image field, besides the sizes the field lists.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from shipyard.images.specs import DEFAULT_THUMB_SIZES


def width_spec(width: int) -> str:
    return f"{width}x0"


def srcset(url: str, widths: Sequence[int], original_width: int | None = None) -> str:
    """`"u?thumb=320x0 320w, u?thumb=640x0 640w, u 1200w"`: the allowed widths below the
    original's (no upscaled candidates), then the original itself when its width is known."""
    sep = "&" if "?" in url else "?"
    parts = [
        f"{url}{sep}thumb={width_spec(w)} {w}w"
        for w in sorted(set(widths))
        if original_width is None or w < original_width
    ]
    if original_width is not None:
        parts.append(f"{url} {original_width}w")
    return ", ".join(parts)


def allowed_spec(spec: str, field_thumbs: Iterable[str], widths: Iterable[int]) -> bool:
    """Whether `?thumb=spec` is served as a thumbnail: PocketBase's 100x100, the sizes the
    field lists, or `Wx0` for an allowed responsive width (otherwise the original is sent)."""
    return (
        spec in DEFAULT_THUMB_SIZES
        or spec in set(field_thumbs)
        or spec in {width_spec(w) for w in widths}
    )
