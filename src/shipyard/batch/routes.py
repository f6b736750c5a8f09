"""`POST /api/batch`: PocketBase's answers in PocketBase's order — 403 while batches are
off, 413 past the body limit, 400 for a body that cannot be read or checked, then the
batch itself (batch/run.py)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shipyard.kernel.errors import forbidden
from shipyard.kernel.web import JSON, services
from shipyard.records.context import resolve_auth
from shipyard.settings_batch import BATCH_BODY_DEFAULT

from .form import close_all, read_batch
from .run import Batch, BatchFailed, Caller

DISABLED = "Batch requests are not allowed."


async def batch(request: Request) -> Response:
    svc = services(request)
    s = await svc.runtime.current()  # another process's /api/settings change applies here
    if not s.batch_enabled or s.batch_max_requests <= 0:
        raise forbidden(DISABLED)
    limit = s.batch_max_body_size or BATCH_BODY_DEFAULT
    timeout = float(s.batch_timeout or 3)
    subs = await read_batch(request, limit, s.batch_max_requests)
    try:
        caller = Caller(await resolve_auth(request), request.scope)
        try:
            results = await Batch(svc).run(subs, caller, timeout)
        except BatchFailed as failed:
            raise failed.answer() from None
        return JSON(results)
    finally:
        close_all(subs)


routes = [Route("/api/batch", batch, methods=["POST"])]
