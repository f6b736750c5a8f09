"""Subscription topics as PocketBase names them, and the options a topic carries.

`posts/*` (every record of `posts`, under its list rule), `posts/RECORD_ID` (one record,
under its view rule) and the older bare `posts` (as `posts/*`); the collection may be named
by name or id. Options ride on the topic: `posts/*?options={"query": {...}, "headers":
{...}}` (URL-encoded JSON), and the event a client receives is named by the topic exactly
as it sent it, options included.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import orjson

MAX_TOPICS = 1000  # PocketBase: at most 1000 subscriptions per request
MAX_TOPIC_LENGTH = 2500  # and 2500 characters each


def _text(value: Any) -> str:
    """A query or header value as PocketBase's cast.ToString leaves it."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return orjson.dumps(value).decode()
    return ""


def header_name(name: str) -> str:
    """`X-Token` → `x_token`: headers as rules read them (`@request.headers.x_token`)."""
    return name.strip().lower().replace("-", "_")


@dataclass(frozen=True)
class Topic:
    """One subscription. `raw` names the events sent for it; `base` is what it matches."""

    raw: str
    base: str
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: str) -> Topic:
        base, _, qs = raw.partition("?")
        query: dict[str, str] = {}
        headers: dict[str, str] = {}
        if qs:
            options = parse_qs(qs, keep_blank_values=True).get("options")
            if options:
                try:
                    parsed = orjson.loads(options[0])
                except orjson.JSONDecodeError:
                    parsed = None  # PocketBase ignores options it cannot read
                if isinstance(parsed, dict):
                    q, h = parsed.get("query"), parsed.get("headers")
                    if isinstance(q, dict):
                        query = {str(k): _text(v) for k, v in q.items()}
                    if isinstance(h, dict):
                        headers = {header_name(str(k)): _text(v) for k, v in h.items()}
        return cls(raw, base, query, headers)

    @property
    def key(self) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
        """What makes two subscribers' answers identical (with the same auth and base)."""
        return tuple(sorted(self.query.items())), tuple(sorted(self.headers.items()))


def bases_for(collection_id: str, collection_name: str, record_id: str) -> list[tuple[str, str]]:
    """The topic bases an event on one record reaches, each with the rule it is read under."""
    return [
        (f"{collection_name}/{record_id}", "view"),
        (f"{collection_id}/{record_id}", "view"),
        (f"{collection_name}/*", "list"),
        (f"{collection_id}/*", "list"),
        (collection_name, "list"),
        (collection_id, "list"),
    ]
