"""Starlette's router, with the routes indexed by the first two segments of their path.

Starlette tries every route in order with a regular expression: with each capability
contributing its routes (about 40 in all), a request near the end of the list (a file
download) paid more for finding its route than for the rest of its handling (measured with
cProfile in-process: about a quarter of a download's CPU time). The index keeps only the
routes that could match a path (the same first two segments and as many segments in all),
in their original order, so which route answers is exactly what Starlette would pick; a
path no indexed route matches (a 404, a redirect to the trailing-slash form, the public
directory) goes through Starlette's own full scan.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Match, Mount, Route, Router, WebSocketRoute
from starlette.types import Receive, Scope, Send

Key = tuple[str, ...]
_ANY: Key = ()
_MEMO = 1024  # (key, segment count) pairs remembered  # a route whose first two segments are not literal: tried for every path


def path_key(path: str) -> Key:
    """The first two segments of a request path: `/api/files/x/y` → ("api", "files")."""
    return tuple(path.split("/", 3)[1:3])


def route_key(route: BaseRoute) -> Key:
    """The key of every path `route` can match, or _ANY when that is not one key."""
    if isinstance(route, Mount):
        literal = route.path + "/{rest}"  # a mount matches its path and everything below it
    elif isinstance(route, Route | WebSocketRoute):
        literal = route.path
    else:
        return _ANY
    brace = literal.find("{")
    if brace < 0:  # a fixed path: its own key
        return path_key(literal)
    whole = literal[:brace].split("/")[1:-1]  # segments that end before the first parameter
    return tuple(whole[:2]) if len(whole) >= 2 else _ANY


def route_segments(route: BaseRoute) -> int | None:
    """How many `/` every path `route` matches has, or None when that varies (a mount, a
    `{…:path}` parameter): a request path with another count cannot match it."""
    if isinstance(route, Route | WebSocketRoute) and ":path}" not in route.path:
        return route.path.count("/")
    return None


class IndexedRouter(Router):
    """A drop-in for the application's router (`routes` may grow at start-up: the index is
    rebuilt when the list changes)."""

    _index: dict[Key, list[BaseRoute]]
    _wild: list[BaseRoute]
    _indexed: tuple[int, int] = (-1, 0)
    _by_count: dict[tuple[Key, int], list[BaseRoute]]

    def _candidates(self, path: str) -> list[BaseRoute]:
        routes = self.routes
        signature = (len(routes), id(routes[-1]) if routes else 0)
        if signature != self._indexed:
            keys = [route_key(r) for r in routes]
            self._wild = [r for r, k in zip(routes, keys, strict=True) if k == _ANY]
            self._index = {
                key: [r for r, k in zip(routes, keys, strict=True) if k in (key, _ANY)]
                for key in set(keys) - {_ANY}
            }
            self._indexed = signature
            self._by_count = {}
        key, n = path_key(path), path.count("/")
        found = self._by_count.get((key, n))
        if found is None:
            found = [r for r in self._index.get(key, self._wild) if route_segments(r) in (None, n)]
            if len(self._by_count) < _MEMO:  # paths nobody routes must not grow it forever
                self._by_count[(key, n)] = found
        return found

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan" or scope.get("root_path"):
            await super().app(scope, receive, send)
            return
        partial: BaseRoute | None = None
        partial_scope: Scope = {}
        for route in self._candidates(scope["path"]):
            match, child_scope = route.matches(scope)
            if match is Match.FULL:
                scope.setdefault("router", self)
                scope["route"] = route
                scope.update(child_scope)
                await route.handle(scope, receive, send)
                return
            if match is Match.PARTIAL and partial is None:
                partial, partial_scope = route, child_scope
        if partial is not None:  # e.g. the method is not allowed: 405, as Starlette
            scope.setdefault("router", self)
            scope["route"] = partial
            scope.update(partial_scope)
            await partial.handle(scope, receive, send)
            return
        await super().app(scope, receive, send)  # redirects and the not-found handler
