"""A file uploaded in a multipart body, as the records layer sees it: the client's name,
the size, the MIME type detected from its content, and its bytes in a spooled temporary
file (on disk past 1 MiB: uploads never sit whole in memory). The files capability stores
it; records only names it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from shipyard.tools.mime import HEAD_BYTES, detect, stored_name

CHUNK = 256 * 1024


@dataclass(eq=False)
class Upload:
    original: str  # the client's file name
    file: BinaryIO
    size: int
    mime: str
    name: str = ""  # the stored name, given when a file field accepts it
    stored: bool = False  # set by whoever wrote it to storage
    # what a capability learned when it inspected the upload (files: an image's size and
    # placeholder), before the write's transaction; stored with the write
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, original: str, file: BinaryIO) -> Upload:
        file.seek(0)
        head = file.read(HEAD_BYTES)
        file.seek(0, 2)
        size = file.tell()
        file.seek(0)
        upload = cls(original or "file", file, size, detect(head))
        upload.name = stored_name(upload.original, upload.mime)
        return upload

    def chunks(self, size: int = CHUNK) -> Iterator[bytes]:
        self.file.seek(0)
        while chunk := self.file.read(size):
            yield chunk

    def __repr__(self) -> str:  # shown in errors and logs: never the bytes
        return f"Upload({self.name!r}, {self.size} bytes, {self.mime})"
