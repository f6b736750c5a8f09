"""The media part of the settings (image pipeline, static assets and CDN, files): a base of
`Settings`, kept apart so that settings.py stays one screen per concern."""

from __future__ import annotations

from dataclasses import dataclass, field

from shipyard.tools.settings_parse import (
    PILLOW_MAX_PIXELS,
    SettingsError,
    parse_image_formats,
    parse_image_widths,
)


@dataclass(frozen=True)
class MediaSettings:
    # image pipeline (docs/images.md)
    image_max_pixels: int = 40_000_000  # larger images are refused (decompression bombs): 400
    thumbs_concurrency: int = 2  # thumbnails generated at once per process; the rest wait
    thumbs_max_wait: float = 30.0  # seconds a thumbnail waits for a slot before a 503
    image_formats: str = "avif,webp"  # negotiated thumbnail formats, preferred first; "": off
    image_widths: str = "320,640,960,1280,1920"  # responsive widths: ?thumb=<W>x0 and srcset
    image_placeholders: bool = True  # compute a BlurHash of every uploaded image
    # static assets and CDN (docs/assets.md)
    public_dir: str = ""  # served at /; empty: shipyard_public beside the data directory
    index_fallback: bool = True  # a missing page (no file extension) answers index.html
    public_csp: str = "frame-ancestors 'self'"  # Content-Security-Policy of the public files
    cdn_url: str = ""  # https://cdn.example.com: file and asset URLs point there
    cdn_cloudflare_zone: str = ""  # the zone id whose cache `cdn_purge` jobs purge
    cdn_cloudflare_token: str = field(default="", repr=False)  # API token: Zone.Cache Purge
    cdn_cloudflare_api: str = "https://api.cloudflare.com/client/v4"
    cdn_purge_timeout: float = 10.0  # seconds per purge request
    cdn_purge_max_attempts: int = 8  # tries before a purge is dead-lettered
    cdn_purge_backoff_base: float = 10.0  # seconds before the first retry; doubles each attempt
    # files (docs/files.md): uploads, storage (local disk in data_dir, or S3), thumbnails
    files_max_upload_size: int = 256 * 1024 * 1024  # bytes of one multipart body, files included
    files_token_duration: int = 180  # seconds a protected-file token (POST /api/files/token) lives


def validate_media(s: MediaSettings) -> None:
    if s.image_max_pixels > PILLOW_MAX_PIXELS:
        raise SettingsError(
            f"SHIPYARD_IMAGE_MAX_PIXELS: must be at most {PILLOW_MAX_PIXELS} (Pillow's bomb limit)"
        )
    if not 0 < s.thumbs_max_wait <= 3600:  # also refuses nan
        raise SettingsError("SHIPYARD_THUMBS_MAX_WAIT: must be between 0 and 3600 seconds")
    parse_image_formats(s.image_formats)
    parse_image_widths(s.image_widths)
