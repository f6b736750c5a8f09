"""Structured log lines on stdout: one JSON object per line, for requests and for
Shipyard's own events (the stdlib `logging` calls under `shipyard.*`), in one shape:

    {"time": "2026-12-05T03:00:00.123Z", "level": "info", "msg": "...", ...}

Request lines are rendered in batches on the event loop and written by the log writer's
thread (writer.py), a few hundred whole lines per `os.write`. Event lines are rare and are written at once (`JsonFormatter`
on a `LineHandler`), never through Python's buffered `sys.stdout`; each `os.write` is
whole lines, so the two kinds never mix within a line.

Nothing secret reaches a line: query parameters whose name looks sensitive (`token`,
`password`, `*secret*`, `*key*`, …) keep their name with the value replaced, and no
header but the user agent and the referer is ever read.
"""

from __future__ import annotations

import logging
import os
import re
import time
import traceback
from functools import lru_cache
from typing import Any
from urllib.parse import unquote_plus

import orjson

REDACTED = "[redacted]"
# a query parameter (or a data key) whose name contains one of these is never logged
_SENSITIVE = re.compile(
    r"token|passw|pwd|secret|key|auth|sig|session|cookie|credential|otp|code|jwt|dsn",
    re.IGNORECASE,
)
_LEVEL_NAMES = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
    logging.CRITICAL: "critical",
}
# LogRecord attributes that are not a caller's `extra={...}`
_STANDARD = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys()
    | {"message", "asctime", "taskName"}
)


def sensitive(name: str) -> bool:
    return bool(_SENSITIVE.search(name))


@lru_cache(maxsize=1024)
def redact_query(query: str) -> str:
    """The query string with every sensitive parameter's value replaced (names kept).
    Memoized: a server sees the same few query strings again and again."""
    if not query:
        return ""
    if not _SENSITIVE.search(unquote_plus(query)):
        return query  # the common case: nothing to look at twice
    out = []
    for part in query.split("&"):
        name, sep, _ = part.partition("=")
        out.append(f"{name}={REDACTED}" if sep and sensitive(unquote_plus(name)) else part)
    return "&".join(out)


_last_second: tuple[int, str] = (-(2**62), "")  # the last whole second formatted


def iso_time(epoch: float) -> str:
    """RFC 3339 in UTC with milliseconds: `2026-12-05T03:00:00.123Z` (the second's text is
    formatted once per second, not once per line)."""
    global _last_second
    second = int(epoch // 1)
    cached = _last_second  # one read: threads may replace it meanwhile
    if cached[0] != second:
        cached = _last_second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{cached[1]}.{int((epoch - second) * 1000):03d}Z"


def _plain(value: Any) -> Any:
    """A JSON-serializable stand-in for an `extra` value orjson refuses."""
    return value if isinstance(value, str | int | float | bool | None) else repr(value)


class JsonFormatter(logging.Formatter):
    """A `logging` record as one JSON line: time, level, msg, logger, the exception (type,
    message, traceback) when there is one, and the caller's `extra` fields (sensitive
    names redacted)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": iso_time(record.created),
            "level": _LEVEL_NAMES.get(record.levelno, record.levelname.lower()),
            "msg": record.getMessage(),
            "logger": record.name,
        }
        if record.exc_info and record.exc_info[0] is not None:
            exc_type, exc, tb = record.exc_info
            out["error"] = {
                "type": exc_type.__name__,
                "message": str(exc),
                "stack": "".join(traceback.format_exception(exc_type, exc, tb)),
            }
        elif record.exc_text:
            out["error"] = {"stack": record.exc_text}
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in out and not key.startswith("_"):
                out[key] = REDACTED if sensitive(key) else value
        return orjson.dumps(out, default=_plain).decode()


class LineHandler(logging.Handler):
    """Writes each formatted record with one `os.write` on a file descriptor (stdout by
    default): unbuffered, so lines from this handler and the request writer interleave
    whole and in order."""

    def __init__(self, fd: int = 1, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.fd = fd

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = (self.format(record) + "\n").encode("utf-8", "replace")
            while data:
                data = data[os.write(self.fd, data) :]
        except Exception:
            self.handleError(record)


def configure(level: str, fmt: str = "json", fd: int = 1) -> None:
    """Shipyard's own log lines (`shipyard.*`) at `level`: JSON lines on `fd` (stdout), or
    with `fmt="text"`, the classic text lines on stderr. Leaves alone a program that set up
    logging itself (a root handler that is not ours), and is idempotent."""
    root = logging.getLogger()
    ours = [h for h in root.handlers if getattr(h, "_shipyard", False)]
    if root.handlers and not ours:
        logging.getLogger("shipyard").setLevel(level.upper())
        return
    for h in ours:
        root.removeHandler(h)
    handler: logging.Handler
    if fmt == "json":
        handler = LineHandler(fd)
        handler.setFormatter(JsonFormatter())
    else:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    setattr(handler, "_shipyard", True)  # noqa: B010  (marks our handler)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("shipyard").setLevel(level.upper())


__all__ = [
    "REDACTED",
    "JsonFormatter",
    "LineHandler",
    "configure",
    "iso_time",
    "redact_query",
    "sensitive",
]
