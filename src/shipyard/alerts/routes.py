"""`/api/alerts…` (superusers): the rules in effect with their state, and silences."""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shipyard.alerts.config import channels
from shipyard.alerts.engine import silenced
from shipyard.alerts.rules import parse_rules
from shipyard.alerts.silences import iso
from shipyard.kernel import spec
from shipyard.kernel.web import JSON, parse_body, services
from shipyard.records.context import require_superuser


def _alerts(request: Request) -> Any:
    return services(request).extension("alerts")


def _when(epoch: float | None) -> str:
    return iso(epoch) if epoch else ""


async def list_alerts(request: Request) -> Response:
    await require_superuser(request)
    ext = _alerts(request)
    s = await services(request).runtime.current()
    now = time.time()
    states = await ext.store.states()
    active = await ext.silences.active(now)
    items = []
    for rule in parse_rules(s.alerts_rules):
        st = states.get(rule.name)
        items.append(
            {
                **rule.to_json(),
                "state": st.state if st and rule.enabled else "inactive",
                "value": st.value if st else None,
                "activeSince": _when(st.since if st else None),
                "firedAt": _when(st.fired_at if st else None),
                "resolvedAt": _when(st.resolved_at if st else None),
                "lastNotified": _when(st.notified_at if st else None),
                "details": list(st.alert.get("details", [])) if st else [],
                "silenced": silenced(rule.all_labels(), active, now),
            }
        )
    _at, evaluated, owner = await ext.store.last_tick()
    return JSON(
        {
            "items": items,
            "totalItems": len(items),
            "enabled": s.alerts_enabled,
            "interval": s.alerts_interval,
            "channels": sorted({c["channel"] for c in channels(s)}),
            "lastEvaluation": {"at": _when(evaluated or None), "owner": owner},
            "evaluations": [{**e, "at": _when(e["at"])} for e in await ext.store.evaluations(20)],
        }
    )


async def list_silences(request: Request) -> Response:
    await require_superuser(request)
    now = time.time()
    items = [s.to_json(now) for s in await _alerts(request).silences.all()]
    return JSON({"items": items, "totalItems": len(items)})


async def create_silence(request: Request) -> Response:
    auth = await require_superuser(request)
    s = await _alerts(request).silences.create(await parse_body(request), auth.id)
    return JSON(s.to_json())


async def get_silence(request: Request) -> Response:
    await require_superuser(request)
    return JSON((await _alerts(request).silences.get(request.path_params["id"])).to_json())


async def update_silence(request: Request) -> Response:
    await require_superuser(request)
    body = await parse_body(request)
    s = await _alerts(request).silences.update(request.path_params["id"], body)
    return JSON(s.to_json())


async def delete_silence(request: Request) -> Response:
    await require_superuser(request)
    await _alerts(request).silences.delete(request.path_params["id"])
    return Response(status_code=204)


routes = [
    Route("/api/alerts", list_alerts, methods=["GET"]),
    Route("/api/alerts/silences", list_silences, methods=["GET"]),
    Route("/api/alerts/silences", create_silence, methods=["POST"]),
    Route("/api/alerts/silences/{id}", get_silence, methods=["GET"]),
    Route("/api/alerts/silences/{id}", update_silence, methods=["PATCH"]),
    Route("/api/alerts/silences/{id}", delete_silence, methods=["DELETE"]),
]


# ---------------------------------------------------------------------- OpenAPI

_WHEN = {**spec.STR, "description": "A date (2024-01-02 03:04:05.000Z), or empty."}
_RULE = {
    "type": "object",
    "properties": {
        "name": spec.STR,
        "type": spec.STR,
        "enabled": spec.BOOL,
        "params": {"type": "object"},
        "threshold": spec.NUM,
        "op": {"type": "string", "enum": [">", "<"]},
        "for": spec.NUM,
        "severity": {"type": "string", "enum": ["critical", "warning", "info"]},
        "group": spec.STR,
        "labels": {"type": "object", "additionalProperties": spec.STR},
        "summary": spec.STR,
        "runbook": spec.STR,
        "promql": {"type": ["string", "null"]},
        "state": {"type": "string", "enum": ["inactive", "pending", "firing", "resolved"]},
        "value": {"type": ["number", "null"]},
        "activeSince": _WHEN,
        "firedAt": _WHEN,
        "resolvedAt": _WHEN,
        "lastNotified": _WHEN,
        "details": spec.STRS,
        "silenced": spec.BOOL,
    },
    "required": ["name", "type", "enabled", "threshold", "state", "silenced"],
}
_LISTING = {
    "type": "object",
    "properties": {
        "items": {"type": "array", "items": _RULE},
        "totalItems": spec.INT,
        "enabled": spec.BOOL,
        "interval": spec.NUM,
        "channels": spec.STRS,
        "lastEvaluation": {
            "type": "object",
            "properties": {"at": _WHEN, "owner": spec.STR},
        },
        "evaluations": {
            "type": "array",
            "description": "The latest evaluations, newest first (`at`: the tick's start).",
            "items": {
                "type": "object",
                "properties": {
                    "at": _WHEN,
                    "owner": {**spec.STR, "description": "host:pid of the evaluating process"},
                    "durationMs": spec.NUM,
                    "firing": spec.INT,
                    "notifications": spec.INT,
                    "error": spec.STR,
                },
            },
        },
    },
    "required": ["items", "totalItems"],
}
_MATCHER = {
    "type": "object",
    "properties": {
        "name": {**spec.STR, "description": "A label: alertname, severity, group or a rule's."},
        "value": spec.STR,
        "isRegex": spec.BOOL,
        "isEqual": spec.BOOL,
    },
    "required": ["name", "value"],
}
_TIME = {
    "type": ["string", "number"],
    "description": "An ISO 8601 date, or epoch seconds.",
}
_SILENCE = {
    "type": "object",
    "properties": {
        "id": spec.STR,
        "matchers": {"type": "array", "items": _MATCHER},
        "startsAt": spec.STR,
        "endsAt": spec.STR,
        "comment": spec.STR,
        "createdBy": spec.STR,
        "state": {"type": "string", "enum": ["pending", "active", "expired"]},
        "created": spec.STR,
        "updated": spec.STR,
    },
    "required": ["id", "matchers", "startsAt", "endsAt", "comment", "state"],
}
_INPUT = {
    "type": "object",
    "properties": {
        "matchers": {"type": "array", "items": _MATCHER},
        "startsAt": {**_TIME, "description": "Default: now."},
        "endsAt": _TIME,
        "comment": spec.STR,
    },
}


def _op(op_id: str, summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return spec.superuser_op("alerts", op_id, summary, "docs/alerts.md", responses, **extra)


def openapi_paths() -> dict[str, Any]:
    one = spec.ok(_SILENCE, "The silence")
    silences = {
        "type": "object",
        "properties": {"items": {"type": "array", "items": _SILENCE}, "totalItems": spec.INT},
        "required": ["items", "totalItems"],
    }
    bad = {"400": spec.error("BadRequest"), "413": spec.error("TooLarge")}
    return {
        "/api/alerts": {
            "get": _op("listAlerts", "The alert rules in effect, with their state",
                       {"200": spec.ok(_LISTING, "Rules")}),
        },
        "/api/alerts/silences": {
            "get": _op("listSilences", "Every silence (active, pending, expired)",
                       {"200": spec.ok(silences, "All")}),
            "post": _op("createSilence", "Silence the alerts that match",
                        {"200": one, **bad},
                        requestBody=spec.body({**_INPUT, "required": ["matchers", "endsAt"]})),
        },
        "/api/alerts/silences/{id}": {
            "parameters": [spec.path_param("id")],
            "get": _op("getSilence", "One silence", {"200": one, "404": spec.error("NotFound")}),
            "patch": _op("updateSilence", "Change a silence (endsAt now expires it)",
                         {"200": one, **bad, "404": spec.error("NotFound")},
                         requestBody=spec.body(_INPUT)),
            "delete": _op("deleteSilence", "Delete a silence",
                          {"204": {"description": "Deleted"}, "404": spec.error("NotFound")}),
        },
    }  # fmt: skip


__all__ = ["openapi_paths", "routes"]
