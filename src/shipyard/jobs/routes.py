"""`/api/jobs…` and `/api/exports/…`: job status and control, for superusers.

- `GET /api/jobs?state=&kind=&queue=&page=&perPage=` — newest first;
- `GET /api/jobs/stats` — counts per kind and state, queue lag, recent timings;
- `GET /api/jobs/{id}` — one job with its errors and result;
- `POST /api/jobs` — enqueue a registered job type;
- `POST /api/jobs/{id}/retry`, `POST /api/jobs/{id}/cancel`;
- `GET /api/exports/{file}` — download what `export_collection` wrote.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from shipyard.jobs.builtin import export_path
from shipyard.jobs.jobs import job_json
from shipyard.kernel import spec
from shipyard.kernel.errors import bad_request, not_found
from shipyard.kernel.web import JSON, int_param, parse_body, services
from shipyard.records.context import require_superuser
from shipyard.tools.queue import STATES

_ENQUEUE_FIELDS = {
    "kind", "args", "queue", "priority", "runAt", "delay", "uniqueKey", "maxAttempts", "timeout",
}  # fmt: skip


def _job_id(request: Request) -> int:
    raw = request.path_params["id"]
    try:
        value = int(raw)
    except ValueError:
        raise not_found() from None
    if not 0 < value < 2**63:  # no such job (and no 64-bit overflow in the query)
        raise not_found()
    return value


async def list_jobs(request: Request) -> Response:
    await require_superuser(request)
    q = request.query_params
    state = q.get("state") or None
    if state is not None and state not in STATES:
        raise bad_request(f"Invalid state parameter: expected one of {', '.join(STATES)}.")
    page = int_param(request, "page", 1, 1, 1_000_000)
    per_page = int_param(request, "perPage", 30, 1, 500)
    jobs, total = await services(request).jobs.queue.list(
        state=state,
        kind=q.get("kind") or None,
        queue=q.get("queue") or None,
        offset=(page - 1) * per_page,
        limit=per_page,
    )
    return JSON(
        {
            "page": page,
            "perPage": per_page,
            "totalItems": total,
            "totalPages": (total + per_page - 1) // per_page,
            "items": [job_json(j) for j in jobs],
        }
    )


async def get_job(request: Request) -> Response:
    await require_superuser(request)
    job = await services(request).jobs.queue.get(_job_id(request))
    if job is None:
        raise not_found()
    return JSON(job_json(job))


def _opt_number(body: dict[str, Any], name: str, integer: bool = False) -> Any:
    v = body.get(name)
    if v is None:
        return None
    ok = isinstance(v, int) if integer else isinstance(v, (int, float))
    if not ok or isinstance(v, bool) or (v != v):  # nan
        kind = "an integer" if integer else "a number"
        raise bad_request(f"Invalid {name}: expected {kind}.")
    return v


async def enqueue_job(request: Request) -> Response:
    await require_superuser(request)
    svc = services(request)
    body = await parse_body(request)
    unknown = sorted(set(body) - _ENQUEUE_FIELDS)
    if unknown:
        raise bad_request(f"Unknown field {unknown[0]!r}.")
    kind = body.get("kind")
    if not isinstance(kind, str) or not kind:
        raise bad_request(
            "Invalid job.", {"kind": {"code": "validation_required", "message": "Cannot be blank."}}
        )
    queue = body.get("queue")
    if queue is not None and (not isinstance(queue, str) or not queue):
        raise bad_request("Invalid queue: expected a non-empty string.")
    unique = body.get("uniqueKey")
    if unique is not None and not isinstance(unique, str):
        raise bad_request("Invalid uniqueKey: expected a string.")
    priority = _opt_number(body, "priority", integer=True)
    if priority is not None and not -1000 <= priority <= 1000:
        raise bad_request("Invalid priority: expected -1000..1000 (lower runs first).")
    max_attempts = _opt_number(body, "maxAttempts", integer=True)
    if max_attempts is not None and not 1 <= max_attempts <= 100:
        raise bad_request("Invalid maxAttempts: expected 1..100.")
    timeout = _opt_number(body, "timeout")
    if timeout is not None and not 0 < timeout <= 86400:
        raise bad_request("Invalid timeout: expected 0 < seconds <= 86400.")
    delay = _opt_number(body, "delay")
    run_at = _opt_number(body, "runAt")
    if delay is not None and not 0 <= delay <= 366 * 86400:
        raise bad_request("Invalid delay: expected 0..31622400 seconds.")
    if run_at is not None and not 0 <= run_at <= time.time() + 366 * 86400:
        raise bad_request("Invalid runAt: expected a Unix time within a year.")
    done = await svc.jobs.enqueue(
        kind,
        body.get("args"),
        queue=queue,
        priority=priority,
        max_attempts=max_attempts,
        timeout=timeout,
        run_at=run_at,
        delay=delay,
        unique_key=unique,
    )
    job = await svc.jobs.queue.get(done.id)
    assert job is not None  # noqa: S101  (narrows a type for mypy; established above)
    return JSON({**job_json(job), "duplicate": not done.created})


async def _act(request: Request, action: str) -> Response:
    """Retry or cancel; answers with the job as it is afterwards."""
    await require_superuser(request)
    jobs = services(request).jobs
    job_id = _job_id(request)
    state = await (jobs.retry(job_id) if action == "retry" else jobs.cancel(job_id))
    job = None if state is None else await jobs.queue.get(job_id)
    if job is None:
        raise not_found()
    return JSON(job_json(job))


async def retry_job(request: Request) -> Response:
    return await _act(request, "retry")


async def cancel_job(request: Request) -> Response:
    return await _act(request, "cancel")


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None}
    if len(values) == 1:
        return {"p50": round(values[0], 3), "p99": round(values[0], 3)}
    qs = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": round(qs[49], 3), "p99": round(qs[98], 3)}


async def job_stats(request: Request) -> Response:
    await require_superuser(request)
    svc = services(request)
    q = svc.jobs.queue
    counts = await q.counts()
    lag = await q.oldest_due()
    rows = await q.db.fetchall(
        f'SELECT "attempted_at" - "scheduled_at", "finished_at" - "attempted_at" FROM "{q.table}" '
        'WHERE "state" = \'completed\' AND "finished_at" IS NOT NULL '
        'ORDER BY "finished_at" DESC LIMIT 1000'
    )
    waits = [float(r[0]) * 1000 for r in rows if r[0] is not None]
    runs = [float(r[1]) * 1000 for r in rows if r[1] is not None]
    totals: dict[str, int] = {}
    for per_state in counts.values():
        for state, n in per_state.items():
            totals[state] = totals.get(state, 0) + n
    return JSON(
        {
            "kinds": counts,
            "states": totals,
            "lagSeconds": None if lag is None else round(lag, 3),
            "recentCompleted": len(rows),
            "waitMs": _percentiles(waits),
            "runMs": _percentiles(runs),
        }
    )


async def download_export(request: Request) -> Response:
    await require_superuser(request)
    path = export_path(services(request).settings, request.path_params["name"])
    if path is None or not path.is_file():
        raise not_found()
    media = "text/csv" if path.suffix == ".csv" else "application/x-ndjson"
    return FileResponse(path, media_type=media, filename=path.name)


routes = [
    Route("/api/jobs", list_jobs, methods=["GET"]),
    Route("/api/jobs", enqueue_job, methods=["POST"]),
    Route("/api/jobs/stats", job_stats, methods=["GET"]),
    Route("/api/jobs/{id}", get_job, methods=["GET"]),
    Route("/api/jobs/{id}/retry", retry_job, methods=["POST"]),
    Route("/api/jobs/{id}/cancel", cancel_job, methods=["POST"]),
    Route("/api/exports/{name}", download_export, methods=["GET"]),
]


# ---------------------------------------------------------------------- OpenAPI

_DOC = "docs/jobs.md"
_JOB = {
    "type": "object",
    "properties": {
        "id": spec.INT,
        "kind": spec.STR,
        "queue": spec.STR,
        "state": {"type": "string", "enum": list(STATES)},
        "args": spec.ANY,
        "priority": spec.INT,
        "attempt": spec.INT,
        "maxAttempts": spec.INT,
        "timeout": spec.NUM,
        "created": spec.STR,
        "scheduledAt": spec.STR,
        "attemptedAt": spec.STR,
        "finishedAt": spec.STR,
        "leaseUntil": spec.STR,
        "worker": spec.STR,
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"attempt": spec.INT, "at": spec.STR, "error": spec.STR},
            },
        },
        "result": spec.ANY,
        "uniqueKey": spec.STR,
        "cancelRequested": spec.BOOL,
        "waitMs": {"type": ["number", "null"]},
        "runMs": {"type": ["number", "null"]},
    },
    "required": ["id", "kind", "queue", "state", "attempt", "maxAttempts", "errors"],
}
_ENQUEUE = {
    "type": "object",
    "properties": {
        "kind": {**spec.STR, "description": "A registered job type (built-in or your hooks)."},
        "args": {"description": "Any JSON; the handler's `args`."},
        "queue": spec.STR,
        "priority": {"type": "integer", "minimum": -1000, "maximum": 1000},
        "runAt": {"type": "number", "description": "Unix time (seconds) to run at."},
        "delay": {"type": "number", "minimum": 0, "description": "Seconds from now."},
        "uniqueKey": {**spec.STR, "description": "Deduplicates while such a job is pending."},
        "maxAttempts": {"type": "integer", "minimum": 1, "maximum": 100},
        "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 86400},
    },
    "required": ["kind"],
}
_PCT = {
    "type": "object",
    "properties": {"p50": {"type": ["number", "null"]}, "p99": {"type": ["number", "null"]}},
}
_STATS = {
    "type": "object",
    "properties": {
        "kinds": {"type": "object", "additionalProperties": {"type": "object"}},
        "states": {"type": "object", "additionalProperties": spec.INT},
        "lagSeconds": {"type": ["number", "null"]},
        "recentCompleted": spec.INT,
        "waitMs": _PCT,
        "runMs": _PCT,
    },
    "required": ["kinds", "states", "lagSeconds", "recentCompleted", "waitMs", "runMs"],
}


def _op(op_id: str, summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return spec.superuser_op("jobs", op_id, summary, _DOC, responses, **extra)


def openapi_paths() -> dict[str, Any]:
    job_ok = spec.ok(_JOB, "The job")
    id_param = [spec.path_param("id", spec.INT)]
    return {
        "/api/jobs": {
            "get": _op(
                "listJobs",
                "List jobs, newest first",
                {"200": spec.ok(spec.page_of(_JOB, "A page of jobs"), "Jobs"), "400": spec.error("BadRequest")},
                parameters=[
                    spec.query_param("state", {"type": "string", "enum": list(STATES)}, "Only this state."),
                    spec.query_param("kind", spec.STR, "Only this job type."),
                    spec.query_param("queue", spec.STR, "Only this queue."),
                    spec.query_param("page", {"type": "integer", "minimum": 1, "maximum": 1000000}, "Page (from 1)."),
                    spec.query_param("perPage", {"type": "integer", "minimum": 1, "maximum": 500}, "Items per page."),
                ],
            ),
            "post": _op(
                "enqueueJob",
                "Enqueue a job of a registered type",
                {"200": job_ok, "400": spec.error("BadRequest"), "413": spec.error("TooLarge")},
                requestBody=spec.body(_ENQUEUE),
            ),
        },
        "/api/jobs/stats": {
            "get": _op("jobStats", "Counts per kind and state, queue lag, recent timings",
                       {"200": spec.ok(_STATS, "Job statistics")}),
        },
        "/api/jobs/{id}": {
            "parameters": id_param,
            "get": _op("getJob", "One job with its errors and result",
                       {"200": job_ok, "404": spec.error("NotFound")}),
        },
        "/api/jobs/{id}/retry": {
            "parameters": id_param,
            "post": _op("retryJob", "Run a finished or waiting job again now",
                        {"200": job_ok, "404": spec.error("NotFound")}),
        },
        "/api/jobs/{id}/cancel": {
            "parameters": id_param,
            "post": _op("cancelJob", "Cancel a pending job, or ask a running one to stop",
                        {"200": job_ok, "404": spec.error("NotFound")}),
        },
        "/api/exports/{name}": {
            "parameters": [spec.path_param("name")],
            "get": _op(
                "downloadExport",
                "Download a file written by export_collection",
                {
                    "200": {
                        "description": "The file",
                        "content": {"text/csv": {}, "application/x-ndjson": {}},
                    },
                    "404": spec.error("NotFound"),
                },
            ),
        },
    }  # fmt: skip


__all__ = ["openapi_paths", "routes"]
