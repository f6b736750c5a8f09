"""The `s3` section of the runtime settings (`/api/settings`), under PocketBase's names.
Each field stands for a start-up setting (`SHIPYARD_S3_BUCKET`, …) that gives its default
and, set explicitly, makes it read-only. Files code reads them through
`RuntimeSettings.current()`, so switching storage applies on every process."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shipyard.kernel.errors import FieldError
from shipyard.kernel.runtime import Field, Section, one_line

_BLANK = FieldError("validation_required", "Cannot be blank.")


def _rules(values: Mapping[str, Any]) -> dict[str, FieldError]:
    if not values["enabled"]:
        return {}
    return {name: _BLANK for name in ("bucket", "accessKey", "secret") if not values[name]}


S3 = Section(
    "s3",
    (
        Field("enabled", "boolean", "s3_enabled", "Store files in S3 instead of local disk."),
        Field("bucket", "string", "s3_bucket", "The bucket.", checks=(one_line,)),
        Field("region", "string", "s3_region", "The bucket's region.", checks=(one_line,)),
        Field(
            "endpoint",
            "string",
            "s3_endpoint",
            "Empty for AWS; the URL of any S3-compatible store.",
            checks=(one_line,),
        ),
        Field("accessKey", "string", "s3_access_key", checks=(one_line,)),
        Field("secret", "string", "s3_secret", "Write-only: never returned.", secret=True),
        Field(
            "forcePathStyle",
            "boolean",
            "s3_force_path_style",
            "Address the bucket in the path (MinIO, moto), not as a subdomain.",
        ),
    ),
    "File storage (local disk in the data directory unless enabled).",
    validate=_rules,
)
