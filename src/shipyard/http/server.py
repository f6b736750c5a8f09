"""The HTTP server that `shipyard serve` runs, and its own limits, from settings: granian by
default, uvicorn with SHIPYARD_HTTP_SERVER=uvicorn (http/server_uvicorn.py, which gets the
same limits).

These hold before Shipyard sees a request (docs/limits.md): how long a client may take to
send its headers (the same clock runs while a keep-alive connection idles), whether
connections are kept alive, how large a request head may grow at all, and how many requests
the server hands one process at once. The exact URL and header limits, with answers in the
documented error shape, are checked by http/admission.py.
"""

from __future__ import annotations

from typing import Any

from shipyard.http.tls import ServerTls
from shipyard.settings import Settings

_MIN_BUFFER = 8192  # granian's smallest read buffer
_HEAD_SLACK = 8192  # the request line and the header separators above the two limits


def serve(s: Settings, certs: ServerTls | None) -> None:
    """Run the app's server processes until they stop."""
    if s.http_server == "uvicorn":
        from shipyard.http import server_uvicorn

        cert, key = (str(certs.cert), str(certs.key)) if certs else (None, None)
        server_uvicorn.serve(s, cert, key, backpressure(s))
        return
    from granian import Granian
    from granian.constants import Interfaces, SSLProtocols

    from shipyard.realtime.shutdown import granian_closes_streams_first

    granian_closes_streams_first()
    Granian(
        "shipyard.app:app_factory",
        factory=True,
        interface=Interfaces.ASGI,
        address=s.host,
        port=s.port,
        workers=s.workers,
        log_level=s.log_level.lower(),  # type: ignore[arg-type]
        respawn_failed_workers=True,
        ssl_cert=certs.cert if certs else None,
        ssl_key=certs.key if certs else None,
        ssl_protocol_min=SSLProtocols(f"tls{s.tls_min_version}"),
        **granian_options(s),  # the server's own limits (docs/limits.md)
    ).serve()


def backpressure(s: Settings) -> int:
    """Requests the server hands one process at once: room above the admission bound, so
    the requests past it reach the process and get their fast 503 rather than waiting
    inside the server; realtime streams hold their slot for as long as they are open, so
    they get room of their own."""
    return max(1024, 4 * s.max_in_flight) + (
        s.realtime_max_connections if s.realtime_enabled else 0
    )


def granian_options(s: Settings) -> dict[str, Any]:
    from granian.http import HTTP1Settings, HTTP2Settings

    head = max(_MIN_BUFFER, s.max_url_length + s.max_header_size + _HEAD_SLACK)
    return {
        "http1_settings": HTTP1Settings(
            header_read_timeout=max(1, round(s.header_timeout * 1000)),
            keep_alive=s.keep_alive,
            max_buffer_size=head,
        ),
        "http2_settings": HTTP2Settings(max_headers_size=head),
        "backpressure": backpressure(s),
    }
