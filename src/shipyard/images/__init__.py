"""The image pipeline: PocketBase's thumbnails, format negotiation, placeholders, srcset.

Pure functions over bytes (or a path) and a small bounded pool; nothing here knows records,
storage or HTTP. The files capability calls it: `inspect(..., with_placeholder=True)` on upload,
`negotiate` + `thumbnail` through a `ThumbnailPool` when a `?thumb=` is first asked for.
"""

from shipyard.images.decode import DEFAULT_MAX_PIXELS, PILLOW_MAX_PIXELS, ImageInfo
from shipyard.images.demo import demo_images
from shipyard.images.errors import (
    CorruptImage,
    ImageError,
    ImageTooLarge,
    PoolBusy,
    ThumbSpecError,
    UnsupportedImage,
)
from shipyard.images.negotiate import NEGOTIABLE, negotiate
from shipyard.images.pool import ThumbnailPool
from shipyard.images.responsive import allowed_spec, srcset, width_spec
from shipyard.images.specs import (
    DEFAULT_THUMB_SIZES,
    MIME,
    ThumbSpec,
    can_thumb,
    parse_spec,
    pocketbase_format,
    thumb_filename,
)
from shipyard.images.thumbs import thumbnail
from shipyard.images.uploads import inspect, placeholder

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_THUMB_SIZES",
    "MIME",
    "NEGOTIABLE",
    "PILLOW_MAX_PIXELS",
    "CorruptImage",
    "ImageError",
    "ImageInfo",
    "ImageTooLarge",
    "PoolBusy",
    "ThumbSpec",
    "ThumbSpecError",
    "ThumbnailPool",
    "UnsupportedImage",
    "allowed_spec",
    "can_thumb",
    "demo_images",
    "inspect",
    "negotiate",
    "parse_spec",
    "placeholder",
    "pocketbase_format",
    "srcset",
    "thumb_filename",
    "thumbnail",
    "width_spec",
]
