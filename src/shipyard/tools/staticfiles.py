"""A directory of static files served as a CDN origin should serve them.

- Paths are resolved inside the root or not at all: `..`, dot-files (but `.well-known`),
  backslashes, NUL and symbolic links that lead out of the root answer nothing.
- Precompressed siblings (`app.css.br`, `app.css.gz`, written by tools/assetbuild.py) are
  chosen by the request's `Accept-Encoding` (its q-values; brotli before gzip on a tie),
  with `Vary: Accept-Encoding`; nothing is compressed per request.
- Files named in the directory's `manifest.json` (fingerprinted: their name changes with
  their content) are `public, max-age=31536000, immutable`; everything else, HTML first,
  is `no-cache` with an ETag, so browsers and CDNs revalidate and get a 304.
- The ETag is a hash of the representation's bytes (the same on every machine that has
  the same file), computed once per file version, off the event loop.
- A missing page — a path whose last segment has no extension — answers the root's
  `index.html` when `index_fallback` is on (single-page apps), like PocketBase's
  `--indexFallback`; a missing `app.js` stays a 404.

Files are streamed (Starlette's FileResponse, with Range support), never read whole.
"""

from __future__ import annotations

import asyncio
import hashlib
import mimetypes
import os
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path

import orjson
from starlette.responses import FileResponse, RedirectResponse, Response

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
MANIFEST = "manifest.json"
# what a sibling file's suffix means, in order of preference on equal q-values
ENCODINGS = (("br", ".br"), ("gzip", ".gz"))
_MEMO_MAX = 4096


def safe_join(root: str, rel: str) -> str | None:
    """The real path of `rel` inside the real directory `root`, or None when `rel` could
    reach outside it (or names a hidden file)."""
    if "\x00" in rel or "\\" in rel:
        return None
    parts = [p for p in rel.split("/") if p]
    for p in parts:
        if p in (".", "..") or (p.startswith(".") and p != ".well-known"):
            return None
    real = os.path.realpath(os.path.join(root, *parts))
    if real != root and not real.startswith(root.rstrip(os.sep) + os.sep):
        return None  # a symbolic link that leads out
    return real


def accepted_encodings(header: str) -> dict[str, float]:
    """`Accept-Encoding` → {coding: q}; malformed q-values count as 0."""
    out: dict[str, float] = {}
    for item in header.split(","):
        name, _, params = item.strip().partition(";")
        name = name.strip().lower()
        if not name:
            continue
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    q = max(0.0, min(1.0, float(value)))
                except ValueError:
                    q = 0.0
        out[name] = q
    return out


def choose_encoding(header: str, available: tuple[str, ...]) -> str:
    """The best of `available` codings ("br", "gzip", in order of preference on a tie)
    that `Accept-Encoding` accepts (q > 0), else "identity" (as nginx's gzip_static: a
    precompressed file beats the plain one whenever the client takes it)."""
    accepted = accepted_encodings(header)
    star = accepted.get("*", 0.0)
    ranked = [(accepted.get(c, star), c) for c in available]
    best_q = max((q for q, _ in ranked), default=0.0)
    if best_q <= 0:
        return "identity"
    return next(c for q, c in ranked if q == best_q)


def _etag_matches(header: str, etag: str) -> bool:
    if header.strip() == "*":
        return True
    return any(t.strip().removeprefix("W/") == etag for t in header.split(","))


def not_modified(headers: Mapping[str, str], etag: str, mtime: float | None) -> bool:
    """Whether a conditional GET may get a 304: `If-None-Match` (weak comparison) first,
    else `If-Modified-Since` (when the answer has a modification time)."""
    inm = headers.get("if-none-match")
    if inm is not None:
        return _etag_matches(inm, etag)
    ims = headers.get("if-modified-since")
    if ims and mtime is not None:
        try:
            return int(mtime) <= parsedate_to_datetime(ims).timestamp()
        except (TypeError, ValueError):
            return False
    return False


def media_type(name: str) -> str:
    guessed, _ = mimetypes.guess_type(name)
    if name.endswith((".js", ".mjs")):
        return "text/javascript"  # RFC 9239; older tables say application/javascript
    return guessed or "application/octet-stream"


class Manifest:
    """`manifest.json` of a built directory (logical name → fingerprinted name), re-read
    whenever the file changes, so every process sees a new build at once."""

    def __init__(self, root: Path) -> None:
        self.path = root / MANIFEST
        self._stamp: tuple[int, int] | None = None
        self.names: dict[str, str] = {}
        self.fingerprinted: frozenset[str] = frozenset()

    def current(self) -> Manifest:
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        if stamp != self._stamp:
            self._stamp = stamp
            names: dict[str, str] = {}
            if stamp is not None:
                try:
                    data = orjson.loads(self.path.read_bytes())
                    if isinstance(data, dict):
                        names = {str(k): str(v) for k, v in data.items()}
                except (OSError, orjson.JSONDecodeError):
                    names = {}
            self.names = names
            self.fingerprinted = frozenset(names.values())
        return self

    def url_path(self, name: str) -> str:
        """`/` + the fingerprinted name of `name` (or `name` itself when not built)."""
        name = name.lstrip("/")
        return "/" + self.current().names.get(name, name)


@dataclass(frozen=True)
class _Version:
    path: str
    ino: int
    mtime_ns: int
    size: int


class StaticDirectory:
    def __init__(
        self, root: Path, *, index_fallback: bool = True, headers: Mapping[str, str] | None = None
    ) -> None:
        self.root = os.path.realpath(root)
        self.headers = dict(headers or {})  # added to every answer (a CSP, say)
        self.index_fallback = index_fallback
        self.manifest = Manifest(Path(self.root))
        self._etags: OrderedDict[_Version, str] = OrderedDict()

    async def respond(
        self, rel: str, headers: Mapping[str, str], query: str = ""
    ) -> Response | None:
        """The answer to GET/HEAD of `rel` (the decoded path below the root), or None:
        nothing to serve (the caller answers 404)."""
        real = safe_join(self.root, rel)
        if real is None:
            return None
        if os.path.isdir(real):
            if rel and not rel.endswith("/"):  # relative links inside need the slash
                location = "/" + rel.lstrip("/") + "/" + (f"?{query}" if query else "")
                return RedirectResponse(location, status_code=301)
            real = os.path.join(real, "index.html")
        if not os.path.isfile(real):
            last = rel.rstrip("/").rsplit("/", 1)[-1]
            if not self.index_fallback or "." in last:
                return None
            real = os.path.join(self.root, "index.html")
            if not os.path.isfile(real):
                return None
        return await self._file(real, headers)

    async def _file(self, real: str, headers: Mapping[str, str]) -> Response:
        name = os.path.relpath(real, self.root).replace(os.sep, "/")
        # a sibling is checked like the file itself (it could be a link that leads out)
        available = tuple(
            c
            for c, suffix in ENCODINGS
            if os.path.isfile(real + suffix) and safe_join(self.root, name + suffix) is not None
        )
        coding = choose_encoding(headers.get("accept-encoding", ""), available)
        suffix = dict(ENCODINGS).get(coding, "")
        path = real + suffix
        st = os.stat(path)
        # the time the content changed is the source's: a compressed sibling written a
        # second later must not make the one resource look newer in one coding
        changed = st.st_mtime if path == real else os.stat(real).st_mtime
        fingerprinted = name in self.manifest.current().fingerprinted
        out = {
            "cache-control": IMMUTABLE if fingerprinted else REVALIDATE,
            "etag": await self._etag(path, st),
            "last-modified": formatdate(changed, usegmt=True),
            "x-content-type-options": "nosniff",
            **self.headers,
        }
        if available:
            out["vary"] = "Accept-Encoding"
        if not_modified(headers, out["etag"], changed):
            return Response(status_code=304, headers=out)
        if coding != "identity":
            out["content-encoding"] = coding
        return FileResponse(path, headers=out, media_type=media_type(name), stat_result=st)

    async def _etag(self, path: str, st: os.stat_result) -> str:
        key = _Version(path, st.st_ino, st.st_mtime_ns, st.st_size)
        etag = self._etags.get(key)
        if etag is None:
            etag = await asyncio.to_thread(_hash_file, path)
            self._etags[key] = etag
            if len(self._etags) > _MEMO_MAX:
                self._etags.popitem(last=False)
        return etag


def _hash_file(path: str) -> str:
    h = hashlib.blake2b(digest_size=12)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 16):
            h.update(chunk)
    return f'"{h.hexdigest()}"'


__all__ = [
    "IMMUTABLE",
    "MANIFEST",
    "REVALIDATE",
    "Manifest",
    "StaticDirectory",
    "accepted_encodings",
    "choose_encoding",
    "media_type",
    "not_modified",
    "safe_join",
]
