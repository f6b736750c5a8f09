"""Files as an extension: the download and token routes, the `s3` settings section, the
job kind that removes stored files, and a subscriber on the record-event bus that stores
uploads and enqueues removals — the interface a team's own extension uses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.routing import BaseRoute

from shipyard.assets.cdn import Cdn
from shipyard.files import meta, routes
from shipyard.files.images import FileImages
from shipyard.files.openapi import openapi
from shipyard.files.section import S3
from shipyard.files.store import FileStore
from shipyard.files.triggers import DELETE_KIND, ORPHANS_KIND, FileTriggers
from shipyard.images import DEFAULT_THUMB_SIZES, width_spec
from shipyard.kernel.extension import Extension
from shipyard.kernel.functions import Functions
from shipyard.kernel.runtime import RuntimeSettings, Section
from shipyard.kernel.spec import OpenAPIPart, Viewer
from shipyard.records.collections import Collection
from shipyard.records.decorate import RecordDecorator
from shipyard.records.events import RecordSubscriber
from shipyard.settings import Settings
from shipyard.tools.db import Executor


class FilesExtension(Extension):
    def __init__(
        self,
        settings: Settings,
        runtime: RuntimeSettings[Settings],
        jobs: Any,
        db: Executor,
        cdn: Cdn | None = None,
    ) -> None:
        super().__init__(name="files", requires=("records", "jobs"))
        self.settings = settings
        self.db = db
        self.cdn = cdn
        self.store = FileStore(runtime, settings.data_dir)
        self.images = FileImages(settings)
        purge = self._purge if cdn is not None and cdn.purging else None
        self.triggers = FileTriggers(self.store, jobs, self.images, purge)
        public_url = cdn.public_url if cdn is not None else (lambda path: path)
        self.decorator = meta.ImagesDecorator(db, self.images.widths, public_url)

    def openapi(self, collections: Sequence[Any], viewer: Viewer) -> Sequence[OpenAPIPart]:
        return openapi(viewer)

    def routes(self) -> Sequence[BaseRoute]:
        return routes.routes

    def settings_sections(self) -> Sequence[Section]:
        return (S3,)

    def functions(self) -> Functions:
        f = Functions()
        f.add_job(DELETE_KIND, self.triggers.delete_job, builtin=True, queue="files")
        f.add_job(ORPHANS_KIND, self.triggers.orphans_job, builtin=True, queue="files")
        return f

    def record_subscribers(self) -> Sequence[RecordSubscriber]:
        return (self.triggers,)

    def record_decorators(self) -> Sequence[RecordDecorator]:
        return (self.decorator,)

    async def migrate(self) -> None:
        await meta.ensure_schema(self.db)

    async def stop(self) -> None:
        self.images.close()
        await self.store.close()

    async def _purge(self, tx: Executor, c: Collection, rid: str, names: list[str]) -> None:
        """Tell the CDN to forget these files (and their thumbnails) once `tx` commits: by
        collection id and name, as `pb.files.getURL` may build either."""
        assert self.cdn is not None  # noqa: S101  (only installed with a CDN)
        thumbs = [*DEFAULT_THUMB_SIZES, *(width_spec(w) for w in self.images.widths)]
        for f in c.fields:
            if f.type == "file":
                thumbs += [str(t) for t in f.options.get("thumbs") or []]
        urls: list[str] = []
        for name in names:
            for coll in dict.fromkeys((c.id, c.name)):
                path = f"/api/files/{coll}/{rid}/{name}"
                urls += [path, *(f"{path}?thumb={t}" for t in dict.fromkeys(thumbs))]
        await self.cdn.enqueue_purge(tx, urls)
