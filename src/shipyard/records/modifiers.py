"""What a write body says beyond plain values: PocketBase's modifiers (`field+`, `+field`,
`field-`), multipart strings for JSON fields, and text fields' autogenerate patterns."""

from __future__ import annotations

import re
import secrets
from typing import Any

import orjson

from shipyard.kernel.errors import FieldError, validation_failed
from shipyard.kernel.uploads import Upload
from shipyard.records.collections import Collection
from shipyard.records.fields import Field, TextField


def coerce_multipart(f: Field, value: Any) -> Any:
    """Multipart values arrive as strings; JSON fields get their JSON parsed when it is JSON."""
    if f.type == "json" and isinstance(value, str):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def apply_modifiers(  # noqa: C901  (one branch per modifier (+, -, append, prepend, remove))
    c: Collection, body: dict[str, Any], old: dict[str, Any] | None
) -> dict[str, Any]:
    """PocketBase's `field+` / `+field` (append, prepend) and `field-` (remove) for multi-valued
    fields, and `number+`/`number-` (increment) for numbers."""
    if not any(k.endswith(("+", "-")) or k.startswith("+") for k in body):
        return body
    out = {k: v for k, v in body.items() if not (k.endswith(("+", "-")) or k.startswith("+"))}
    for key, value in body.items():
        if key.startswith("+"):
            name, op = key[1:], "prepend"
        elif key.endswith("+"):
            name, op = key[:-1], "append"
        elif key.endswith("-"):
            name, op = key[:-1], "remove"
        else:
            continue
        f = c.field(name)
        if f is None:
            continue
        current = out.get(name, (old or {}).get(name, f.zero()))
        if f.type == "number":
            try:
                delta = float(value)
                base = float(current or 0)
                if isinstance(value, bool) or isinstance(current, bool):
                    raise TypeError(value)
            except (TypeError, ValueError):
                raise validation_failed(
                    "Failed to save record.",
                    {
                        name: FieldError(
                            "validation_not_a_number",
                            "The submitted number is not properly formatted",
                        )
                    },
                ) from None
            out[name] = base + (-delta if op == "remove" else delta)
            continue
        cur = current if isinstance(current, list) else ([current] if current else [])
        items = value if isinstance(value, list) else [value]
        kinds = (str, Upload) if f.type == "file" else (str,)
        if not all(isinstance(i, kinds) for i in [*items, *cur]):
            raise validation_failed(
                "Failed to save record.",
                {name: FieldError("validation_invalid_value", "Values must be strings.")},
            )
        if op == "append":
            out[name] = cur + [i for i in items if i not in cur]
        elif op == "prepend":  # as PocketBase: the given values first, then the rest
            out[name] = list(dict.fromkeys([*items, *cur]))
        else:
            out[name] = [i for i in cur if i not in items]
    return out


def names_only(values: dict[str, Any]) -> dict[str, Any]:
    """`values` with each upload replaced by its stored name (what rules and the database
    see), as a new dict."""

    def name(v: Any) -> Any:
        return v.name if isinstance(v, Upload) else v

    return {k: [name(i) for i in v] if isinstance(v, list) else name(v) for k, v in values.items()}


def uploads_by_field(c: Collection, body: dict[str, Any]) -> dict[str, list[Upload]]:
    """The new files of a request body by file field (`f`, `f+` and `+f` alike)."""
    out: dict[str, list[Upload]] = {}
    for f in c.fields:
        if f.type != "file":
            continue
        for key in (f.name, f"{f.name}+", f"+{f.name}"):
            v = body.get(key)
            got = [i for i in (v if isinstance(v, list) else [v]) if isinstance(i, Upload)]
            if got:
                out.setdefault(f.name, []).extend(got)
    return out


def holds_upload(v: Any) -> bool:
    """Whether one body value is, or lists, an upload (the common case: neither, at once)."""
    if isinstance(v, list):
        return any(isinstance(i, Upload) for i in v)
    return isinstance(v, Upload)


def uploads_in(values: dict[str, Any]) -> list[Upload]:
    out: list[Upload] = []
    for v in values.values():
        out.extend(i for i in (v if isinstance(v, list) else [v]) if isinstance(i, Upload))
    return out


_CLASS_RE = re.compile(r"^\[([^\]]+)\]\{(\d+)\}$")


def autogenerate(f: TextField) -> str:
    pattern = f.options.get("autogeneratePattern") or ""
    m = _CLASS_RE.match(pattern)
    if not m:
        return ""
    chars = ""
    spec = m.group(1)
    i = 0
    while i < len(spec):
        if i + 2 < len(spec) and spec[i + 1] == "-":
            chars += "".join(chr(x) for x in range(ord(spec[i]), ord(spec[i + 2]) + 1))
            i += 3
        else:
            chars += spec[i]
            i += 1
    return "".join(secrets.choice(chars) for _ in range(int(m.group(2))))
