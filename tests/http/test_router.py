"""The indexed router picks the route Starlette's own scan picks, for every route the app
has (each capability's included), and keeps its 405s, redirects and not-found handler."""

from __future__ import annotations

import re

from starlette.routing import BaseRoute, Match, Mount, Route, Router
from starlette.testclient import TestClient

from shipyard.http.router import IndexedRouter, path_key, route_key


def _sample(route: BaseRoute) -> str | None:
    """A concrete path the route matches (its parameters filled in)."""
    if isinstance(route, Mount):
        return route.path + "/x"
    if isinstance(route, Route):
        return re.sub(r"\{[^}]+\}", "p1", route.path)
    return None


def _starlette_pick(routes: list[BaseRoute], scope: dict[str, object]) -> BaseRoute | None:
    partial = None
    for route in routes:
        match, _ = route.matches(dict(scope))
        if match is Match.FULL:
            return route
        if match is Match.PARTIAL and partial is None:
            partial = route
    return partial


def _indexed_pick(router: IndexedRouter, scope: dict[str, object]) -> BaseRoute | None:
    partial = None
    for route in router._candidates(str(scope["path"])):
        match, _ = route.matches(dict(scope))
        if match is Match.FULL:
            return route
        if match is Match.PARTIAL and partial is None:
            partial = route
    return partial


def test_every_route_resolves_as_starlette_does(client: TestClient) -> None:
    router = client.app.router  # type: ignore[attr-defined]
    assert isinstance(router, IndexedRouter)
    routes = list(router.routes)
    assert len(routes) > 20  # the capabilities' routes are in
    paths = {p for r in routes if (p := _sample(r))}
    paths |= {"/", "/nope", "/api/nope/x", "/api/collections/x/records/", "/api"}
    for path in sorted(paths):
        for method in ("GET", "POST", "DELETE", "PATCH"):
            scope = {"type": "http", "method": method, "path": path, "root_path": ""}
            assert _indexed_pick(router, scope) is _starlette_pick(routes, scope), (method, path)


def test_keys() -> None:
    assert path_key("/api/files/a/b/c") == ("api", "files")
    assert path_key("/health") == ("health",)
    assert route_key(Route("/api/files/{c}/{r}/{f}", lambda r: None)) == ("api", "files")
    assert route_key(Route("/api/{x}/y", lambda r: None)) == ()  # tried for every path
    assert route_key(Route("/{x}", lambda r: None)) == ()
    assert route_key(Mount("/api/docs", routes=[])) == ("api", "docs")
    assert route_key(Mount("/x", routes=[])) == ()


def test_statuses_through_http(client: TestClient, su: dict[str, str]) -> None:
    # a wrong method on a known path is a 405, an unknown API path the JSON 404
    assert client.delete("/api/health").status_code == 405
    r = client.get("/api/no-such-thing")
    assert r.status_code == 404
    assert r.json()["status"] == 404
    assert client.get("/api/collections", headers=su).status_code == 200


def test_a_plain_router_is_a_drop_in() -> None:
    async def ok(request: object) -> object:
        from starlette.responses import PlainTextResponse

        return PlainTextResponse("ok")

    router = IndexedRouter([Route("/a/b/{x}", ok), Route("/{y}/c", ok, methods=["POST"])])
    with TestClient(router) as c:
        assert c.get("/a/b/1").text == "ok"
        assert c.get("/z/c").status_code == 405  # the wildcard route, found for any key
        assert c.get("/a/b/1/", follow_redirects=False).status_code == 307
        assert c.get("/q").status_code == 404
    assert isinstance(router, Router)
