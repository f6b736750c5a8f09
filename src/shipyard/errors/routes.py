"""The error tracker's HTTP side: the Sentry-compatible ingestion (`POST /api/{projectId}/
envelope/` and the legacy `/store/`, authenticated by the DSN's public key) and the
superusers' API (`/api/errors/projects…`, `/api/errors…`).

Ingestion answers as Sentry does: 200 `{"id": eventId}`; 429 with Retry-After and
X-Sentry-Rate-Limits over the project's quota; 413 over the size limits; 401 without a key,
403 for a key that is unknown or not the project's; 400 for anything it cannot read.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from shipyard.errors.envelope import (
    BadInput,
    TooBig,
    decompress,
    event_id,
    key_from_auth_header,
    key_from_dsn,
    parse_envelope,
    parse_store,
)
from shipyard.errors.projects import Project
from shipyard.errors.tracker import ErrorTracker
from shipyard.kernel.errors import ApiError, bad_request, not_found
from shipyard.kernel.params import parse_int
from shipyard.kernel.web import JSON, client_ip, int_param, parse_body, read_body
from shipyard.records.context import require_superuser
from shipyard.settings import Settings

log = logging.getLogger("shipyard.errors")
_MAX_PROJECT_ID = 2**62
MAX_EVENTS_PER_ENVELOPE = 100  # SDKs send one; more is not an SDK


def _public_url(settings: Settings, request: Request | None = None) -> str:
    """Where SDKs reach this server: SHIPYARD_APP_URL when set, else the request's own
    base URL (or host and port)."""
    if "app_url" in settings.sources:
        return settings.app_url
    if request is not None:
        return str(request.base_url).rstrip("/")
    return public_url_from(settings)


def public_url_from(settings: Settings) -> str:
    if "app_url" in settings.sources:
        return settings.app_url.rstrip("/")
    host = settings.host
    if host in ("", "0.0.0.0"):  # noqa: S104  (a wildcard bind is reached on loopback)
        host = "127.0.0.1"
    elif host == "::":
        host = "[::1]"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


class ErrorRoutes:
    def __init__(self, tracker: ErrorTracker, settings: Settings) -> None:
        self.tracker = tracker
        self.settings = settings

    # ------------------------------------------------------------------ ingestion

    def _key(self, request: Request) -> str:
        header = request.headers.get("x-sentry-auth", "")
        if not header:
            auth = request.headers.get("authorization", "")
            header = auth if auth[:7].lower() == "sentry " else ""
        return (
            key_from_auth_header(header) if header else request.query_params.get("sentry_key", "")
        )

    async def _project(self, request: Request, key: str) -> Project:
        if not key:
            raise ApiError(401, "Missing the DSN's public key (X-Sentry-Auth or sentry_key).")
        project = await self.tracker.projects.by_key(key[:200])
        wanted = request.path_params["projectId"]
        if project is None:
            raise ApiError(403, "Unknown DSN key.")
        if project.id != wanted:
            raise ApiError(403, "The DSN key does not belong to this project.")
        return project

    async def _body(self, request: Request) -> bytes:
        s = self.settings
        raw = await read_body(request, s.errors_max_body_size)
        try:
            return decompress(
                raw, request.headers.get("content-encoding", ""), s.errors_max_uncompressed_size
            )
        except TooBig as exc:
            raise ApiError(413, str(exc)) from None
        except BadInput as exc:
            raise bad_request(str(exc)) from None

    async def _accept(
        self, request: Request, project: Project, events: list[dict[str, Any]], fallback: str
    ) -> Response:
        retry = await self.tracker.take_quota(project, len(events))
        if retry:
            secs = str(int(retry))
            raise ApiError(
                429,
                f"The project's event quota is used up; retry in {secs} s.",
                headers={
                    "Retry-After": secs,
                    "X-Sentry-Rate-Limits": f"{secs}:error;default:project",
                },
            )
        ip = client_ip(request)
        first = ""
        for event in events:
            stored = await self.tracker.store(project, event, ip)
            first = first or stored.event_id
        return JSON({"id": first or fallback})

    async def envelope(self, request: Request) -> Response:
        if request.path_params["projectId"] > _MAX_PROJECT_ID:
            raise not_found("The project wasn't found.")
        key = self._key(request)
        if key:  # refused before the body is read
            await self._project(request, key)
        body = await self._body(request)
        try:
            env = parse_envelope(body)
            events = env.events()
        except BadInput as exc:
            raise bad_request(str(exc)) from None
        if len(events) > MAX_EVENTS_PER_ENVELOPE:
            raise bad_request(f"An envelope may carry at most {MAX_EVENTS_PER_ENVELOPE} events.")
        project = await self._project(request, key or key_from_dsn(env.headers.get("dsn")))
        fallback = event_id(env.headers.get("event_id")) or uuid.uuid4().hex
        return await self._accept(request, project, events, fallback)

    async def store(self, request: Request) -> Response:
        if request.path_params["projectId"] > _MAX_PROJECT_ID:
            raise not_found("The project wasn't found.")
        project = await self._project(request, self._key(request))
        body = await self._body(request)
        try:
            event = parse_store(body, self.settings.errors_max_uncompressed_size)
        except TooBig as exc:
            raise ApiError(413, str(exc)) from None
        except BadInput as exc:
            raise bad_request(str(exc)) from None
        return await self._accept(request, project, [event], uuid.uuid4().hex)

    # ------------------------------------------------------------------ projects

    @staticmethod
    def _project_id(request: Request) -> int:
        return parse_int(request.path_params["id"], "project id", 1, _MAX_PROJECT_ID)

    async def list_projects(self, request: Request) -> Response:
        await require_superuser(request)
        base = _public_url(self.settings, request)
        items = [p.to_json(base) for p in await self.tracker.projects.all()]
        return JSON({"items": items, "totalItems": len(items)})

    async def create_project(self, request: Request) -> Response:
        await require_superuser(request)
        p = await self.tracker.projects.create(await parse_body(request))
        return JSON(p.to_json(_public_url(self.settings, request)))

    async def get_project(self, request: Request) -> Response:
        await require_superuser(request)
        p = await self.tracker.projects.get(self._project_id(request))
        return JSON(p.to_json(_public_url(self.settings, request)))

    async def update_project(self, request: Request) -> Response:
        await require_superuser(request)
        body = await parse_body(request)
        p = await self.tracker.projects.update(self._project_id(request), body)
        return JSON(p.to_json(_public_url(self.settings, request)))

    async def rotate_key(self, request: Request) -> Response:
        await require_superuser(request)
        p = await self.tracker.projects.rotate_key(self._project_id(request))
        return JSON(p.to_json(_public_url(self.settings, request)))

    async def delete_project(self, request: Request) -> Response:
        await require_superuser(request)
        await self.tracker.projects.delete(self._project_id(request))
        return Response(status_code=204)

    # ------------------------------------------------------------------ issues, events

    async def list_issues(self, request: Request) -> Response:
        await require_superuser(request)
        q = request.query_params
        project = q.get("project", "")
        return JSON(
            await self.tracker.issues(
                page=int_param(request, "page", 1, 1, 1_000_000),
                per_page=int_param(request, "perPage", 30, 1, 500),
                sort=q.get("sort", "") or "-lastSeen",
                status=q.get("status", ""),
                project=parse_int(project, "project parameter", 1, _MAX_PROJECT_ID)
                if project
                else None,
                level=q.get("level", ""),
                query=q.get("q", "")[:200],
            )
        )

    async def get_issue(self, request: Request) -> Response:
        await require_superuser(request)
        return JSON(await self.tracker.issue(request.path_params["issue"]))

    async def update_issue(self, request: Request) -> Response:
        await require_superuser(request)
        body = await parse_body(request)
        if set(body) - {"status"}:
            raise bad_request("Only the status of an issue can be changed.")
        if "status" not in body:
            return JSON(await self.tracker.issue(request.path_params["issue"]))
        return JSON(await self.tracker.set_status(request.path_params["issue"], body["status"]))

    async def list_events(self, request: Request) -> Response:
        await require_superuser(request)
        return JSON(
            await self.tracker.events(
                request.path_params["issue"],
                page=int_param(request, "page", 1, 1, 1_000_000),
                per_page=int_param(request, "perPage", 30, 1, 500),
            )
        )

    async def get_event(self, request: Request) -> Response:
        await require_superuser(request)
        p = request.path_params
        return JSON(await self.tracker.event(p["issue"], p["event"]))

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/api/{projectId:int}/envelope/", self.envelope, methods=["POST"]),
            Route("/api/{projectId:int}/store/", self.store, methods=["POST"]),
            Route("/api/errors/projects", self.list_projects, methods=["GET"]),
            Route("/api/errors/projects", self.create_project, methods=["POST"]),
            Route("/api/errors/projects/{id}", self.get_project, methods=["GET"]),
            Route("/api/errors/projects/{id}", self.update_project, methods=["PATCH"]),
            Route("/api/errors/projects/{id}", self.delete_project, methods=["DELETE"]),
            Route("/api/errors/projects/{id}/rotate-key", self.rotate_key, methods=["POST"]),
            Route("/api/errors", self.list_issues, methods=["GET"]),
            Route("/api/errors/{issue}", self.get_issue, methods=["GET"]),
            Route("/api/errors/{issue}", self.update_issue, methods=["PATCH"]),
            Route("/api/errors/{issue}/events", self.list_events, methods=["GET"]),
            Route("/api/errors/{issue}/events/{event}", self.get_event, methods=["GET"]),
        ]


__all__ = ["ErrorRoutes", "public_url_from"]
