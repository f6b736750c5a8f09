"""A real HTTP server that receives webhooks in tests, and can be made to refuse.

It records the method, path, headers and body of every request it reads. Modes:
`ok` (200), `503`, `close` (reads the request, then closes the connection without an
answer), `redirect` (302 to another path), `endless` (200, then a body that never ends) —
and `stop()`/`start()` stop and resume listening on the same port (connection refused
meanwhile).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from standardwebhooks.webhooks import Webhook as StandardWebhook

from tests.helpers.servers import free_port


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    answered: int | None  # the status we sent; None when the connection was closed
    at: float

    @property
    def id(self) -> str:
        return self.headers.get("webhook-id", "")

    def json(self) -> Any:
        return orjson.loads(self.body)

    def verify(self, secret: str) -> Any:
        """The payload, checked with the independent `standardwebhooks` library."""
        return StandardWebhook(secret).verify(self.body, self.headers)


class Receiver:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.mode = "ok"
        self.ok_body = b'{"ok":true}'  # what a 200 answers (a CDN API's JSON, say)
        self.requests: list[Received] = []
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def listening(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _handle(self) -> None:
                size = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(size) if size else b""
                mode = receiver.mode
                code = {"ok": 200, "503": 503, "redirect": 302, "endless": 200}.get(mode)
                with receiver.lock:
                    receiver.requests.append(
                        Received(
                            self.command,
                            self.path,
                            {k.lower(): v for k, v in self.headers.items()},
                            body,
                            code,
                            time.time(),
                        )
                    )
                if code is None:  # "close": no answer at all
                    self.close_connection = True
                    return
                if mode == "endless":  # 200, then a body that never ends
                    self._endless()
                    return
                out = receiver.ok_body if code == 200 else b"unavailable"
                self.send_response(code)
                if code == 302:
                    self.send_header("location", "/redirected")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def _endless(self) -> None:
                self.close_connection = True
                self.send_response(200)
                self.send_header("content-length", str(10**10))
                self.end_headers()
                deadline = time.monotonic() + 20
                try:
                    self.wfile.write(b"x" * 4096)
                    while time.monotonic() < deadline:
                        self.wfile.write(b"y" * 64)
                        self.wfile.flush()
                        time.sleep(0.05)
                except OSError:
                    pass  # the client hung up, as it should

            do_POST = do_GET = do_PUT = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop listening: connections are refused until `start()`."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def snapshot(self) -> list[Received]:
        with self.lock:
            return list(self.requests)

    def delivered(self) -> list[Received]:
        """Requests that got a 2xx."""
        return [r for r in self.snapshot() if r.answered == 200]

    def wait_for(
        self, cond: Callable[[list[Received]], bool], timeout: float = 10.0
    ) -> list[Received]:
        """Poll until `cond(requests)` holds; the requests either way (the caller asserts)."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.snapshot()
            if cond(got) or time.monotonic() > deadline:
                return got
            time.sleep(0.02)


def receiver_fixture() -> Iterator[Receiver]:
    r = Receiver()
    r.start()
    try:
        yield r
    finally:
        r.stop()
