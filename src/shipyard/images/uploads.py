"""The check of an uploaded image: decoded once, described, and given its placeholder."""

from __future__ import annotations

from shipyard.images.decode import DEFAULT_MAX_PIXELS, ImageInfo, Source, open_image
from shipyard.images.placeholder import SAMPLE_SIDE, placeholder_of
from shipyard.images.specs import MIME


def inspect(
    source: Source, max_pixels: int = DEFAULT_MAX_PIXELS, with_placeholder: bool = False
) -> ImageInfo:
    """Decode an upload once and describe it: the check on upload, so that a corrupt image
    gets a 400 then and never a 500 later. Width and height are as displayed (EXIF
    orientation applied). `with_placeholder` adds the BlurHash from the same decode (a JPEG
    is then decoded at a reduced scale: all of its data is still read and checked)."""
    want = (lambda w, h: (min(w, SAMPLE_SIDE), min(h, SAMPLE_SIDE))) if with_placeholder else None
    opened = open_image(source, max_pixels, want=want)
    width, height = opened.size
    blur = placeholder_of(opened.image) if with_placeholder else ""
    return ImageInfo(opened.format, MIME[opened.format], width, height, opened.frames, blur)


def placeholder(source: Source, max_pixels: int = DEFAULT_MAX_PIXELS) -> str:
    """The BlurHash of the upright first frame (4x3 components, 3x4 for portrait images).
    Deterministic: the same image gives the same string, here and from `inspect`."""
    return inspect(source, max_pixels, with_placeholder=True).placeholder
