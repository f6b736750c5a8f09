"""What an event is about: its title, culprit and level, the user it affected, and the
fingerprint that groups it into an issue.

Grouping follows Sentry's rules, simplified:
1. the SDK's `fingerprint`, where `{{ default }}` stands for the default grouping below;
2. else the exception types (every exception of a chain) plus the in-app frames, each as
   module (or file) and function, never line numbers, so an edit elsewhere in the file
   keeps the issue; without in-app frames, all frames;
3. else the message (the template when the SDK sent one), with numbers, hex ids and UUIDs
   replaced, so "order 17 failed" and "order 18 failed" are one issue.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import orjson

_DEFAULT_RE = re.compile(r"\{\{\s*default\s*\}\}")
_UUID = re.compile(
    r"\b[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}\b"
)
_HEX = re.compile(r"\b(?:0x)?[0-9a-fA-F]{8,}\b")
_NUM = re.compile(r"\d+(?:\.\d+)?")
_URL_TAIL = re.compile(r"[?#].*$")
LEVELS = ("fatal", "error", "warning", "info", "debug")


@dataclass(frozen=True, slots=True)
class Grouping:
    fingerprint: str  # sha256 hex of the components
    title: str
    culprit: str
    type: str  # the exception type, or "" for a message
    level: str


def exceptions(event: dict[str, Any]) -> list[dict[str, Any]]:
    """The event's exception values (innermost last), whatever shape the SDK used."""
    exc = event.get("exception")
    values = exc.get("values") if isinstance(exc, dict) else exc
    if not isinstance(values, list):
        return []
    return [v for v in values if isinstance(v, dict)]


def frames_of(exc: dict[str, Any]) -> list[dict[str, Any]]:
    st = exc.get("stacktrace")
    frames = st.get("frames") if isinstance(st, dict) else None
    if not isinstance(frames, list):
        return []
    return [f for f in frames if isinstance(f, dict)]


def _text(value: Any, limit: int = 512) -> str:
    return value[:limit] if isinstance(value, str) else ""


def message_of(event: dict[str, Any], template: bool = False) -> str:
    """The event's message: `logentry` / `message` (the template with `template`)."""
    for key in ("logentry", "message"):
        value = event.get(key)
        if isinstance(value, dict):
            text = _text(value.get("message")) if template else ""
            text = text or _text(value.get("formatted")) or _text(value.get("message"))
            if text:
                return text
        elif isinstance(value, str) and value:
            return value[:512]
    return ""


def normalize_message(text: str) -> str:
    text = _UUID.sub("<uuid>", text)
    text = _HEX.sub("<hex>", text)
    return _NUM.sub("<n>", text)


def _frame_key(frame: dict[str, Any]) -> str:
    where = _text(frame.get("module")) or _URL_TAIL.sub("", _text(frame.get("filename")))
    return f"{where}:{_text(frame.get('function'), 200)}"


def default_components(event: dict[str, Any]) -> list[str]:
    values = exceptions(event)
    if values:
        out: list[str] = []
        for exc in values:
            out.append("type:" + (_text(exc.get("type"), 200) or "Error"))
            frames = frames_of(exc)
            in_app = [f for f in frames if f.get("in_app") is True]
            out += [_frame_key(f) for f in (in_app or frames)]
        if len(out) > len(values):  # some frames: the types and frames say enough
            return out
        # no stack trace at all: the types and the (normalised) values
        return out + [normalize_message(_text(e.get("value"))) for e in values]
    msg = message_of(event, template=True)
    if msg:
        return ["message:" + normalize_message(msg)]
    return ["empty:" + _text(event.get("platform"), 40)]


def components(event: dict[str, Any]) -> list[str]:
    fp = event.get("fingerprint")
    if isinstance(fp, list) and fp and all(isinstance(p, (str, int, float)) for p in fp):
        out: list[str] = []
        for part in fp[:50]:
            text = str(part)[:512]
            if _DEFAULT_RE.fullmatch(text.strip()):
                out += default_components(event)
            else:
                out.append("fp:" + text)
        return out
    return default_components(event)


def _culprit(event: dict[str, Any]) -> str:
    for exc in reversed(exceptions(event)):
        frames = frames_of(exc)
        in_app = [f for f in frames if f.get("in_app") is True] or frames
        if in_app:
            f = in_app[-1]
            where = _text(f.get("module")) or _text(f.get("filename"))
            fn = _text(f.get("function"))
            return f"{where} in {fn}" if fn else where
    return _text(event.get("culprit")) or _text(event.get("transaction"))


def level_of(event: dict[str, Any]) -> str:
    level = event.get("level")
    if level == "warn":
        return "warning"
    return level if isinstance(level, str) and level in LEVELS else "error"


def group(event: dict[str, Any]) -> Grouping:
    parts = components(event)
    digest = hashlib.sha256(orjson.dumps(parts)).hexdigest()
    values = exceptions(event)
    if values:
        last = values[-1]
        etype = _text(last.get("type"), 200) or "Error"
        value = _text(last.get("value"))
        title = f"{etype}: {value}" if value else etype
    else:
        etype = ""
        title = message_of(event) or "<unlabeled event>"
    title = title.splitlines()[0][:300] if title.strip() else "<unlabeled event>"
    return Grouping(digest, title, _culprit(event)[:300], etype, level_of(event))


def user_key(event: dict[str, Any], client_ip: str) -> str:
    """Who the event affected (id, else e-mail, else username, else IP), or ""."""
    user = event.get("user")
    if not isinstance(user, dict):
        return ""
    for key in ("id", "email", "username", "ip_address"):
        value = user.get(key)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value):
            text = str(value)
            if key == "ip_address" and text == "{{auto}}":
                text = client_ip
            if text:
                return f"{key}:{text[:200]}"
    return ""


__all__ = [
    "LEVELS",
    "Grouping",
    "components",
    "exceptions",
    "group",
    "normalize_message",
    "user_key",
]
