"""What a finished request (kernel/telemetry.py's `RequestInfo`) becomes: a JSON line on
stdout, and an entry of PocketBase's request log — rendered together, from one JSON object.

The `_logs` entry is PocketBase's (0.40): message `GET /api/x?y=1` (the URL unescaped),
level 0, or 8 when the request failed (4xx or 5xx); `data` with `type: "request"`,
`execTime` (ms, written with 6 decimals), `url`, `method`, `status`, `referer`,
`userAgent`, `auth` (the auth collection's name or ""), `authId` with `logAuthId`, and
`userIP` / `remoteIP` with `logIP`; Shipyard adds `requestId` (the X-Request-Id) and `route` (the route template).
Successful requests to `/api/logs` itself are not recorded, as in PocketBase.

The stdout line is that same object with `time`, `level` and `msg` in front, and always
`authId` and `userIP` (an operator's log, not the admin UI's):

    {"time":"2026-12-05T03:00:00.123Z","level":"info","msg":"GET /api/health 200",
     "type":"request","execTime":0.410000,"url":"/api/health","method":"GET","status":200,...}

Query strings lose the values of sensitive parameters in both.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple
from urllib.parse import unquote

import orjson

from shipyard.kernel.runtime import RuntimeSettings
from shipyard.kernel.telemetry import RequestInfo
from shipyard.settings import Settings

from .lines import redact_query
from .store import ERROR, INFO, WARN, Row, clean, id_prefix, id_suffix, make_row, second_texts

MAX_URL = 3000
MAX_TEXT = 2000


def url_of(info: RequestInfo) -> str:
    query = redact_query(info.query)
    return info.path + ("?" + query if query else "")


@dataclass(frozen=True, slots=True)
class Options:
    """The request log's settings in effect (runtime section `logs`), taken per batch."""

    enabled: bool = True  # logs.maxDays > 0
    min_level: int = INFO
    log_ip: bool = True
    log_auth_id: bool = False

    @classmethod
    def of(cls, runtime: RuntimeSettings[Settings]) -> Options:
        v = runtime.value
        return cls(
            v("logs", "maxDays") > 0,
            v("logs", "minLevel"),
            v("logs", "logIP"),
            v("logs", "logAuthId"),
        )


def redact_query_url(url: str) -> str:
    base, sep, query = url.partition("?")
    return base + sep + redact_query(query) if sep else url


def recorded(info: RequestInfo) -> bool:
    """Whether the request goes to `_logs` at all (settings aside)."""
    if info.method == "OPTIONS":  # CORS preflights are answered before PocketBase's logger
        return False
    return not (info.status < 400 and info.route.startswith("/api/logs"))


class _Shape(NamedTuple):
    """What requests alike share, serialized once: most clients repeat a few requests."""

    middle: str  # the data object's members after execTime
    message: str  # PocketBase's message
    head: str  # the stdout line's "level", "msg" and "route" members
    level: int  # PocketBase's level
    recorded: bool  # whether `_logs` records it at all (`recorded`)


_shapes: dict[tuple[Any, ...], _Shape] = {}
_MAX_SHAPES = 4096


def _new_shape(info: RequestInfo, key: tuple[Any, ...], log_ip: bool) -> _Shape:
    url = url_of(info)[:MAX_URL]
    method = info.method.upper()[:50]
    status = info.status
    data: dict[str, Any] = {
        "url": url,
        "method": method,
        "status": status,
        "referer": redact_query_url(info.referer)[:MAX_TEXT],
        "userAgent": info.user_agent[:MAX_TEXT],
        "auth": info.auth_collection,
    }
    if log_ip:
        data["userIP"] = data["remoteIP"] = info.ip
    level = "error" if status >= 500 else "warning" if status >= 400 else "info"
    shape = _Shape(
        clean(orjson.dumps(data).decode())[1:-1],
        clean(_message(method, url)),
        f'"level":"{level}",'
        f'"msg":{orjson.dumps(f"{method} {info.path} {status}").decode()},'
        f'"route":{orjson.dumps(info.route).decode()}',
        ERROR if status >= 400 else INFO,
        recorded(info),
    )
    if len(_shapes) >= _MAX_SHAPES:
        _shapes.clear()
    _shapes[key] = shape
    return shape


def _json_text(value: str) -> str:
    """A JSON string literal (the fast path: nothing to escape, as in our own ids)."""
    if value.isascii() and value.encode().isalnum():  # bytes': a table, not Unicode's
        return f'"{value}"'
    return orjson.dumps(value).decode()


def render_requests(
    infos: Iterable[RequestInfo], options: Options, line: bool = True
) -> tuple[list[str], list[Row]]:
    """The requests' stdout lines (with `line`) and their `_logs` rows (those recorded
    under `options`), each from one serialized object.

    The hot loop of the request logs (every request passes here once), hence written for
    speed: what requests alike share is serialized once (`_Shape`), the time's text once
    per millisecond, and a line is one f-string of the rest."""
    lines: list[str] = []
    rows: list[Row] = []
    if not (line or options.enabled):
        return lines, rows
    log_ip, log_auth_id = options.log_ip, options.log_auth_id
    rows_on, min_level = options.enabled, options.min_level
    shapes = _shapes
    last_ms = last_second = -1
    iso = pb = prefix = iso_second = pb_second = ""
    for info in infos:
        key = (
            info.method, info.path, info.query, info.status, info.referer, info.user_agent,
            info.auth_collection, info.route, info.ip if log_ip else "",
        )  # fmt: skip
        shape = shapes.get(key) or _new_shape(info, key, log_ip)
        row_wanted = rows_on and shape.recorded and shape.level >= min_level
        if not (line or row_wanted):
            continue
        ms = int((info.started + info.duration) * 1000)  # when it ended
        if ms != last_ms:
            second, fraction = divmod(ms, 1000)
            if second != last_second:
                pb_second, iso_second = second_texts(second)
                last_second = second
            iso = f"{iso_second}.{fraction:03d}Z"
            pb = f"{pb_second}.{fraction:03d}Z"
            prefix = ""  # made for the first row of the millisecond
            last_ms = ms
        ms_taken = info.duration * 1000
        auth_id = info.auth_id
        if line:
            rid = info.request_id
            rid = f'"{rid}"' if rid.isascii() and rid.encode().isalnum() else _json_text(rid)
            if auth_id:
                rid += f',"authId":{_json_text(auth_id)}'
            if not log_ip:
                rid += f',"userIP":{_json_text(info.ip)}'
            lines.append(
                f'{{"time":"{iso}",{shape.head},"requestId":{rid},'
                f'"type":"request","execTime":{ms_taken:.6f},{shape.middle}}}'
            )
        if row_wanted:
            data = f'{{"type":"request","execTime":{ms_taken:.6f},{shape.middle}'
            if auth_id and log_auth_id:
                data += f',"authId":{_json_text(auth_id)}}}'
            else:
                data += "}"
            if not prefix:
                prefix = id_prefix(ms)
            rows.append((prefix + id_suffix(), pb, shape.level, shape.message, data))
    return lines, rows


def render_request(
    info: RequestInfo, options: Options, line: bool = True
) -> tuple[str | None, Row | None]:
    """One request's stdout line (with `line`) and its `_logs` row (None: not recorded
    under `options`): `render_requests` of one."""
    lines, rows = render_requests((info,), options, line)
    return (lines[0] if lines else None), (rows[0] if rows else None)


@lru_cache(maxsize=1024)
def _message(method: str, url: str) -> str:
    """PocketBase's message: the method and the unescaped URL (memoized, as the query)."""
    try:
        return f"{method} {unquote(url, errors='strict')}"
    except UnicodeDecodeError:
        return f"{method} {url}"


def event_row(record: logging.LogRecord, options: Options) -> Row | None:
    """The `_logs` row of one of Shipyard's own warnings or errors."""
    if not options.enabled:
        return None
    level = ERROR if record.levelno >= logging.ERROR else WARN
    if level < options.min_level:
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
