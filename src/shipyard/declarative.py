"""The declarative file: PocketBase's export format (a JSON list of collections, or
`{"collections": [...], "webhooks": [...]}`), applied by `shipyard migrate` and at start-up.
Webhooks are matched by name and created or updated (docs/webhooks.md)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from shipyard.kernel.errors import ApiError
from shipyard.webhooks.webhooks import resolve_items

if TYPE_CHECKING:
    from shipyard.services import Services


class SchemaFileError(ValueError):
    pass


def read_file(path: str | Path) -> list[dict[str, Any]]:
    return read_document(path)[0]


def read_document(path: str | Path) -> tuple[list[dict[str, Any]], list[Any] | None]:
    """(collections, webhooks or None)."""
    p = Path(path)
    if not p.exists():
        raise SchemaFileError(f"{p}: the schema file does not exist")
    try:
        data = orjson.loads(p.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise SchemaFileError(f"{p}: not valid JSON ({exc})") from None
    hooks = None
    if isinstance(data, dict):
        hooks = data.get("webhooks")
        if hooks is not None and not isinstance(hooks, list):
            raise SchemaFileError(f'{p}: "webhooks" must be a list')
        data = data.get("collections", [] if hooks is not None else None)
    if not isinstance(data, list):
        raise SchemaFileError(f'{p}: expected a list of collections or {{"collections": [...]}}')
    return data, hooks


async def apply_file(
    svc: Services,
    path: str | Path,
    *,
    confirm_data_loss: bool = False,
    delete_missing: bool = False,
) -> int:
    """Apply the file; a change that would lose data refuses unless confirmed."""
    items, hooks = read_document(path)
    try:
        if hooks is not None:
            resolve_items(hooks)  # a missing secretEnv variable stops before any change
        applied = await svc.store.import_collections(
            items,
            delete_missing=delete_missing,
            confirm_data_loss=confirm_data_loss,
            dropped=svc.events.dropped,
        )
        if hooks is not None:
            await svc.webhooks.sync(hooks)
    except ApiError as exc:
        detail = orjson.dumps(exc.data).decode() if exc.data else ""
        raise SchemaFileError(f"{path}: {exc.message} {detail}".strip()) from None
    return len(applied)
