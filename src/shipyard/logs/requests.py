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
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
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


class _Shape:
    """What requests alike share, serialized once: most clients repeat a few requests.
    A slotted class, not a NamedTuple: its fields are read for every request, and the
    interpreter reads a slot faster than a tuple's named item."""

    __slots__ = ("head", "level", "message", "middle", "recorded", "tail")

    def __init__(self, middle: str, message: str, head: str, level: int, recorded: bool) -> None:
        self.middle = middle  # the data object's members after execTime
        self.message = message  # PocketBase's message
        self.head = head  # the stdout line's "level", "msg" and "route" members
        self.tail = f",{middle}}}\n"  # the stdout line's end: the members after execTime
        self.level = level  # PocketBase's level
        self.recorded = recorded  # whether `_logs` records it at all (`recorded`)


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


_EXEC = ',"type":"request","execTime":'  # between the request id and execTime
_EXEC_QUOTED = '"' + _EXEC  # the same after a plain id (the id's closing quote)


def _plain_ids(infos: Sequence[RequestInfo]) -> bool:
    """Whether every request id is a JSON string as it is (quotes around it, nothing to
    escape: our own hex ids, a client's UUIDs), checked for the whole batch in C: orjson
    writes each such id's characters as they are, so its text is exactly that long."""
    ids = [info.request_id for info in infos]
    try:
        return len(orjson.dumps(ids)) == sum(map(len, ids)) + 3 * len(ids) + 1
    except TypeError:  # a lone surrogate: not even UTF-8
        return False


def _ms_texts(ms: int) -> tuple[str, str]:
    """A millisecond (since the epoch) as RFC 3339 and as PocketBase's date text."""
    second, fraction = divmod(ms, 1000)
    pb_second, iso_second = second_texts(second)  # formatted once per second
    return f"{iso_second}.{fraction:03d}Z", f"{pb_second}.{fraction:03d}Z"


def _id_members(info: RequestInfo, log_ip: bool) -> str:
    """A line's `requestId` value, then `authId` (a user's request) and `userIP` (when
    `_logs` leaves it out of the shared members)."""
    out = _json_text(info.request_id)
    if info.auth_id:
        out += f',"authId":{_json_text(info.auth_id)}'
    if not log_ip:
        out += f',"userIP":{_json_text(info.ip)}'
    return out


def render_batch(
    infos: Sequence[RequestInfo], options: Options, line: bool = True
) -> tuple[bytes, int, list[Row]]:
    """The requests' stdout lines (with `line`) as the writer takes them (UTF-8, each
    ending with a newline) and how many, and their `_logs` rows (those recorded under
    `options`), each from one serialized object (`_Shape`)."""
    if not (line or options.enabled):
        return b"", 0, []
    shapes = _shapes_of(infos, options.log_ip)
    data, n = _lines(infos, shapes, options.log_ip) if line else (b"", 0)
    return data, n, _rows(infos, shapes, options) if options.enabled else []


def _shapes_of(infos: Sequence[RequestInfo], log_ip: bool) -> list[_Shape]:
    """Each request's `_Shape`, looked up once for its line and its row alike."""
    shapes = _shapes
    out: list[_Shape] = []
    last_key: tuple[Any, ...] = ()  # never a key: the first request looks its shape up
    shape: _Shape
    for info in infos:
        key = (
            info.method, info.path, info.query, info.status, info.referer, info.user_agent,
            info.auth_collection, info.route, info.ip if log_ip else "",
        )  # fmt: skip
        # the previous request's shape, most often: compared, not hashed (a server's
        # strings are new objects, their hashes not computed yet)
        if key != last_key:
            shape = shapes.get(key) or _new_shape(info, key, log_ip)
            last_key = key
        out.append(shape)
    return out


def _lines(infos: Sequence[RequestInfo], shapes: list[_Shape], log_ip: bool) -> tuple[bytes, int]:
    """The stdout lines of a batch, and how many. The hot loop of the request logs (every
    request passes here once), hence written for speed: what requests alike share is
    serialized once (`_Shape`), the line's start once per millisecond and shape, the
    request ids checked once per batch, the execTimes formatted all at once, and a line
    is five pieces joined with all the others once, at the end."""
    # a line's id in quotes, with nothing after it: ours are, unless `_logs` omits the IP
    plain = log_ip and _plain_ids(infos)
    parts: list[Any] = []  # each line's five pieces: strings, its execTime a float till the end
    last_shape: _Shape | None = None  # the shape `start` was made for
    lo = hi = -1.0  # the millisecond `start` was made for: [lo, hi) in ms since the epoch
    iso = start = start_quoted = ""
    for info, shape in zip(infos, shapes, strict=True):
        duration = info.duration
        end = (info.started + duration) * 1000.0  # when it ended
        if not lo <= end < hi or shape is not last_shape:
            if not lo <= end < hi:  # (two comparisons cost less than int())
                ms = int(end)
                lo = float(ms)
                hi = lo + 1.0
                iso = _ms_texts(ms)[0]
            start = f'{{"time":"{iso}",{shape.head},"requestId":'
            start_quoted = start + '"'
            last_shape = shape
        if plain and not info.auth_id:
            parts += (start_quoted, info.request_id, _EXEC_QUOTED, duration * 1000.0, shape.tail)
        else:
            parts += (start, _id_members(info, log_ip), _EXEC, duration * 1000.0, shape.tail)
    n = len(parts) // 5
    if n:  # one formatting for the batch: "%.6f" % x is f"{x:.6f}"
        parts[3::5] = ("%.6f " * n % tuple(parts[3::5])).split()
    return "".join(parts).encode("utf-8", "replace"), n


def _rows(infos: Sequence[RequestInfo], shapes: list[_Shape], options: Options) -> list[Row]:
    """The `_logs` rows of a batch: those recorded under `options` (see `_lines`)."""
    log_auth_id, min_level = options.log_auth_id, options.min_level
    rows: list[Row] = []
    lo = hi = -1.0  # the millisecond whose texts are made, [lo, hi) in ms since the epoch
    pb = prefix = ""
    for info, shape in zip(infos, shapes, strict=True):
        if not (shape.recorded and shape.level >= min_level):
            continue
        end = (info.started + info.duration) * 1000.0  # when it ended
        if not lo <= end < hi:
            ms = int(end)
            lo = float(ms)
            hi = lo + 1.0
            pb = _ms_texts(ms)[1]
            prefix = id_prefix(ms)
        data = f'{{"type":"request","execTime":{info.duration * 1000.0:.6f},{shape.middle}'
        if info.auth_id and log_auth_id:
            data += f',"authId":{_json_text(info.auth_id)}}}'
        else:
            data += "}"
        rows.append((prefix + id_suffix(), pb, shape.level, shape.message, data))
    return rows


def render_requests(
    infos: Sequence[RequestInfo], options: Options, line: bool = True
) -> tuple[list[str], list[Row]]:
    """`render_batch` with the lines apart (tests, benchmarks)."""
    data, _, rows = render_batch(infos, options, line)
    return data.decode().split("\n")[:-1], rows


def render_request(
    info: RequestInfo, options: Options, line: bool = True
) -> tuple[str | None, Row | None]:
    """One request's stdout line (with `line`) and its `_logs` row (None: not recorded
    under `options`): `render_batch` of one."""
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
