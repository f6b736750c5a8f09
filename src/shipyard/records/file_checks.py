"""The file field's checks with PocketBase's codes: size and MIME type of each upload
(the type detected from content), and plain names that must already be the record's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from shipyard.kernel.errors import FieldError
from shipyard.kernel.uploads import Upload
from shipyard.tools.mime import mime_matches


def check_uploads(options: Mapping[str, Any], max_size: int, items: Sequence[Any]) -> None:
    allowed = [str(m) for m in options.get("mimeTypes") or []]
    for u in items:
        if not isinstance(u, Upload):
            continue
        if u.size > max_size:
            raise FieldError(
                "validation_file_size_limit",
                f"Failed to upload {u.original[:300]} - the maximum allowed file size "
                f"is {max_size} bytes.",
            )
        if allowed and not any(mime_matches(u.mime, m) for m in allowed):
            raise FieldError(
                "validation_invalid_mime_type",
                f"{u.name!r} mime type must be one of: {', '.join(allowed)}.",
            )


def check_names(value: Sequence[Any], old: Sequence[Any]) -> None:
    had = set(old)
    new = [v for v in value if isinstance(v, str) and v not in had]
    if new:
        shown = ", ".join(v[:250] for v in new)
        raise FieldError("validation_invalid_file", f"Invalid new files: [{shown}].")
