"""The plain-HTTP listener of `shipyard serve --redirect-http PORT`: every request gets a
permanent redirect to the same path and query over HTTPS, on the same host name.

It runs as its own small granian process (`python -m shipyard.http.redirect`, started and
stopped by `shipyard serve`; uvicorn with SHIPYARD_HTTP_SERVER=uvicorn) so that HTTP
parsing, timeouts and limits are the server's, and
it never touches the database. `308` keeps the method (a `POST` stays a `POST`); the
`Host` must be a plain host name or address, anything else gets a 400, so the answer can
only ever point at the host the client itself asked for.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time

from starlette.types import Receive, Scope, Send

_HOST = re.compile(rb"([A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,5})?")
_PLAIN = [(b"content-type", b"text/plain; charset=utf-8"), (b"cache-control", b"no-store")]


class Redirect:
    """Answers every request with a redirect to `https://<host>[:https_port]<path>`."""

    def __init__(self, https_port: int) -> None:
        self.suffix = b"" if https_port == 443 else f":{https_port}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                event = (await receive())["type"]  # lifespan.startup, then .shutdown
                await send({"type": event + ".complete"})
                if event == "lifespan.shutdown":
                    return
        if scope["type"] != "http":
            return
        host = b""
        for key, value in scope["headers"]:
            if key == b"host":
                host = value
                break
        m = _HOST.fullmatch(host)
        if m is None:
            body = b"Bad Request: a Host header naming this server is required.\n"
            await _answer(send, 400, _PLAIN, body)
            return
        target = scope.get("raw_path") or scope["path"].encode()
        if scope["query_string"]:
            target += b"?" + scope["query_string"]
        location = b"https://" + m.group(1) + self.suffix + target
        body = b"Moved to HTTPS: " + location + b"\n"
        await _answer(send, 308, [(b"location", location), *_PLAIN], body)


async def _answer(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    length = (b"content-length", str(len(body)).encode())
    await send({"type": "http.response.start", "status": status, "headers": [*headers, length]})
    await send({"type": "http.response.body", "body": body})


def app_factory() -> Redirect:
    """The listener's application (granian's factory), reading the HTTPS port from settings."""
    from shipyard.settings import load_settings

    return Redirect(load_settings().port)


def _exit_with_parent(parent: int) -> None:
    """The listener belongs to one `shipyard serve`: when that is gone, so is the listener."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)  # granian's own shutdown, workers included


def main() -> None:
    from shipyard.settings import load_settings

    settings = load_settings()
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    if settings.http_server == "uvicorn":  # a raw `"` in a query is redirected too
        from shipyard.http import server_uvicorn

        server_uvicorn.serve_redirect(settings)
        return
    from granian import Granian
    from granian.constants import Interfaces

    Granian(
        "shipyard.http.redirect:app_factory",
        factory=True,
        interface=Interfaces.ASGI,
        address=settings.host,
        port=settings.redirect_http_port,
        workers=1,
        log_level=settings.log_level.lower(),  # type: ignore[arg-type]
        websockets=False,
    ).serve()


if __name__ == "__main__":
    main()
