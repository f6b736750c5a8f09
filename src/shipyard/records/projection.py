"""The `fields` query parameter: pick keys (dot paths, `*`) and `:excerpt(n, ellipsis)`."""

from __future__ import annotations

import html
import re
from functools import lru_cache
from typing import Any

from shipyard.kernel.errors import bad_request
from shipyard.kernel.params import INT64_MAX, parse_int

_EXCERPT = re.compile(
    r"^(?P<name>[^:]+):excerpt\(\s*(?P<n>[0-9]+)\s*(?:,\s*(?P<e>true|false|1|0)\s*)?\)$"
)
_TAGS = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")

Spec = dict[str, Any]


@lru_cache(maxsize=512)
def parse_fields(text: str) -> Spec:
    tree: Spec = {}
    for raw in _split(text):
        path = raw.strip()
        if not path:
            continue
        modifier = None
        m = _EXCERPT.match(path)
        if m:
            path = m.group("name")
            n = parse_int(m.group("n"), "fields parameter (excerpt length)", 1, INT64_MAX)
            modifier = (n, (m.group("e") or "false") in ("true", "1"))
        elif ":" in path:
            raise bad_request(f"Invalid fields parameter: unknown modifier in {raw.strip()!r}.")
        node = tree
        parts = path.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        leaf = node.setdefault(parts[-1], {})
        if modifier:
            leaf["__excerpt__"] = modifier
    return tree


def _split(text: str) -> list[str]:
    """Split on commas outside parentheses (excerpt takes a comma)."""
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return out


def excerpt(value: Any, n: int, ellipsis: bool) -> str:
    text = _SPACE.sub(" ", html.unescape(_TAGS.sub(" ", str(value or "")))).strip()
    if len(text) <= n:
        return text
    return text[:n].rstrip() + ("..." if ellipsis else "")


def _apply(value: Any, spec: Spec) -> Any:
    if "__excerpt__" in spec:
        n, ell = spec["__excerpt__"]
        return excerpt(value, n, ell)
    sub = {k: v for k, v in spec.items() if k != "__excerpt__"}
    if not sub:
        return value
    if isinstance(value, list):
        return [_apply(v, spec) for v in value]
    if isinstance(value, dict):
        return _project(value, sub)
    return value


def _project(obj: dict[str, Any], spec: Spec) -> dict[str, Any]:
    if "*" in spec:
        out = dict(obj)
        for key, sub in spec.items():
            if key != "*" and key in obj:
                out[key] = _apply(obj[key], sub)
        return out
    return {key: _apply(obj[key], sub) for key, sub in spec.items() if key in obj}


def project(record: dict[str, Any], text: str) -> dict[str, Any]:
    return _project(record, parse_fields(text))
