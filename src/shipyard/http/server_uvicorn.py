"""`shipyard serve` on uvicorn (SHIPYARD_HTTP_SERVER=uvicorn, docs/limits.md#characters-in-the-query).

uvicorn's parser (llhttp, through httptools) takes every printable ASCII byte in the
request target, as PocketBase does: a raw `"`, `<` or `>` in a query reaches Shipyard,
where granian answers an empty 400 first. It lacks two of the limits granian enforces,
so the protocol below adds them with the same settings:

- `SHIPYARD_HEADER_TIMEOUT`: a connection that has not sent a whole request head this long
  after it opened, or after the first byte of its next request, is closed (uvicorn's own
  clock only runs between requests, where it is set to the same value);
- a bound on the size of a request head (the URL and header limits plus slack, as granian's
  buffer): past it the client gets an empty 431 and the connection is closed.

On SIGTERM uvicorn waits for open connections to finish; realtime streams never do, so the
first connection told to shut down ends them (realtime/shutdown.py) and their clients
reconnect elsewhere, as under granian.

The exact URL and header limits, with answers in the error shape, stay with
http/admission.py, whichever server runs.
"""

from __future__ import annotations

import asyncio
import functools
import re
import ssl
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from shipyard.realtime.shutdown import close_streams
from shipyard.settings import Settings, load_settings

_HEAD_SLACK = 8192  # the request line and the header separators above the two limits
_HIGH = re.compile(rb"[\x80-\xff]")  # bytes llhttp refuses in a request target
_TOO_LARGE = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


@functools.cache
def _limits() -> tuple[float, int]:
    """(header timeout, head bound) of this process, from its settings (the environment:
    workers are started afresh, not forked)."""
    s = load_settings()
    return s.header_timeout, s.max_url_length + s.max_header_size + _HEAD_SLACK


class Protocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a clock on the request head and a bound on its size,
    taking raw bytes over 0x7F in the request target (UTF-8 typed into a curl command) as
    PocketBase and granian do: llhttp refuses them, so they are percent-encoded before it
    sees them, which changes no decoded path or query."""

    _head_clock: asyncio.TimerHandle | None = None
    _head_bytes = 0
    _refused = False
    _fresh = True  # the next byte received is part of a request line
    _last_complete = False  # the parser's last event was the end of a message

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head_clock()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_clock()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:  # after a 431, nothing more is read
            return
        if self._fresh:
            data = self._encode_line(data)
        self._last_complete = False
        super().data_received(data)
        if self._last_complete:  # ended with a whole message: a request line comes next
            self._fresh = True

    def _encode_line(self, data: bytes) -> bytes:
        """`data` with the bytes over 0x7F up to the end of the request line as %XX. Only
        where the line is known to start (the connection's start, or right after a whole
        message): a request line that begins inside a chunk, after a pipelined request, is
        left as it came (and refused as before) rather than risk touching a header or body."""
        end = data.find(b"\n")
        line = data if end < 0 else data[:end]
        if end >= 0:
            self._fresh = False
        if line.isascii():
            return data
        encoded = _HIGH.sub(lambda m: b"%%%02X" % m[0][0], line)
        return encoded if end < 0 else encoded + data[end:]

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._last_complete = False
        self._head_bytes = 0
        self._start_head_clock()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._last_complete = True

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._stop_head_clock()
        super().on_headers_complete()

    def shutdown(self) -> None:
        close_streams()  # the server is stopping: SSE streams end first
        super().shutdown()

    def send_400_response(self, msg: str) -> None:
        if not self._refused:  # the parser's error for the exception raised by `_count`
            super().send_400_response(msg)

    def _count(self, n: int) -> None:
        self._head_bytes += n
        if self._head_bytes > _limits()[1] and not self._refused:
            self._refused = True
            self._stop_head_clock()
            self.transport.write(_TOO_LARGE)
            self.transport.close()
            raise HeadTooLarge  # stops the parser (uvicorn then answers nothing more)

    def _start_head_clock(self) -> None:
        self._stop_head_clock()
        self._head_clock = self.loop.call_later(_limits()[0], self._head_late)

    def _stop_head_clock(self) -> None:
        if self._head_clock is not None:
            self._head_clock.cancel()
            self._head_clock = None

    def _head_late(self) -> None:
        self._head_clock = None
        if not self.transport.is_closing():
            self.transport.close()


class HeadTooLarge(Exception):
    """A request head past the bound (raised inside the parser's callback)."""


def _tls_context(config: Any, default: Any) -> ssl.SSLContext:
    """uvicorn's TLS context with SHIPYARD_TLS_MIN_VERSION applied (in each worker)."""
    context: ssl.SSLContext = default()
    minimum = load_settings().tls_min_version
    context.minimum_version = ssl.TLSVersion.TLSv1_3 if minimum == "1.3" else ssl.TLSVersion.TLSv1_2
    return context


def _run(s: Settings, target: str, port: int, **extra: Any) -> None:
    """uvicorn with what every Shipyard listener shares: the protocol above, uvloop, no
    websockets (realtime is Server-Sent Events), Shipyard's own request log."""
    import uvicorn

    uvicorn.run(
        target,
        factory=True,
        host=s.host,
        port=port,
        http=Protocol,
        loop="uvloop",
        ws="none",
        lifespan="on",
        log_level=s.log_level.lower(),
        access_log=False,  # Shipyard logs each request itself (docs/logs.md)
        server_header=False,
        # granian's keep-alive idle is the header clock; uvicorn's runs between requests
        timeout_keep_alive=s.header_timeout if s.keep_alive else 0,  # type: ignore[arg-type]
        **extra,
    )


def serve(s: Settings, cert: str | None, key: str | None, backpressure: int) -> None:
    _run(
        s,
        "shipyard.app:app_factory",
        s.port,
        workers=s.workers,
        limit_concurrency=backpressure,
        ssl_certfile=cert,
        ssl_keyfile=key,
        ssl_context_factory=_tls_context if cert else None,
    )


def serve_redirect(s: Settings) -> None:
    """The plain-HTTP listener of http/redirect.py, on uvicorn."""
    _run(s, "shipyard.http.redirect:app_factory", s.redirect_http_port)
