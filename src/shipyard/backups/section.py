"""The `backups` section of the runtime settings (`/api/settings`), in PocketBase's shape:
`cron` (empty: no scheduled backups), `cronMaxKeep`, and `s3`, an object with the fields of
the files' `s3` section (its `secret` written, never returned; a PATCH merges into it key
by key, as PocketBase does). Each stands for start-up settings (`SHIPYARD_BACKUPS_CRON`,
`SHIPYARD_BACKUPS_S3_*`, …) that give its default and, set explicitly, make it read-only.
The schedule loop and the archive target read them at every use, so a change applies on
every process."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shipyard.kernel.errors import FieldError
from shipyard.kernel.runtime import Field, Section, between
from shipyard.tools.cronexpr import CronError, check_schedule

# JSON name → (start-up setting, type)
S3_FIELDS: dict[str, tuple[str, type]] = {
    "enabled": ("backups_s3_enabled", bool),
    "bucket": ("backups_s3_bucket", str),
    "region": ("backups_s3_region", str),
    "endpoint": ("backups_s3_endpoint", str),
    "accessKey": ("backups_s3_access_key", str),
    "secret": ("backups_s3_secret", str),
    "forcePathStyle": ("backups_s3_force_path_style", bool),
}
CRON_MESSAGE = (
    "Invalid cron expression - must be a valid macro or to have exactly 5 space separated "
    "segments."
)  # PocketBase's


class Nested(FieldError):
    """Errors of an object's keys, nested as PocketBase nests them."""

    def __init__(self, errors: dict[str, FieldError]) -> None:
        super().__init__("validation_invalid_value", "Invalid object.")
        self.errors = errors

    def to_dict(self) -> dict[str, Any]:
        return {k: v.to_dict() for k, v in self.errors.items()}


def _cron(value: Any) -> FieldError | None:
    if not value:
        return None
    try:
        check_schedule(value)
    except CronError:
        return FieldError("validation_invalid_cron", CRON_MESSAGE)
    return None


def _s3(raw: Any) -> dict[str, Any]:
    """A stored or submitted `s3` object, checked, with the keys it lacks at their
    defaults."""
    if not isinstance(raw, dict):
        raise FieldError("validation_invalid_value", "Must be an object.")
    out: dict[str, Any] = {k: t() for k, (_, t) in S3_FIELDS.items()}
    problems: dict[str, FieldError] = {}
    for key, value in raw.items():
        if key not in S3_FIELDS:
            problems[key] = FieldError("validation_unknown_field", "Shipyard has no such setting.")
        elif not isinstance(value, S3_FIELDS[key][1]):
            kind = "true or false" if S3_FIELDS[key][1] is bool else "a string"
            problems[key] = FieldError("validation_invalid_value", f"Must be {kind}.")
        elif isinstance(value, str) and any(ord(ch) < 32 for ch in value):
            problems[key] = FieldError(
                "validation_invalid_value", "Must not contain control characters."
            )
        else:
            out[key] = value
    if problems:
        raise Nested(problems)
    return out


def _s3_base(settings: Any) -> dict[str, Any]:
    return {k: getattr(settings, name) for k, (name, _) in S3_FIELDS.items()}


def _rules(values: Mapping[str, Any]) -> dict[str, FieldError]:
    s3 = values["s3"]
    if not s3["enabled"]:
        return {}
    blank = FieldError("validation_required", "Cannot be blank.")
    missing = {k: blank for k in ("bucket", "accessKey", "secret") if not s3[k]}
    return {"s3": Nested(missing)} if missing else {}


def _overlay(values: Mapping[str, Any]) -> dict[str, Any]:
    out = {"backups_cron": values["cron"], "backups_cron_max_keep": values["cronMaxKeep"]}
    out.update({name: values["s3"][k] for k, (name, _) in S3_FIELDS.items()})
    return out


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
        Field(
            "s3",
            "object",
            description="Where archives are kept: an S3 bucket when `enabled` (the fields of "
            "the `s3` section; `secret` is write-only), else the local backups directory.",
            base=_s3_base,
            locked_by=tuple(name for name, _ in S3_FIELDS.values()),
            parse=_s3,
            hidden=("secret",),
        ),
    ),
    "Scheduled backups and where archives are kept (docs/backups.md).",
    validate=_rules,
    overlay=_overlay,
)
