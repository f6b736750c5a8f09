"""Ending the open streams when the process is asked to stop.

The HTTP server (granian) drains open connections on SIGTERM before it runs the app's
shutdown, and an SSE stream never ends by itself: without this, a stop would wait for
every subscriber's idle timeout (or be killed). So, once the server has installed its
signal handlers on the event loop, they are wrapped: the streams are closed first (the
SDK reconnects to another process), then the server's own handler runs. Where the loop
has no such handler (tests, other servers) nothing changes there; a server that signals
its shutdown otherwise calls `close_streams()` (uvicorn: http/server_uvicorn.py, whose
signal handlers are not the loop's).

Under uvloop (granian's loop since it is installed) the loop's handlers cannot be read, so
that wrapping finds nothing: `granian_closes_streams_first()`, called by `shipyard serve`
before granian forks its workers, makes granian's own worker signal set-up end the streams
before it signals the worker's shutdown. Without it a stop with a stream open waited for
the stream's idle timeout (`kill -TERM` to the process group, as systemd stops a service:
still running after 20 s, against 1.5 s with no stream open).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from typing import Any

_CLOSERS: list[Callable[[], None]] = []  # this process's, for `close_streams`


def close_streams() -> None:
    """End this process's open streams now (once): the server is shutting down."""
    while _CLOSERS:
        with contextlib.suppress(Exception):
            _CLOSERS.pop()()


def granian_closes_streams_first() -> None:
    """Wrap granian's worker signal set-up (`granian._signals.set_loop_signals`, called in
    each worker after the fork, so patched here in the parent): SIGTERM/SIGINT end this
    process's streams, then set granian's shutdown event."""
    import granian._signals as granian_signals

    original: Callable[[asyncio.AbstractEventLoop], Any] = granian_signals.set_loop_signals
    if getattr(original, "closes_streams", False):
        return

    def set_loop_signals(loop: asyncio.AbstractEventLoop) -> Any:
        event = original(loop)

        def handler(signum: int, frame: object) -> None:
            close_streams()
            event.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, handler, sig, None)
            except NotImplementedError:
                signal.signal(sig, handler)
        return event

    set_loop_signals.closes_streams = True  # type: ignore[attr-defined]
    granian_signals.set_loop_signals = set_loop_signals


def before_stop(loop: asyncio.AbstractEventLoop, close: Callable[[], None]) -> bool:
    """Call `close()` first on SIGTERM/SIGINT, or at `close_streams()`; whether a server
    handler was found on the loop."""
    _CLOSERS.append(close)
    handlers: Any = getattr(loop, "_signal_handlers", None)  # asyncio's Unix loops
    if not isinstance(handlers, dict):
        return False
    wrapped = False
    for sig in (signal.SIGTERM, signal.SIGINT):
        prior = handlers.get(sig)
        callback = getattr(prior, "_callback", None)
        if callback is None:
            continue
        args = getattr(prior, "_args", ()) or ()

        def handler(callback: Callable[..., object] = callback, args: Any = args) -> None:
            with contextlib.suppress(Exception):
                close()
            callback(*args)

        with contextlib.suppress(ValueError, RuntimeError):  # not the main thread
            loop.add_signal_handler(sig, handler)
            wrapped = True
    return wrapped
