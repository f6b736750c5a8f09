"""Values known at compile time: how they become parameters, which type a comparison uses,
LIKE patterns, and PocketBase's date macros.

Types never clash on PostgreSQL: number columns against numeric text compare as numbers,
booleans against 'true'/'false'/1/0 as booleans, anything else as text; JSON values keep
their JSON type on both engines (the number 5 is not the text "5").
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import orjson

from shipyard.records.query.model import NULL, Const, Val

_NUMERIC_RE = re.compile(r"\s*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\s*")


def num_text(value: float | int) -> str:
    f = float(value)
    return str(int(f)) if f.is_integer() and abs(f) < 1e16 else repr(f)


def clean(text: str) -> str:
    """Make any string storable as a parameter on both engines (no NUL, valid UTF-8)."""
    if text.isascii():
        return text.replace("\x00", "") if "\x00" in text else text
    return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


def to_const(value: Any, lower: bool = False) -> Const:
    """A request value (any JSON) as a constant; lists and objects as their JSON text."""
    if value is None:
        return NULL
    if isinstance(value, bool):
        return Const(value)
    if isinstance(value, (int, float)):
        return Const(float(value), num_text(value)) if math.isfinite(value) else NULL
    if isinstance(value, str):
        return Const(clean(value), lower=lower)
    try:
        text = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        text = str(value)
    return Const(clean(text), lower=lower)


# ----------------------------------------------------------------------------- types


def can_convert(c: Const, kind: str) -> bool:
    """Whether a constant has an unambiguous meaning as `kind`."""
    k = c.kind
    if k == kind or kind == "text":
        return k != "null"
    v = c.value
    if kind == "number":
        if k == "bool":
            return True
        if isinstance(v, str) and _NUMERIC_RE.fullmatch(v):
            return math.isfinite(float(v))
        return False
    if kind == "bool":
        if isinstance(v, float):
            return v in (0.0, 1.0)
        return isinstance(v, str) and v.strip().lower() in ("true", "false", "1", "0")
    return False


def convert_const(c: Const, kind: str) -> Any:
    v = c.value
    if kind == "number":
        return float(v) if not isinstance(v, bool) else (1.0 if v else 0.0)  # type: ignore[arg-type]
    if kind == "bool":
        if isinstance(v, str):
            return v.strip().lower() in ("true", "1")
        return bool(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return c.raw or num_text(v)
    return v


def _fallback_kind(a: str, b: str) -> str:
    return "text" if "text" in (a, b) else "number"


def common_kind(a: Val, b: Val) -> str:
    """The type both sides are compared as (see the module docstring)."""
    ka, kb = a.kind, b.kind
    if ka == kb:
        return ka
    if ka == "json":
        return kb
    if kb == "json":
        return ka
    ca, cb = a.const, b.const
    if ca is not None and cb is not None:
        for k in (ka, kb):
            if k != "text" and can_convert(ca, k) and can_convert(cb, k):
                return k
        return "text"
    if ca is not None:
        return kb if can_convert(ca, kb) else _fallback_kind(ka, kb)
    if cb is not None:
        return ka if can_convert(cb, ka) else _fallback_kind(ka, kb)
    return _fallback_kind(ka, kb)


# ----------------------------------------------------------------------------- LIKE


def like_pattern(value: str) -> str:
    """PocketBase's rule: a value without an unescaped `%` means "contains": escape
    `\\ % _` (keeping existing escapes) and wrap it in `%`; otherwise use it as written."""
    prev = ""
    for ch in value:
        if ch == "%" and prev != "\\":
            return _close_escape(value)
        prev = "" if ch == "\\" and prev == "\\" else ch
    out: list[str] = []
    i, n = 0, len(value)
    while i < n:
        ch = value[i]
        if ch == "\\" and i + 1 < n and value[i + 1] in "\\%_":
            out.append(value[i : i + 2])  # already escaped
            i += 2
            continue
        if ch in "\\%_":
            out.append("\\")
        out.append(ch)
        i += 1
    return "%" + "".join(out) + "%"


def _close_escape(pattern: str) -> str:
    """A pattern may not end in a lone escape character (PostgreSQL rejects it)."""
    trailing = len(pattern) - len(pattern.rstrip("\\"))
    return pattern + "\\" if trailing % 2 else pattern


# ----------------------------------------------------------------------------- date macros


def _stamp(dt: datetime) -> Const:
    """A date in the stored format (`format_date`'s, without strftime: this is hot)."""
    return Const(
        f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d} {dt.hour:02d}:{dt.minute:02d}:"
        f"{dt.second:02d}.{dt.microsecond // 1000:03d}Z"
    )


def _count(value: int) -> Const:
    return Const(float(value), str(value))


_DAY_END = timedelta(hours=23, minutes=59, seconds=59, microseconds=999000)


def _day(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def _month_end(now: datetime) -> datetime:
    first = _day(now).replace(day=1)
    return (first + timedelta(days=32)).replace(day=1) - timedelta(days=1) + _DAY_END


# PocketBase's date macros, in UTC: dates as stored text, the rest as numbers
MACROS: dict[str, Callable[[datetime], Const]] = {
    "@now": _stamp,
    "@yesterday": lambda now: _stamp(now - timedelta(days=1)),
    "@tomorrow": lambda now: _stamp(now + timedelta(days=1)),
    "@todayStart": lambda now: _stamp(_day(now)),
    "@todayEnd": lambda now: _stamp(_day(now) + _DAY_END),
    "@monthStart": lambda now: _stamp(_day(now).replace(day=1)),
    "@monthEnd": lambda now: _stamp(_month_end(now)),
    "@yearStart": lambda now: _stamp(_day(now).replace(month=1, day=1)),
    "@yearEnd": lambda now: _stamp(_day(now).replace(month=12, day=31) + _DAY_END),
    "@second": lambda now: _count(now.second),
    "@minute": lambda now: _count(now.minute),
    "@hour": lambda now: _count(now.hour),
    "@weekday": lambda now: _count((now.weekday() + 1) % 7),  # Sunday is 0, as in Go
    "@day": lambda now: _count(now.day),
    "@month": lambda now: _count(now.month),
    "@year": lambda now: _count(now.year),
}
