"""Object storage with two real implementations: a directory on local disk (this module)
and any S3-compatible store (storage_s3.py). Keys are `/`-separated paths; files go in and
out in bounded chunks, never whole in memory."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

import anyio

from shipyard.tools.mime import HEAD_BYTES, detect

CHUNK = 256 * 1024


class StorageError(Exception):
    """The store failed (unreachable, refused): the caller's 5xx or a job's retry."""


@dataclass(frozen=True)
class Stat:
    size: int
    content_type: str
    modified: float  # epoch seconds
    etag: str  # quoted, as HTTP sends it


@dataclass(frozen=True)
class Listed:
    key: str
    size: int
    modified: float  # epoch seconds


class Storage(Protocol):
    async def put_file(self, key: str, file: BinaryIO, size: int, content_type: str) -> None: ...

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> None: ...

    async def stat(self, key: str) -> Stat | None: ...

    def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Bytes `start`..`end` (inclusive; None: to the end), in chunks."""
        ...

    async def delete(self, keys: Sequence[str]) -> None: ...

    async def listing(self, prefix: str = "") -> list[Listed]:
        """Every stored key under `prefix` ("" for all), sorted by key."""
        ...

    async def delete_prefix(self, prefix: str) -> None: ...

    async def close(self) -> None: ...


def check_key(key: str) -> str:
    parts = key.split("/")
    if not key or any(p in ("", ".", "..") or "\\" in p or "\x00" in p for p in parts):
        raise ValueError(f"invalid storage key {key!r}")
    return key


_TYPES_MAX = 4096
# detected types by file version (path, size, mtime): a replaced file is a new version, so
# an entry never answers for other bytes; a plain dict, emptied when full
_types: dict[tuple[str, int, int], str] = {}


def _detect_file(path: str) -> str:
    with open(path, "rb") as f:
        return detect(f.read(HEAD_BYTES))


class LocalStorage:
    """Files under one directory (PocketBase's `pb_data/storage`). Several processes sharing
    the directory see each other's files: writes land whole (a temporary file renamed)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._root = str(root)

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def local_path(self, key: str) -> str:
        """Where `key` lies on disk: a server may send it itself (ASGI `pathsend`). A
        string join, not a Path: this runs on every download."""
        return os.path.join(self._root, *check_key(key).split("/"))

    async def put_file(self, key: str, file: BinaryIO, size: int, content_type: str) -> None:
        await anyio.to_thread.run_sync(self._put_file, self._path(key), file)

    def _put_file(self, path: Path, file: BinaryIO) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as out:
                file.seek(0)
                shutil.copyfileobj(file, out, CHUNK)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        import io

        await anyio.to_thread.run_sync(self._put_file, self._path(key), io.BytesIO(data))

    async def stat(self, key: str) -> Stat | None:
        path = self.local_path(key)
        try:
            st = os.stat(path)  # a cached inode: cheaper than a hop to a thread
        except (FileNotFoundError, NotADirectoryError):
            return None
        etag = f'"{st.st_size:x}-{st.st_mtime_ns:x}"'
        version = (path, st.st_size, st.st_mtime_ns)
        kind = _types.get(version)
        if kind is None:
            try:
                kind = await anyio.to_thread.run_sync(_detect_file, version[0])
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                return None
            if len(_types) >= _TYPES_MAX:
                _types.clear()
            _types[version] = kind
        return Stat(st.st_size, kind, st.st_mtime, etag)

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        left = None if end is None else end - start + 1
        async with await anyio.open_file(self._path(key), "rb") as f:
            await f.seek(start)
            while left is None or left > 0:
                chunk = await f.read(CHUNK if left is None else min(CHUNK, left))
                if not chunk:
                    return
                if left is not None:
                    left -= len(chunk)
                yield chunk

    async def delete(self, keys: Sequence[str]) -> None:
        await anyio.to_thread.run_sync(self._delete, [self._path(k) for k in keys])

    def _delete(self, paths: list[Path]) -> None:
        for p in paths:
            with contextlib.suppress(FileNotFoundError):
                if p.is_dir():
                    shutil.rmtree(p)
                else:
                    p.unlink()
            self._prune(p.parent)

    def _prune(self, d: Path) -> None:
        """Remove directories left empty, up to the root."""
        while d != self.root and self.root in d.parents:
            try:
                d.rmdir()
            except OSError:
                return
            d = d.parent

    async def delete_prefix(self, prefix: str) -> None:
        await anyio.to_thread.run_sync(self._delete, [self._path(prefix.rstrip("/"))])

    async def listing(self, prefix: str = "") -> list[Listed]:
        return await anyio.to_thread.run_sync(self._list, prefix)

    def _list(self, prefix: str) -> list[Listed]:
        out = []
        for dirpath, _dirs, names in os.walk(self.root):
            for name in names:
                if name.startswith(".upload-"):  # a write in progress
                    continue
                path = Path(dirpath) / name
                key = path.relative_to(self.root).as_posix()
                if not key.startswith(prefix):
                    continue
                try:
                    st = path.stat()
                except FileNotFoundError:
                    continue
                out.append(Listed(key, st.st_size, st.st_mtime))
        return sorted(out, key=lambda item: item.key)

    async def close(self) -> None:
        return None
