"""Fuzz the request body decoders: JSON, multipart and urlencoded bodies (kernel/web.py
parse_body, through Starlette and python-multipart) and what Sentry SDKs send to the error
ingestion (errors/envelope.py: decompression, envelopes, store bodies).

The first byte of an input picks the decoder, the second how the body arrives (with or
without Content-Length, in one chunk or two); the rest is the body. The only allowed
failures are the documented ones: an ApiError 400 or 413 from parse_body, BadInput or
TooBig from the envelope reader. Anything else is a crash.

    python fuzz/fuzz_body.py -max_total_time=600 fuzz/corpus/body   # a longer run
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from types import SimpleNamespace
from typing import Any

import atheris

with atheris.instrument_imports(include=["shipyard", "starlette", "multipart", "python_multipart"]):
    from starlette.requests import Request

    from shipyard.errors.envelope import (
        BadInput,
        TooBig,
        decompress,
        event_id,
        key_from_auth_header,
        parse_envelope,
        parse_event,
        parse_store,
    )
    from shipyard.kernel.errors import ApiError
    from shipyard.kernel.web import parse_body
    from shipyard.settings import Settings

LIMIT = 2048  # small, so that the 413 and decompression limits are reached too
CONTENT_TYPES = (
    b"application/json",
    b"multipart/form-data; boundary=XyZ",
    b"application/x-www-form-urlencoded",
    b"",
)
ENCODINGS = ("gzip", "deflate", "br", "identity")
# parse_body reads only the settings of the services the app holds
APP = SimpleNamespace(
    state=SimpleNamespace(services=SimpleNamespace(settings=Settings(max_body_size=LIMIT)))
)
LOOP = asyncio.new_event_loop()
logging.disable(logging.CRITICAL)  # python-multipart logs each malformed part it meets


def _request(ctype: bytes, body: bytes, how: int) -> Request:
    headers = [(b"content-type", ctype)] if ctype else []
    if how % 3 == 1:
        headers.append((b"content-length", str(len(body)).encode()))
    elif how % 3 == 2:
        headers.append((b"content-length", body[:4]))  # whatever the client claims
    half = len(body) // 2 if how & 4 else len(body)
    chunks = [body[:half], body[half:]]

    async def receive() -> dict[str, Any]:
        chunk = chunks.pop(0) if chunks else b""
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "query_string": b"",
        "headers": headers,
        "app": APP,
    }
    return Request(scope, receive)


def _form_or_json(ctype: bytes, body: bytes, how: int) -> None:
    try:
        data = LOOP.run_until_complete(parse_body(_request(ctype, body, how)))
    except ApiError as exc:
        if exc.status not in (400, 413):
            raise
        return
    if not isinstance(data, dict):
        raise TypeError(f"parse_body returned {type(data).__name__}")


def _ingest(body: bytes, how: int) -> None:
    try:
        key_from_auth_header(body[:200].decode("latin-1"))
        raw = decompress(body, ENCODINGS[how % 4], LIMIT) if how & 8 else body
        env = parse_envelope(raw)
        event_id(env.headers.get("event_id"))
        for _header, payload in env.items:
            parse_event(payload)
        env.events()
    except (BadInput, TooBig):
        pass
    with contextlib.suppress(BadInput, TooBig):
        parse_store(body, LIMIT)


def test_one(data: bytes) -> None:
    if len(data) < 2:
        return
    kind, how, body = data[0] % 5, data[1], data[2:]
    if kind == 4:
        _ingest(body, how)
    else:
        _form_or_json(CONTENT_TYPES[kind], body, how)


def main() -> None:
    atheris.Setup(sys.argv, test_one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
