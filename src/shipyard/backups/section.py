"""The `backups` section of the runtime settings (`/api/settings`), under PocketBase's
names: `cron` (empty: no scheduled backups) and `cronMaxKeep`. Each stands for a start-up
setting (`SHIPYARD_BACKUPS_CRON`, …) that gives its default and, set explicitly, makes it
read-only; the schedule loop reads them at every round, so a change applies on every
process. The S3 target is set at start-up (`SHIPYARD_BACKUPS_S3_*`, docs/backups.md)."""

from __future__ import annotations

from typing import Any

from shipyard.kernel.errors import FieldError
from shipyard.kernel.runtime import Field, Section, between
from shipyard.tools.cronexpr import CronError, check_schedule


def _cron(value: Any) -> FieldError | None:
    if not value:
        return None
    try:
        check_schedule(value)
    except CronError:
        return FieldError("validation_invalid_cron", "Invalid cron expression.")
    return None


BACKUPS = Section(
    "backups",
    (
        Field(
            "cron",
            "string",
            "backups_cron",
            "When scheduled backups run (5-field cron, UTC); empty: never.",
            checks=(_cron,),
        ),
        Field(
            "cronMaxKeep",
            "integer",
            "backups_cron_max_keep",
            "Scheduled backups kept; older ones are removed.",
            checks=(between(1, 10000),),
        ),
    ),
    "Scheduled backups (docs/backups.md).",
)
