"""The `batch` section of the runtime settings (`/api/settings`), as PocketBase keeps it:
`enabled`, `maxRequests`, `timeout` (seconds), `maxBodySize` (bytes, 0: 128 MiB), with its
checks. Each field stands for a start-up setting (`SHIPYARD_BATCH_*`, settings_batch.py)
that gives its default and, set explicitly, makes it read-only."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shipyard.kernel.errors import FieldError
from shipyard.kernel.runtime import Field, Section, between

NAME = "batch"
_MAX = 2**53  # JSON's largest exact integer: no real limit, only a sane one

_BLANK = FieldError("validation_required", "Cannot be blank.")


def _required_when_enabled(values: Mapping[str, Any]) -> dict[str, FieldError]:
    """PocketBase: with batches on, `maxRequests` and `timeout` may not be 0."""
    if not values["enabled"]:
        return {}
    return {name: _BLANK for name in ("maxRequests", "timeout") if values[name] == 0}


BATCH = Section(
    NAME,
    (
        Field("enabled", "boolean", "batch_enabled", "Accept POST /api/batch (off: 403)."),
        Field(
            "maxRequests",
            "integer",
            "batch_max_requests",
            "Sub-requests one batch may hold (more: 400).",
            checks=(between(0, _MAX),),
        ),
        Field(
            "timeout",
            "integer",
            "batch_timeout",
            "Seconds the batch transaction may take before it is rolled back.",
            checks=(between(0, 3600),),
        ),
        Field(
            "maxBodySize",
            "integer",
            "batch_max_body_size",
            "Bytes of one batch body, files included; 0: 128 MiB.",
            checks=(between(0, _MAX),),
        ),
    ),
    "Batch requests: several record writes in one transaction (docs/batch.md).",
    validate=_required_when_enabled,
)
