"""Scrubbing before storage: what an SDK sends may hold credentials, and none of them may
reach the database.

Replaced with "[Filtered]", anywhere in the event (request headers, extra, contexts,
breadcrumbs, frames' local variables): the values of cookies, of `Authorization` and other
auth headers, and of every key that looks like a password, secret, token, API key or
session id; query strings and cookie strings keep their names but lose such values.
"""

from __future__ import annotations

import re
from typing import Any

FILTERED = "[Filtered]"
_SENSITIVE = re.compile(
    r"pass(word|wd)?|secret|token|api[-_]?key|apikey|authoriz|^auth$|x[-_]auth|sentry[-_]auth|auth[-_]?key|"
    r"credential|cookie|session|"
    r"csrf|xsrf|private[-_]?key|signature|dsn|bearer",
    re.IGNORECASE,
)
_QUERY_PAIR = re.compile(r"(^|[?&;\s])([^=&;\s]+)=([^&;]*)")
_MAX_DEPTH = 30


def sensitive(key: str) -> bool:
    return bool(_SENSITIVE.search(key))


def _scrub_pairs(text: str) -> str:
    """`a=1&token=x` → `a=1&token=[Filtered]` (query strings, cookie headers)."""

    def repl(m: re.Match[str]) -> str:
        return f"{m.group(1)}{m.group(2)}={FILTERED}" if sensitive(m.group(2)) else m.group(0)

    return _QUERY_PAIR.sub(repl, text)


def scrub(value: Any, depth: int = 0) -> Any:
    """A copy of `value` with sensitive values filtered (deeper than 30 levels: dropped)."""
    if depth > _MAX_DEPTH:
        return FILTERED
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            key = str(k)
            if sensitive(key) and v not in (None, "", [], {}):
                out[key] = FILTERED
            else:
                out[key] = scrub(v, depth + 1)
        return out
    if isinstance(value, list):
        # [name, value] pairs (headers, cookies as Sentry sends them in lists)
        if len(value) == 2 and isinstance(value[0], str) and sensitive(value[0]):
            return [value[0], FILTERED]
        return [scrub(v, depth + 1) for v in value]
    return value


def scrub_event(event: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = scrub(event)
    request = out.get("request")
    if isinstance(request, dict):
        if "cookies" in request:
            request["cookies"] = FILTERED
        qs = request.get("query_string")
        if isinstance(qs, str):
            request["query_string"] = _scrub_pairs(qs)
        url = request.get("url")
        if isinstance(url, str) and "?" in url:
            base, _, query = url.partition("?")
            request["url"] = base + "?" + _scrub_pairs(query)
    return out


__all__ = ["FILTERED", "scrub", "scrub_event", "sensitive"]
