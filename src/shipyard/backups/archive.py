"""The archive: one zip with the database (SQLite's `data.db` and `auxiliary.db`, or
PostgreSQL's `postgres.dump`), the stored files under `storage/`, and `manifest.json`,
which says what it is (format and version, engine, schema version), what it holds (row
counts per table, the number of files) and each member's size and SHA-256, so that a
copy can be checked without trusting where it was kept.

Blocking zip work: callers run it in a worker thread.
"""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

FORMAT = "shipyard-backup"
FORMAT_VERSION = 1  # raised when an older Shipyard could not restore what a newer one writes
MANIFEST = "manifest.json"
STORAGE = "storage/"  # the stored files' members: storage/<key>
SQLITE_MEMBERS = ("data.db", "auxiliary.db")
PG_MEMBER = "postgres.dump"
COPY_CHUNK = 1024 * 1024


class ArchiveError(Exception):
    """Not an archive this Shipyard can restore; the message says why, for the user."""


class _Hashing:
    """A member being written, hashed and counted on the way."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self.out.write(chunk)
        self.sha.update(chunk)
        self.size += len(chunk)


@dataclass
class Writer:
    path: Path
    members: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.zip = zipfile.ZipFile(self.path, "w", zipfile.ZIP_DEFLATED, compresslevel=1)

    def add_file(self, name: str, source: Path) -> None:
        with source.open("rb") as src, self.member(name) as out:
            while chunk := src.read(COPY_CHUNK):
                out.write(chunk)

    def member(self, name: str) -> _Member:
        return _Member(self, name)

    def finish(self, manifest: Mapping[str, Any]) -> None:
        doc = {**manifest, "members": self.members}
        self.zip.writestr(MANIFEST, orjson.dumps(doc, option=orjson.OPT_INDENT_2))
        self.zip.close()

    def abort(self) -> None:
        self.zip.close()


class _Member:
    def __init__(self, writer: Writer, name: str) -> None:
        self.writer = writer
        self.name = name

    def __enter__(self) -> _Hashing:
        self._raw = self.writer.zip.open(self.name, "w", force_zip64=True)
        self._h = _Hashing(self._raw)
        return self._h

    def __exit__(self, *exc: object) -> None:
        self._raw.close()
        self.writer.members[self.name] = {"size": self._h.size, "sha256": self._h.sha.hexdigest()}


class TooLarge(ArchiveError):
    """The archive unpacks to more than `backups_max_unpacked_size` bytes."""


def _too_large(limit: int) -> TooLarge:
    return TooLarge(f"it unpacks to more than {limit} bytes (SHIPYARD_BACKUPS_MAX_UNPACKED_SIZE)")


def check_declared(z: zipfile.ZipFile, limit: int) -> None:
    """Refuse an archive whose members declare more than `limit` bytes in all (cheap: the
    central directory only); the bytes actually read are counted again as they come."""
    if sum(max(i.file_size, 0) for i in z.infolist()) > limit:
        raise _too_large(limit)
    if any(i.file_size > 0 and i.compress_size == 0 for i in z.infolist()):
        raise ArchiveError("a member declares a size but holds no bytes")


def read_manifest(path: Path, limit: int = 0) -> dict[str, Any]:
    """The manifest of the archive at `path`; ArchiveError when there is none usable or
    it comes from a newer format than this Shipyard reads; TooLarge when its members
    declare more than `limit` bytes (0: unbounded)."""
    try:
        with zipfile.ZipFile(path) as z:
            if limit:
                check_declared(z, limit)
            if z.getinfo(MANIFEST).file_size > 16 * 1024 * 1024:
                raise ArchiveError("manifest.json is larger than 16 MiB")
            raw = z.read(MANIFEST)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ArchiveError(f"not a zip archive: {exc}") from None
    except KeyError:
        raise ArchiveError(
            "no manifest.json: not a Shipyard backup (PocketBase's archives cannot be restored)"
        ) from None
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ArchiveError("manifest.json is not valid JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ArchiveError("manifest.json does not describe a Shipyard backup")
    version = doc.get("formatVersion")
    if not isinstance(version, int) or version < 1:
        raise ArchiveError("manifest.json has no valid formatVersion")
    if version > FORMAT_VERSION:
        raise ArchiveError(
            f"the backup has format version {version}, newer than this Shipyard reads "
            f"({FORMAT_VERSION}): restore it with the Shipyard version that made it, or newer"
        )
    if not isinstance(doc.get("members"), dict) or doc.get("engine") not in ("sqlite", "postgres"):
        raise ArchiveError("manifest.json lacks its members or engine")
    return doc


def check_members(path: Path, manifest: Mapping[str, Any], limit: int = 0) -> list[str]:
    """Every member's size and SHA-256 against the manifest: the problems found. The bytes
    read are counted: past `limit` (0: unbounded) it stops with TooLarge, whatever the
    members declared."""
    problems: list[str] = []
    total = 0
    listed: Mapping[str, Any] = manifest["members"]
    with zipfile.ZipFile(path) as z:
        present = set(z.namelist()) - {MANIFEST}
        for name in sorted(set(listed) - present):
            problems.append(f"{name}: missing from the archive")
        for name in sorted(present - set(listed)):
            problems.append(f"{name}: not in the manifest")
        for name in sorted(present & set(listed)):
            sha, size = hashlib.sha256(), 0
            try:
                with z.open(name) as f:
                    while chunk := f.read(COPY_CHUNK):
                        sha.update(chunk)
                        size += len(chunk)
                        total += len(chunk)
                        if limit and total > limit:
                            raise _too_large(limit)
            except (zipfile.BadZipFile, OSError) as exc:  # a CRC error: damaged bytes
                problems.append(f"{name}: unreadable ({exc})")
                continue
            want = listed[name]
            if not isinstance(want, dict) or want.get("sha256") != sha.hexdigest():
                problems.append(f"{name}: checksum differs from the manifest")
            elif want.get("size") != size:
                problems.append(f"{name}: size differs from the manifest")
    return problems


def extract(path: Path, name: str, dest: Path, limit: int = 0) -> None:
    """One member to `dest` (a path chosen by the caller, never the member's name); past
    `limit` bytes written (0: unbounded) it stops with TooLarge."""
    with zipfile.ZipFile(path) as z, z.open(name) as src, dest.open("wb") as out:
        if not limit:
            shutil.copyfileobj(src, out, COPY_CHUNK)
            return
        written = 0
        while chunk := src.read(COPY_CHUNK):
            written += len(chunk)
            if written > limit:
                raise _too_large(limit)
            out.write(chunk)


def storage_members(manifest: Mapping[str, Any]) -> list[str]:
    return sorted(n for n in manifest["members"] if n.startswith(STORAGE))
