"""The HTTP server's own limits, from settings: what `shipyard serve` passes to granian.

These hold before Shipyard sees a request (docs/limits.md): how long a client may take to
send its headers (the same clock runs while a keep-alive connection idles), whether
connections are kept alive, how large a request head may grow at all, and how many requests
the server hands one process at once. The exact URL and header limits, with answers in the
documented error shape, are checked by http/admission.py.
"""

from __future__ import annotations

from typing import Any

from shipyard.settings import Settings

_MIN_BUFFER = 8192  # granian's smallest read buffer
_HEAD_SLACK = 8192  # the request line and the header separators above the two limits


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
        # room above the admission bound, so the requests past it reach the process and
        # get their fast 503 rather than waiting inside the server; realtime streams hold
        # their slot for as long as they are open, so they get room of their own
        "backpressure": max(1024, 4 * s.max_in_flight)
        + (s.realtime_max_connections if s.realtime_enabled else 0),
    }
