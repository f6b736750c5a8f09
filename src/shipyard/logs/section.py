"""The `logs` section of the runtime settings (`/api/settings`), under PocketBase's names:
`maxDays` (days entries are kept; 0 turns the request log off), `minLevel` (entries below
it are not recorded), `logIP` and `logAuthId` (what request entries carry).

Each stands for a start-up setting (`SHIPYARD_LOGS_MAX_DAYS`, …) that gives its default
and, set explicitly, makes it read-only. The writer reads them when it writes a batch,
after a refresh, so a change applies on every process within a flush interval.
"""

from __future__ import annotations

from typing import Any

from shipyard.kernel.errors import FieldError
from shipyard.kernel.runtime import Field, Section


def _not_negative(value: Any) -> FieldError | None:
    if value < 0:
        return FieldError("validation_min_greater_equal_than_required", "Must be no less than 0.")
    return None


LOGS = Section(
    "logs",
    (
        Field(
            "maxDays",
            "integer",
            "logs_max_days",
            "Days request log entries are kept; 0 turns the request log off.",
            checks=(_not_negative,),
        ),
        Field(
            "minLevel",
            "integer",
            "logs_min_level",
            "Entries below this level are not recorded (-4 debug, 0 info, 4 warning, 8 error).",
        ),
        Field("logIP", "boolean", "logs_log_ip", "Record the client's IP address."),
        Field("logAuthId", "boolean", "logs_log_auth_id", "Record the auth record's id."),
    ),
    "The request log (`/api/logs`).",
)
