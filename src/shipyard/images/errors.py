"""The typed failures of the image pipeline: the caller maps each to a clear 4xx, never a 500."""

from __future__ import annotations


class ImageError(ValueError):
    """An image the pipeline refuses; `message` is safe to show to the client."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class CorruptImage(ImageError):
    """The bytes claim an image format but do not decode."""


class UnsupportedImage(ImageError):
    """Not an image of a format the pipeline decodes (PNG, JPEG, GIF, WebP, AVIF)."""


class ImageTooLarge(ImageError):
    """More pixels than `image_max_pixels` (decompression bombs are refused before decoding)."""


class ThumbSpecError(ImageError):
    """A thumb size that is not `WxH`, `WxHt`, `WxHb`, `WxHf`, `0xH` or `Wx0`."""


class PoolBusy(ImageError):
    """No thumbnail slot freed up within the wait limit; retry later (503)."""

    status = 503
