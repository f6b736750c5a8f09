"""Reading what Sentry SDKs send: the auth (X-Sentry-Auth, `sentry_key`, the envelope's
`dsn`), compressed bodies (gzip, deflate, br) decompressed under a size limit (a zip bomb
stops at the limit, it is never inflated whole), envelopes and legacy store bodies.

Everything here raises `BadInput` (a 400) or `TooBig` (a 413) on anything it cannot read;
nothing a client sends gets further as an unexpected exception.
"""

from __future__ import annotations

import base64
import re
import zlib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import brotli
import orjson

_CHUNK = 64 * 1024
# the ingestion paths Sentry SDKs post to (the CORS exemption in http/cors.py names them)
INGEST_PATH = re.compile(r"/api/[0-9]{1,18}/(?:envelope|store)/?")
_KEY_RE = re.compile(r"sentry_key\s*=\s*([^,\s]+)", re.IGNORECASE)
_HEX32 = re.compile(r"[0-9a-f]{32}")


class BadInput(ValueError):
    """The body or its headers cannot be read (a 400)."""


class TooBig(ValueError):
    """The body, once decompressed, is over the limit (a 413)."""


def key_from_auth_header(value: str) -> str:
    """The public key of an `X-Sentry-Auth` (or `Authorization: Sentry …`) header value."""
    m = _KEY_RE.search(value)
    return m.group(1).strip().strip('"') if m else ""


def key_from_dsn(dsn: Any) -> str:
    if not isinstance(dsn, str):
        return ""
    try:
        return urlsplit(dsn).username or ""
    except ValueError:
        return ""


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """`body` decoded per its Content-Encoding, never past `limit` bytes of output."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        out = body
    elif encoding in ("gzip", "x-gzip"):
        out = _inflate(body, zlib.MAX_WBITS | 16, limit)
    elif encoding == "deflate":
        try:
            out = _inflate(body, zlib.MAX_WBITS, limit)  # zlib-wrapped, as the RFC says
        except BadInput:
            out = _inflate(body, -zlib.MAX_WBITS, limit)  # raw deflate, as some clients send
    elif encoding == "br":
        out = _unbrotli(body, limit)
    else:
        raise BadInput(f"Unsupported Content-Encoding {encoding[:40]!r} (gzip, deflate, br).")
    if len(out) > limit:
        raise TooBig(f"The decompressed body is over the limit of {limit} bytes.")
    return out


def _inflate(body: bytes, wbits: int, limit: int) -> bytes:
    d = zlib.decompressobj(wbits)
    parts: list[bytes] = []
    size = 0
    data = body
    try:
        while data:
            chunk = d.decompress(data, _CHUNK)
            size += len(chunk)
            if size > limit:
                raise TooBig(f"The decompressed body is over the limit of {limit} bytes.")
            parts.append(chunk)
            data = d.unconsumed_tail
        rest = d.flush()
    except zlib.error as exc:
        raise BadInput(f"The body is not valid compressed data: {exc}.") from None
    size += len(rest)
    if size > limit:
        raise TooBig(f"The decompressed body is over the limit of {limit} bytes.")
    if not d.eof:
        raise BadInput("The compressed body is truncated.")
    parts.append(rest)
    return b"".join(parts)


def _unbrotli(body: bytes, limit: int) -> bytes:
    d = brotli.Decompressor()
    parts: list[bytes] = []
    size = 0
    try:
        chunk = d.process(body, output_buffer_limit=_CHUNK)
        while True:
            size += len(chunk)
            if size > limit:
                raise TooBig(f"The decompressed body is over the limit of {limit} bytes.")
            parts.append(chunk)
            if d.is_finished() or d.can_accept_more_data():
                break
            chunk = d.process(b"", output_buffer_limit=_CHUNK)
    except brotli.error as exc:
        raise BadInput(f"The body is not valid brotli data: {exc}.") from None
    if not d.is_finished():
        raise BadInput("The brotli body is truncated.")
    return b"".join(parts)


@dataclass
class Envelope:
    headers: dict[str, Any]
    items: list[tuple[dict[str, Any], bytes]] = field(default_factory=list)

    def events(self) -> list[dict[str, Any]]:
        """The error events it carries (type `event`; transactions, sessions, attachments
        and client reports are accepted and dropped)."""
        out = []
        for header, payload in self.items:
            if header.get("type") == "event":
                out.append(parse_event(payload))
        return out


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadInput(f"The {what} is not valid JSON.") from None
    if not isinstance(value, dict):
        raise BadInput(f"The {what} is not a JSON object.")
    return value


def parse_envelope(body: bytes) -> Envelope:
    """Sentry's envelope: a header line, then items (a header line and a payload, of
    `length` bytes or up to the next newline)."""
    first, sep, rest = body.partition(b"\n")
    if not first.strip():
        raise BadInput("The envelope has no header.")
    env = Envelope(_json_object(first, "envelope header"))
    pos = 0
    n = len(rest) if sep else 0
    while pos < n:
        end = rest.find(b"\n", pos)
        line = rest[pos:] if end < 0 else rest[pos:end]
        pos = n if end < 0 else end + 1
        if not line.strip():
            continue
        header = _json_object(line, "envelope item header")
        length = header.get("length")
        if length is not None:
            if not isinstance(length, int) or isinstance(length, bool) or length < 0:
                raise BadInput("An envelope item's length is not a non-negative integer.")
            if pos + length > n:
                raise BadInput("An envelope item is shorter than its length.")
            payload = rest[pos : pos + length]
            pos += length
            if pos < n and rest[pos : pos + 1] == b"\n":
                pos += 1
        else:
            end = rest.find(b"\n", pos)
            payload = rest[pos:] if end < 0 else rest[pos:end]
            pos = n if end < 0 else end + 1
        env.items.append((header, payload))
    return env


def parse_event(payload: bytes) -> dict[str, Any]:
    return _json_object(payload, "event")


def parse_store(body: bytes, limit: int) -> dict[str, Any]:
    """A legacy store body: JSON, or (very old SDKs) base64 of zlib-compressed JSON."""
    stripped = body.lstrip()
    if stripped[:1] == b"{":
        return parse_event(stripped)
    try:
        raw = base64.b64decode(stripped, validate=False)
    except ValueError:
        raise BadInput("The event is not valid JSON.") from None
    return parse_event(_inflate(raw, zlib.MAX_WBITS, limit))


def event_id(value: Any) -> str:
    """A 32-hex event id from what the SDK sent (dashes allowed), or "" when it is not one."""
    if isinstance(value, str):
        v = value.replace("-", "").lower()
        if _HEX32.fullmatch(v):
            return v
    return ""


__all__ = [
    "INGEST_PATH",
    "BadInput",
    "Envelope",
    "TooBig",
    "decompress",
    "event_id",
    "key_from_auth_header",
    "key_from_dsn",
    "parse_envelope",
    "parse_event",
    "parse_store",
]
