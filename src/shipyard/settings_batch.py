"""The batch part of the settings (POST /api/batch, docs/batch.md): a base of `Settings`.
Each is the default of a field of the runtime `batch` section (`/api/settings`), as
PocketBase names them; set explicitly here, that field becomes read-only."""

from __future__ import annotations

from dataclasses import dataclass

from shipyard.tools.settings_parse import SettingsError

BATCH_BODY_DEFAULT = 128 * 1024 * 1024  # PocketBase's limit when maxBodySize is 0


@dataclass(frozen=True)
class BatchSettings:
    batch_enabled: bool = False  # PocketBase's default: off until a superuser turns it on
    batch_max_requests: int = 50  # sub-requests per batch (more: 400)
    batch_timeout: int = 3  # seconds the whole batch transaction may take (then rolled back)
    batch_max_body_size: int = 0  # bytes of one batch body, files included; 0: 128 MiB


def validate_batch(s: BatchSettings) -> None:
    for name in ("batch_max_requests", "batch_timeout", "batch_max_body_size"):
        if getattr(s, name) < 0:
            raise SettingsError(f"SHIPYARD_{name.upper()}: must be 0 or more")
    if s.batch_timeout > 3600:
        raise SettingsError("SHIPYARD_BATCH_TIMEOUT: must be at most 3600 seconds")
