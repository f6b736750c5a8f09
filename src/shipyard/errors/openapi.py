"""The error tracker's part of the OpenAPI document: the Sentry-compatible ingestion
(public: the DSN's public key authenticates) and the superusers' projects, issues and
events."""

from __future__ import annotations

from typing import Any

from shipyard.kernel import spec
from shipyard.kernel.spec import GUARD_PUBLIC, OpenAPIPart, Viewer

DOC = "docs/errors.md"
TAG = {
    "name": "errors",
    "description": "Error tracking that Sentry SDKs report to: ingestion, projects and DSN keys, "
    "issues and their events.",
}
_NULL_STR = {"type": ["string", "null"]}
_PROJECT = {
    "type": "object",
    "properties": {
        "id": spec.INT,
        "name": spec.STR,
        "publicKey": spec.STR,
        "dsn": {**spec.STR, "description": "What an SDK's `dsn` option takes."},
        "rateLimit": {
            **spec.INT,
            "description": "Events per minute; 0: SHIPYARD_ERRORS_RATE_LIMIT.",
        },
        "builtin": spec.BOOL,
        "created": spec.STR,
        "updated": spec.STR,
    },
    "required": ["id", "name", "publicKey", "dsn", "rateLimit", "builtin", "created", "updated"],
}
_PROJECT_INPUT = {
    "type": "object",
    "properties": {
        "name": {**spec.STR, "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"},
        "rateLimit": {"type": "integer", "minimum": 0, "maximum": 10000000},
    },
}
_STATUS = {"type": "string", "enum": ["unresolved", "resolved", "ignored"]}
_ISSUE = {
    "type": "object",
    "properties": {
        "id": spec.STR,
        "project": spec.INT,
        "projectName": spec.STR,
        "fingerprint": spec.STR,
        "title": spec.STR,
        "culprit": spec.STR,
        "type": spec.STR,
        "level": spec.STR,
        "status": _STATUS,
        "count": spec.INT,
        "users": {
            **spec.INT,
            "description": "Distinct users affected (id, e-mail, username or IP).",
        },
        "firstSeen": spec.STR,
        "lastSeen": spec.STR,
        "lastEvent": spec.STR,
        "regressedAt": {**_NULL_STR, "description": "When a resolved issue last happened again."},
        "resolvedAt": _NULL_STR,
    },
    "required": [
        "id",
        "project",
        "title",
        "level",
        "status",
        "count",
        "users",
        "firstSeen",
        "lastSeen",
    ],
}
_EVENT = {
    "type": "object",
    "properties": {
        "id": spec.STR,
        "issue": spec.STR,
        "project": spec.INT,
        "received": spec.STR,
        "level": spec.STR,
        "title": spec.STR,
        "data": {"type": "object", "description": "The event as the SDK sent it, scrubbed."},
    },
    "required": ["id", "issue", "project", "received", "level", "title", "data"],
}
_PAGE = [
    spec.query_param("page", {"type": "integer", "minimum": 1, "maximum": 1000000}, "Page."),
    spec.query_param("perPage", {"type": "integer", "minimum": 1, "maximum": 500}, "Per page."),
]


def _op(op_id: str, summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return spec.superuser_op("errors", op_id, summary, DOC, responses, **extra)


def _ingest(op_id: str, summary: str, body_type: str, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "tags": ["errors"],
        "operationId": op_id,
        "summary": summary,
        "description": "What Sentry SDKs post to (DSN `http(s)://{publicKey}@{host}/{projectId}`). "
        "The public key comes in `X-Sentry-Auth` (`Sentry sentry_key=…`), the `sentry_key` query "
        "parameter, or the envelope header's `dsn`. Bodies may be gzip, deflate or br encoded. "
        f"Any origin may post (CORS). See {DOC}.",
        "x-shipyard-guard": GUARD_PUBLIC,
        "parameters": [
            spec.path_param("projectId", {"type": "integer", "minimum": 1}),
            spec.query_param("sentry_key", spec.STR, "The DSN's public key."),
        ],
        "requestBody": {
            "required": True,
            "content": {body_type: {"schema": body}},
        },
        "responses": {
            "200": spec.ok({"type": "object", "properties": {"id": spec.STR}, "required": ["id"]},
                           "Accepted: the (first) event's id"),
            "400": spec.error("BadRequest"),
            "401": spec.error("Unauthorized"),
            "403": spec.error("Forbidden"),
            "404": spec.error("NotFound"),
            "413": spec.error("TooLarge"),
            "429": {**spec.error("TooManyRequests")},
        },
    }  # fmt: skip


def openapi_paths() -> dict[str, Any]:
    project = spec.ok(_PROJECT, "The project")
    listing = {
        "type": "object",
        "properties": {"items": {"type": "array", "items": _PROJECT}, "totalItems": spec.INT},
        "required": ["items", "totalItems"],
    }
    bad = {"400": spec.error("BadRequest"), "413": spec.error("TooLarge")}
    missing = {"404": spec.error("NotFound")}
    pid = [spec.path_param("id", {"type": "integer", "minimum": 1})]
    issue = [spec.path_param("issue")]
    return {
        "/api/{projectId}/envelope/": {"post": _ingest("sentryEnvelope", "Ingest a Sentry envelope (SDKs send it as application/x-sentry-envelope; the type is not checked)", "application/octet-stream", {"type": "string", "format": "binary"})},
        "/api/{projectId}/store/": {"post": _ingest("sentryStore", "Ingest one event (Sentry's legacy store endpoint)", "application/json", {"type": "object"})},
        "/api/errors/projects": {
            "get": _op("listErrorProjects", "List error-tracking projects with their DSNs", {"200": spec.ok(listing, "All")}),
            "post": _op("createErrorProject", "Create a project (and its DSN key)", {"200": project, **bad},
                        requestBody=spec.body({**_PROJECT_INPUT, "required": ["name"]})),
        },
        "/api/errors/projects/{id}": {
            "parameters": pid,
            "get": _op("getErrorProject", "One project", {"200": project, "400": spec.error("BadRequest"), **missing}),
            "patch": _op("updateErrorProject", "Rename a project or change its quota",
                         {"200": project, **bad, **missing}, requestBody=spec.body(_PROJECT_INPUT)),
            "delete": _op("deleteErrorProject", "Delete a project with its issues and events",
                          {"204": {"description": "Deleted"}, "400": spec.error("BadRequest"), **missing}),
        },
        "/api/errors/projects/{id}/rotate-key": {
            "parameters": pid,
            "post": _op("rotateErrorProjectKey", "Replace the project's DSN key (the old one stops working)",
                        {"200": project, "400": spec.error("BadRequest"), **missing}),
        },
        "/api/errors": {
            "get": _op(
                "listErrorIssues", "List issues (events grouped)",
                {"200": spec.ok(spec.page_of(_ISSUE, "Issues"), "Issues"), "400": spec.error("BadRequest")},
                parameters=[
                    *_PAGE,
                    spec.query_param("sort", spec.STR, "lastSeen, firstSeen, count, users, title or level; prefix - for descending (default -lastSeen)."),
                    spec.query_param("status", spec.STR, "unresolved, resolved, ignored (comma-separated)."),
                    spec.query_param("project", {"type": "integer", "minimum": 1}, "Only this project."),
                    spec.query_param("level", spec.STR, "fatal, error, warning, info or debug."),
                    spec.query_param("q", spec.STR, "Text the title or culprit contains."),
                ],
            ),
        },
        "/api/errors/{issue}": {
            "parameters": issue,
            "get": _op("getErrorIssue", "One issue", {"200": spec.ok(_ISSUE, "The issue"), **missing}),
            "patch": _op("updateErrorIssue", "Resolve, ignore or reopen an issue",
                         {"200": spec.ok(_ISSUE, "The issue"), **bad, **missing},
                         requestBody=spec.body({"type": "object", "properties": {"status": _STATUS}})),
        },
        "/api/errors/{issue}/events": {
            "parameters": issue,
            "get": _op("listErrorEvents", "The issue's events, newest first",
                       {"200": spec.ok(spec.page_of(_EVENT, "Events"), "Events"), "400": spec.error("BadRequest"), **missing},
                       parameters=_PAGE),
        },
        "/api/errors/{issue}/events/{event}": {
            "parameters": [*issue, spec.path_param("event")],
            "get": _op("getErrorEvent", "One event", {"200": spec.ok(_EVENT, "The event"), **missing}),
        },
    }  # fmt: skip


def openapi(viewer: Viewer) -> list[OpenAPIPart]:
    return [OpenAPIPart(paths=openapi_paths(), tags=[TAG])]
