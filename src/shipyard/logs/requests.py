"""What a finished request (kernel/telemetry.py's `RequestInfo`) becomes: a JSON line on
stdout, and an entry of PocketBase's request log.

Both are built when their batch is written, not on the request: the observer only keeps
the `RequestInfo`. Query strings lose the values of sensitive parameters in both.

The `_logs` entry is PocketBase's (0.40): message `GET /api/x?y=1` (the URL unescaped),
level 0, or 8 when the request failed (4xx or 5xx); `data` with `type: "request"`,
`execTime` (ms), `url`, `method`, `status`, `referer`, `userAgent`, `auth` (the auth
collection's name or ""), `authId` with `logAuthId`, and `userIP` / `remoteIP` with
`logIP`. Successful requests to `/api/logs` itself are not recorded, as in PocketBase.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any
from urllib.parse import unquote

import orjson

from shipyard.kernel.runtime import RuntimeSettings
from shipyard.kernel.telemetry import RequestInfo
from shipyard.settings import Settings

from .lines import iso_time, redact_query
from .store import ERROR, INFO, WARN, Row, make_row

MAX_URL = 3000
MAX_TEXT = 2000


def url_of(info: RequestInfo) -> str:
    query = redact_query(info.query)
    return info.path + ("?" + query if query else "")


def json_line(info: RequestInfo) -> str:
    """The request's stdout line (never a header but the user agent and referer, never a
    sensitive query value)."""
    status = info.status
    level = "error" if status >= 500 else "warning" if status >= 400 else "info"
    return orjson.dumps(
        {
            "time": iso_time(info.started + info.duration),
            "level": level,
            "msg": f"{info.method} {info.path} {status}",
            "type": "request",
            "request_id": info.request_id,
            "method": info.method,
            "route": info.route,
            "path": info.path,
            "query": redact_query(info.query),
            "status": status,
            "duration_ms": round(info.duration * 1000, 3),
            "auth_id": info.auth_id,
            "auth_collection": info.auth_collection,
            "ip": info.ip,
            "user_agent": info.user_agent[:MAX_TEXT],
            "referer": redact_query_url(info.referer)[:MAX_TEXT],
        }
    ).decode()


def redact_query_url(url: str) -> str:
    base, sep, query = url.partition("?")
    return base + sep + redact_query(query) if sep else url


def recorded(info: RequestInfo) -> bool:
    """Whether the request goes to `_logs` at all (settings aside)."""
    if info.method == "OPTIONS":  # CORS preflights are answered before PocketBase's logger
        return False
    return not (info.status < 400 and info.route.startswith("/api/logs"))


def request_row(info: RequestInfo, runtime: RuntimeSettings[Settings]) -> Row | None:
    """The `_logs` row of a request under the settings in effect (None: not recorded)."""
    if runtime.value("logs", "maxDays") <= 0:
        return None
    failed = info.status >= 400
    level = ERROR if failed else INFO
    if level < runtime.value("logs", "minLevel"):
        return None
    url = url_of(info)[:MAX_URL]
    method = info.method.upper()[:50]
    data: dict[str, Any] = {"type": "request", "execTime": round(info.duration * 1000, 6)}
    data.update(
        url=url,
        method=method,
        status=info.status,
        referer=redact_query_url(info.referer)[:MAX_TEXT],
        userAgent=info.user_agent[:MAX_TEXT],
        auth=info.auth_collection,
    )
    if info.auth_id and runtime.value("logs", "logAuthId"):
        data["authId"] = info.auth_id
    if runtime.value("logs", "logIP"):
        data["userIP"] = info.ip
        data["remoteIP"] = info.ip
    return make_row(info.started + info.duration, level, _message(method, url), data)


@lru_cache(maxsize=1024)
def _message(method: str, url: str) -> str:
    """PocketBase's message: the method and the unescaped URL (memoized, as the query)."""
    try:
        return f"{method} {unquote(url, errors='strict')}"
    except UnicodeDecodeError:
        return f"{method} {url}"


def event_row(record: logging.LogRecord, runtime: RuntimeSettings[Settings]) -> Row | None:
    """The `_logs` row of one of Shipyard's own warnings or errors."""
    if runtime.value("logs", "maxDays") <= 0:
        return None
    level = ERROR if record.levelno >= logging.ERROR else WARN
    if level < runtime.value("logs", "minLevel"):
        return None
    data: dict[str, Any] = {"type": "event", "logger": record.name}
    if record.exc_info and record.exc_info[1] is not None:
        exc = record.exc_info[1]
        data["error"] = f"{type(exc).__name__}: {exc}"[:MAX_TEXT]
    try:
        message = record.getMessage()
    except Exception:  # a bad format string must not cost the entry
        message = str(record.msg)
    return make_row(record.created, level, message[:MAX_URL], data)
