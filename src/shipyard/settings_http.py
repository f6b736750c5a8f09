"""The HTTP server part of the settings (docs/limits.md#characters-in-the-query): a base of
`Settings`. Which server `shipyard serve` runs the app on; both are given the same limits
(header timeout, keep-alive, size of a request head) from the main settings."""

from __future__ import annotations

from dataclasses import dataclass

from shipyard.tools.settings_parse import SettingsError

HTTP_SERVERS = ("granian", "uvicorn")


@dataclass(frozen=True)
class HttpServerSettings:
    # granian: the default (HTTP/2, the server's own file sending, the least CPU per
    # request); uvicorn: also takes a raw `"`, `<`, `>` in the query, as PocketBase does
    http_server: str = "granian"


def validate_http_server(s: HttpServerSettings) -> None:
    if s.http_server not in HTTP_SERVERS:
        raise SettingsError("SHIPYARD_HTTP_SERVER: must be one of " + ", ".join(HTTP_SERVERS))
