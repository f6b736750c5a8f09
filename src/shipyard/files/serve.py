"""A stored file as an HTTP response, with PocketBase's headers (inline only for types a
browser shows safely, the sandboxing CSP, a long cache) and HTTP's conditional and Range
requests; the bytes stream from storage in chunks."""

from __future__ import annotations

import asyncio
import os
import re
from email.utils import formatdate, parsedate_to_datetime
from functools import lru_cache

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from shipyard.tools.storage import Stat, Storage

INLINE_TYPES = frozenset(
    [
        "image/png",
        "image/jpg",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "image/avif",  # not in PocketBase's list (it never serves AVIF thumbnails)
        "image/x-icon",
        "image/bmp",
        "video/webm",
        "video/mp4",
        "video/3gpp",
        "video/quicktime",
        "video/x-ms-wmv",
        "audio/basic",
        "audio/aiff",
        "audio/mpeg",
        "audio/midi",
        "audio/mp3",
        "audio/wave",
        "audio/wav",
        "audio/x-wav",
        "audio/x-mpeg",
        "audio/x-m4a",
        "audio/aac",
        "application/pdf",
        "application/x-pdf",
    ]
)
BY_EXTENSION = {  # PocketBase's exceptions to the detected type
    ".svg": "image/svg+xml",
    ".css": "text/css",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
}
CSP = "default-src 'none'; media-src 'self'; style-src 'unsafe-inline'; sandbox"
CACHE = "max-age=2592000, stale-while-revalidate=86400"
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _forced_download(request: Request) -> bool:
    return request.query_params.get("download", "").lower() in ("1", "t", "true")


def headers_for(request: Request, name: str, stat: Stat) -> dict[str, str]:
    ctype = stat.content_type
    inline = not _forced_download(request) and ctype.split(";")[0] in INLINE_TYPES
    dot = name.rfind(".")
    ctype = BY_EXTENSION.get(name[dot:].lower() if dot >= 0 else "", ctype)
    return {
        "Content-Disposition": f'{"inline" if inline else "attachment"}; filename="{name}"',
        "Content-Type": ctype,
        "Content-Security-Policy": CSP,
        "Cache-Control": CACHE,
        "ETag": stat.etag,
        "Last-Modified": http_date(stat.modified),
        "Accept-Ranges": "bytes",
        # files are made to be embedded by apps on other origins (<img src>, <video>): the
        # default `same-origin` would make browsers block them there
        "Cross-Origin-Resource-Policy": "cross-origin",
    }


@lru_cache(maxsize=1024)
def http_date(when: float) -> str:
    """A file's Last-Modified (most downloads are of a few popular files)."""
    return formatdate(when, usegmt=True)


def _not_modified(request: Request, stat: Stat) -> bool:
    inm = request.headers.get("if-none-match")
    if inm is not None:
        tags = [t.strip().removeprefix("W/") for t in inm.split(",")]
        return "*" in tags or stat.etag in tags
    ims = request.headers.get("if-modified-since")
    if ims:
        try:
            return int(stat.modified) <= parsedate_to_datetime(ims).timestamp()
        except (TypeError, ValueError):
            return False
    return False


def _range(request: Request, stat: Stat) -> tuple[int, int] | str | None:
    """(start, end) of a satisfiable single range, None for the whole file, or "bad"."""
    raw = request.headers.get("range")
    if not raw:
        return None
    if_range = request.headers.get("if-range")
    if if_range and if_range.strip() != stat.etag:
        return None
    m = _RANGE.match(raw.strip())
    if m is None:  # several ranges, other units: the whole file (allowed by RFC 9110)
        return None
    first, last = m.group(1), m.group(2)
    if not first and not last:
        return None
    if not first:  # the last N bytes
        n = int(last)
        if n == 0:
            return "bad"
        return max(0, stat.size - n), stat.size - 1
    start = int(first)
    end = min(int(last), stat.size - 1) if last else stat.size - 1
    if start >= stat.size or (last and int(last) < start):
        return "bad"
    return start, end


def respond(request: Request, storage: Storage, key: str, name: str, stat: Stat) -> Response:
    headers = headers_for(request, name, stat)
    if _not_modified(request, stat):
        keep = ("ETag", "Last-Modified", "Cache-Control", "Content-Security-Policy",
                "Cross-Origin-Resource-Policy")  # fmt: skip
        return Response(status_code=304, headers={k: headers[k] for k in keep})
    local = getattr(storage, "local_path", None)  # local disk: read here or by the server
    span = _range(request, stat)
    if span == "bad":
        return Response(status_code=416, headers={"Content-Range": f"bytes */{stat.size}"})
    if isinstance(span, tuple):
        start, end = span
        headers["Content-Range"] = f"bytes {start}-{end}/{stat.size}"
        headers["Content-Length"] = str(end - start + 1)
        if local is not None:
            return LocalChunks(local(key), headers, start, end, status=206)
        return StreamingResponse(storage.read(key, start, end), status_code=206, headers=headers)
    headers["Content-Length"] = str(stat.size)
    if request.method == "HEAD":
        return Response(status_code=200, headers=headers)
    if local is None:
        return StreamingResponse(storage.read(key), headers=headers)
    if stat.size <= PATHSEND_MAX and PATHSEND in request.scope.get("extensions", {}):
        return PathSend(local(key), headers)
    return LocalChunks(local(key), headers, 0, stat.size - 1)


PATHSEND = "http.response.pathsend"
# Measured with wrk on one process (bench/files.py): the server's own file sending
# (pathsend, 128 KiB reads on a thread pool) is the faster way up to about 256 KiB; a
# 512 KiB file goes 18% faster, a 1 MiB file 30% faster, as body chunks read here
PATHSEND_MAX = 256 * 1024
CHUNK = 256 * 1024  # bytes per body message; the server holds at most a few per client


class LocalChunks(Response):
    """Bytes `start`..`end` of a file on local disk, as body chunks read with pread on the
    event loop: from the page cache a chunk costs tens of microseconds, less than a hop to
    a thread and back. Memory stays bounded: granian takes a body message only when fewer
    than four wait for the client, so a slow reader holds this coroutine, not the file."""

    def __init__(
        self, path: str, headers: dict[str, str], start: int, end: int, status: int = 200
    ) -> None:
        super().__init__(status_code=status, headers=headers)
        self.path, self.start, self.end = path, start, end

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError):  # deleted since its stat
            await Response(status_code=404)(scope, receive, send)
            return
        gone = asyncio.Event()
        # granian drops what is sent after the client left without a word: without this
        # watch, a client that hangs up on a large file would still have it all read
        watch = (
            asyncio.create_task(_until_disconnect(receive, gone)) if self._chunks() > 1 else None
        )
        try:
            await send({"type": "http.response.start", "status": self.status_code,
                        "headers": self.raw_headers})  # fmt: skip
            at, left = self.start, self.end - self.start + 1
            while left > 0 and not gone.is_set():
                data = os.pread(fd, min(CHUNK, left), at)
                at, left = at + len(data), left - len(data)
                more = bool(data) and left > 0
                await send({"type": "http.response.body", "body": data, "more_body": more})
                if not data:
                    break
            else:
                if self.end < self.start:  # an empty file: its one empty body
                    await send({"type": "http.response.body", "body": b""})
        finally:
            os.close(fd)
            if watch is not None:
                watch.cancel()

    def _chunks(self) -> int:
        return -(-(self.end - self.start + 1) // CHUNK)


async def _until_disconnect(receive: Receive, gone: asyncio.Event) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    gone.set()


class PathSend(Response):
    """A file on local disk sent by the server itself (ASGI's `pathsend` extension, which
    granian offers): no chunk crosses the event loop. Measured on a 50 KiB file, this
    is what brings downloads near PocketBase's rate (bench/files.py)."""

    def __init__(self, path: str, headers: dict[str, str]) -> None:
        super().__init__(status_code=200, headers=headers)
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        await send({"type": PATHSEND, "path": self.path})
