"""Files as an extension: the download and token routes, the `s3` settings section, the
job kind that removes stored files, and a subscriber on the record-event bus that stores
uploads and enqueues removals — the interface a team's own extension uses."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import anyio
from starlette.routing import BaseRoute

from shipyard.files import routes
from shipyard.files.openapi import openapi
from shipyard.files.section import S3
from shipyard.files.store import FileStore
from shipyard.files.thumbs import PillowThumbnailer, ThumbError, Thumbnailer
from shipyard.files.triggers import DELETE_KIND, FileTriggers
from shipyard.kernel.extension import Extension
from shipyard.kernel.functions import Functions
from shipyard.kernel.runtime import RuntimeSettings, Section
from shipyard.kernel.spec import OpenAPIPart, Viewer
from shipyard.records.events import RecordSubscriber
from shipyard.settings import Settings
from shipyard.tools.storage import Stat, Storage

log = logging.getLogger("shipyard.files")


class FilesExtension(Extension):
    def __init__(
        self,
        settings: Settings,
        runtime: RuntimeSettings[Settings],
        jobs: Any,
        thumbnailer: Thumbnailer | None = None,
    ) -> None:
        super().__init__(name="files", requires=("records", "jobs"))
        self.settings = settings
        self.store = FileStore(runtime, settings.data_dir)
        self.triggers = FileTriggers(self.store, jobs.enqueue)
        self.thumbnailer = thumbnailer or PillowThumbnailer(settings.image_max_pixels)
        # a burst of new thumbnail URLs waits here rather than exhausting memory or CPU
        self._thumb_slots = asyncio.Semaphore(settings.thumbs_concurrency)
        self._pending: dict[str, asyncio.Future[Stat | None]] = {}

    def openapi(self, collections: Sequence[Any], viewer: Viewer) -> Sequence[OpenAPIPart]:
        return openapi(viewer)

    def routes(self) -> Sequence[BaseRoute]:
        return routes.routes

    def settings_sections(self) -> Sequence[Section]:
        return (S3,)

    def functions(self) -> Functions:
        f = Functions()
        f.add_job(DELETE_KIND, self.triggers.delete_job, builtin=True, queue="files")
        return f

    def record_subscribers(self) -> Sequence[RecordSubscriber]:
        return (self.triggers,)

    async def stop(self) -> None:
        await self.store.close()

    async def thumb(
        self, storage: Storage, original: str, key: str, size: str
    ) -> tuple[str, Stat] | None:
        """The thumbnail `size` of `original` at `key`, made once and stored (one
        generation per key at a time in this process); None: serve the original."""
        stat = await storage.stat(key)
        if stat is not None:
            return key, stat
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            self._pending[key] = pending
            try:
                pending.set_result(await self._make(storage, original, key, size))
            except BaseException as exc:
                pending.set_exception(exc)
                raise
            finally:
                del self._pending[key]
        made = await asyncio.shield(pending)
        return None if made is None else (key, made)

    async def _make(self, storage: Storage, original: str, key: str, size: str) -> Stat | None:
        async with self._thumb_slots:
            data = b"".join([chunk async for chunk in storage.read(original)])
            try:
                out, ctype = await anyio.to_thread.run_sync(self.thumbnailer, data, size, None)
            except ThumbError as exc:
                log.warning(
                    "thumbnail %s of %s failed, serving the original: %s", size, original, exc
                )
                return None
            await storage.put_bytes(key, out, ctype)
        return await storage.stat(key)
