"""A package's own small static files (a page's CSS, script and icon), served from memory
as a CDN origin should: each file under its name (`no-cache`, revalidated by ETag) and
under a fingerprinted one (`account.3f9c2d1e0a.css`, cached for a year, `immutable`),
brotli and gzip made once at start-up and chosen by `Accept-Encoding`.

Pages reference `files.url("account.css")`, so a new release's browsers never run an old
script from their cache. For a directory of a team's files use tools/staticfiles.py.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import brotli
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from shipyard.tools.assetbuild import COMPRESSIBLE, MIN_COMPRESS, fingerprinted_name
from shipyard.tools.staticfiles import (
    IMMUTABLE,
    REVALIDATE,
    choose_encoding,
    media_type,
    not_modified,
)

MAX_FILE = 1 << 20  # bytes: larger files belong in a directory served from disk


@dataclass
class _File:
    media_type: str
    immutable: bool
    bodies: dict[str, bytes] = field(default_factory=dict)  # coding → bytes
    etags: dict[str, str] = field(default_factory=dict)


def _etag(data: bytes) -> str:
    return f'"{hashlib.blake2b(data, digest_size=12).hexdigest()}"'


def _route_path(scope: Scope) -> str:
    """The path below the Mount (Starlette's scope keeps the full path)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


class PackedFiles:
    """An ASGI app (for a Mount) over the files directly inside `directory`."""

    def __init__(self, directory: Path) -> None:
        self.names: dict[str, str] = {}  # name → fingerprinted name
        self.files: dict[str, _File] = {}
        for path in sorted(directory.iterdir()):
            if not path.is_file() or path.name.startswith("."):
                continue
            data = path.read_bytes()
            if len(data) > MAX_FILE:
                raise ValueError(f"{path}: over {MAX_FILE} bytes; serve it from disk")
            bodies = {"identity": data}
            if path.suffix.lower() in COMPRESSIBLE and len(data) >= MIN_COMPRESS:
                for coding, body in (
                    ("br", brotli.compress(data, quality=11)),
                    ("gzip", gzip.compress(data, compresslevel=9, mtime=0)),
                ):
                    if len(body) < len(data):
                        bodies[coding] = body
            etags = {coding: _etag(body) for coding, body in bodies.items()}
            fp = fingerprinted_name(path.name, data)
            self.names[path.name] = fp
            kind = media_type(path.name)
            self.files[path.name] = _File(kind, False, bodies, etags)
            self.files[fp] = _File(kind, True, bodies, etags)

    def url(self, name: str) -> str:
        """The fingerprinted name of `name` (relative: the caller adds its mount path)."""
        return self.names[name]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            raise HTTPException(405, headers={"Allow": "GET, HEAD"})
        f = self.files.get(_route_path(scope).lstrip("/"))
        if f is None:
            raise HTTPException(404)
        headers = Headers(scope=scope)
        codings = tuple(c for c in ("br", "gzip") if c in f.bodies)
        coding = choose_encoding(headers.get("accept-encoding", ""), codings)
        out = {
            "cache-control": IMMUTABLE if f.immutable else REVALIDATE,
            "etag": f.etags[coding],
            "x-content-type-options": "nosniff",
        }
        if codings:
            out["vary"] = "Accept-Encoding"
        if not_modified(headers, out["etag"], None):
            response = Response(status_code=304, headers=out)
        else:
            if coding != "identity":
                out["content-encoding"] = coding
            body = f.bodies[coding]
            head = scope["method"] == "HEAD"
            response = Response(b"" if head else body, headers=out, media_type=f.media_type)
            response.headers["content-length"] = str(len(body))
        await response(scope, receive, send)


__all__ = ["PackedFiles"]
