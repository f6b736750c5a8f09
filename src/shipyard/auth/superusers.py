"""Superuser accounts managed from the command line (no HTTP involved)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shipyard.kernel.errors import ApiError, not_found
from shipyard.records.collections import SUPERUSERS
from shipyard.records.context import RequestContext

if TYPE_CHECKING:
    from shipyard.services import Services


def system_context(svc: Services) -> RequestContext:
    """What the CLI and the account flows act as: a superuser with no request behind it."""
    return RequestContext.system(svc.store.require(SUPERUSERS))


async def _find(svc: Services, email: str) -> str | None:
    """Matched as logins match it (regardless of case, like the unique index)."""
    rec = await svc.auth.auth_record_by(svc.store.require(SUPERUSERS), "email", email)
    return str(rec["id"]) if rec else None


async def create(svc: Services, email: str, password: str) -> dict[str, Any]:
    c = svc.store.require(SUPERUSERS)
    body = {"email": email, "password": password, "passwordConfirm": password, "verified": True}
    return await svc.records.create(c, body, system_context(svc))


async def update(svc: Services, email: str, password: str) -> dict[str, Any]:
    c = svc.store.require(SUPERUSERS)
    rid = await _find(svc, email)
    if rid is None:
        raise not_found(f"No superuser with e-mail {email}.")
    body = {"password": password, "passwordConfirm": password}
    return await svc.records.update(c, rid, body, system_context(svc))


async def upsert(svc: Services, email: str, password: str) -> dict[str, Any]:
    if await _find(svc, email) is None:
        return await create(svc, email, password)
    return await update(svc, email, password)


async def delete(svc: Services, email: str) -> None:
    c = svc.store.require(SUPERUSERS)
    rid = await _find(svc, email)
    if rid is None:
        raise not_found(f"No superuser with e-mail {email}.")
    row = await svc.db.fetchone(f'SELECT COUNT(*) FROM "{c.table}"')
    if row and int(row[0]) <= 1:
        raise ApiError(400, "The last superuser cannot be deleted.")
    await svc.records.delete(c, rid, system_context(svc))
