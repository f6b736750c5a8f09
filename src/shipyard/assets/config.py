"""The assets capability's settings, read and checked (kept here, beside what uses them,
as the alerts capability checks its rules): a bad value stops start-up with a
`SettingsError` naming the setting."""

from __future__ import annotations

import re
from pathlib import Path

from shipyard.settings import Settings, SettingsError

_URL = re.compile(r"https?://[^/\s?#]+(/[^\s?#]*)?")


def public_path(s: Settings) -> Path:
    """The public directory: SHIPYARD_PUBLIC_DIR, else `shipyard_public` beside the data
    directory (as PocketBase's pb_public beside pb_data)."""
    return Path(s.public_dir) if s.public_dir else s.data_dir.parent / "shipyard_public"


def validate(s: Settings) -> None:
    for name in ("cdn_url", "cdn_cloudflare_api"):
        value = getattr(s, name)
        if value and not _URL.fullmatch(value):
            raise SettingsError(f"SHIPYARD_{name.upper()}: must be an http(s) URL without query")
    for name in ("cdn_purge_timeout", "cdn_purge_backoff_base"):
        if not getattr(s, name) > 0:  # also refuses nan
            raise SettingsError(f"SHIPYARD_{name.upper()}: must be greater than 0")
    if s.cdn_purge_max_attempts <= 0:
        raise SettingsError("SHIPYARD_CDN_PURGE_MAX_ATTEMPTS: must be greater than 0")
    if bool(s.cdn_cloudflare_zone) != bool(s.cdn_cloudflare_token):
        raise SettingsError(
            "SHIPYARD_CDN_CLOUDFLARE_ZONE and SHIPYARD_CDN_CLOUDFLARE_TOKEN: set both or neither"
        )
    if s.cdn_cloudflare_zone and not s.cdn_url:
        raise SettingsError("SHIPYARD_CDN_CLOUDFLARE_ZONE: purging needs SHIPYARD_CDN_URL too")
    if "\n" in s.public_csp or "\r" in s.public_csp:
        raise SettingsError("SHIPYARD_PUBLIC_CSP: must be one line")


__all__ = ["public_path", "validate"]
