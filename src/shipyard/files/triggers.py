"""The files capability as a subscriber of the record-event bus: a write's uploads are
stored inside its transaction (as PocketBase stores them before its commit), and files a
write leaves behind — replaced, removed, their record or collection deleted — are removed
by a job enqueued in the same transaction, so nothing is deleted unless the write commits
and nothing is forgotten if it does."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from shipyard.files import meta
from shipyard.files.images import FileImages
from shipyard.files.store import FileStore, file_key, thumbs_prefix
from shipyard.kernel.errors import ApiError, FieldError
from shipyard.kernel.uploads import Upload
from shipyard.records.collections import Collection
from shipyard.records.events import Listener, RecordChange, keeps_record
from shipyard.tools.db import Executor, on_rollback

DELETE_KIND = "files.delete"
ORPHANS_KIND = "files.orphans"
# how long after a write its uploads are checked for, if its transaction did not commit:
# far longer than any transaction lasts (statement and lock timeouts are seconds)
ORPHANS_DELAY = 3600.0


def file_names(c: Collection, record: dict[str, Any] | None) -> set[str]:
    out: set[str] = set()
    for f in c.fields:
        if f.type == "file" and record is not None:
            v = record.get(f.name)
            out.update(n for n in (v if isinstance(v, list) else [v]) if isinstance(n, str) and n)
    return out


class FileTriggers:
    def __init__(self, store: FileStore, jobs: Any, images: FileImages, purge: Any = None) -> None:
        self.store = store
        self.enqueue = jobs.enqueue
        self.cancel = jobs.cancel
        self.images = images
        # (tx, collection, record id, names) → enqueue the CDN purge of those files' URLs
        self.purge = purge

    async def inspect_uploads(
        self, c: Collection, record_id: str, uploads: Mapping[str, Sequence[Upload]]
    ) -> dict[str, FieldError]:
        """Before the write's transaction: every new image decoded once (files/images.py),
        and a delayed `files.orphans` job enqueued (committed now) that removes the uploads
        if the write never commits; the write's transaction cancels it (see on_change)."""
        errors = await self.images.inspect_uploads(c, uploads)
        everything = [u for items in uploads.values() for u in items]
        if errors or not everything or not record_id:
            return errors
        args = {"collection": c.id, "record": record_id, "names": [u.name for u in everything]}
        job = await self.enqueue(ORPHANS_KIND, args, delay=ORPHANS_DELAY)
        for u in everything:
            u.meta["orphans_job"] = job.id
        return errors

    async def listener(self, tx: Executor, c: Collection, action: str) -> Listener | None:
        if not any(f.type == "file" for f in c.fields):
            return None
        return self.on_change

    @keeps_record  # it writes `_file_meta` and storage, never the record
    async def on_change(self, tx: Executor, change: RecordChange) -> None:
        c, rid = change.collection, str(change.record["id"])
        if change.uploads:
            storage = await self.store.storage(refresh=False)
            stored: list[str] = []
            for u in change.uploads:
                key = file_key(c.id, rid, u.name)
                await storage.put_file(key, u.file, u.size, u.mime)
                stored.append(key)
                u.stored = True
            await meta.store(tx, c.id, rid, change.uploads)
            for job in sorted({int(u.meta["orphans_job"]) for u in change.uploads
                               if "orphans_job" in u.meta}):  # fmt: skip
                await self.cancel(job, tx=tx)  # stored for good if and only if this commits

            async def unstore() -> None:
                await storage.delete(stored)

            on_rollback(unstore)  # in a batch that then fails, the files go too
        if change.action == "delete":
            await self._remove(tx, [], [f"{c.id}/{rid}"])
            await meta.forget(tx, c.id, [rid])
            await self._purge(tx, c, rid, sorted(file_names(c, change.record)))
            return
        gone = sorted(file_names(c, change.old) - file_names(c, change.record))
        if gone:
            keys = [file_key(c.id, rid, n) for n in gone]
            await self._remove(tx, keys, [thumbs_prefix(c.id, rid, n) for n in gone])
            await meta.forget(tx, c.id, [rid], gone)
            await self._purge(tx, c, rid, gone)

    async def _purge(self, tx: Executor, c: Collection, rid: str, names: list[str]) -> None:
        if self.purge is not None and names:
            await self.purge(tx, c, rid, names)

    async def dropped(self, tx: Executor, c: Collection, ids: Sequence[str] | None) -> None:
        if not any(f.type == "file" for f in c.fields):
            return
        prefixes = [c.id] if ids is None else [f"{c.id}/{rid}" for rid in ids]
        await self._remove(tx, [], prefixes)
        await meta.forget(tx, c.id, None if ids is None else list(ids))

    async def _remove(self, tx: Executor, keys: list[str], prefixes: list[str]) -> None:
        await self.enqueue(DELETE_KIND, {"keys": keys, "prefixes": prefixes}, tx=tx)

    async def orphans_job(self, ctx: Any, args: dict[str, Any]) -> dict[str, int]:
        """The job: a write stored these uploads and never committed. Remove the ones its
        record does not hold (names are random: no other write can come to hold them)."""
        from shipyard.records.collections import SUPERUSERS
        from shipyard.records.context import RequestContext

        svc = ctx.services
        c = svc.store.get(str(args.get("collection", "")))
        rid = str(args.get("record", ""))
        names = {str(n) for n in args.get("names") or []}
        if c is None:
            return {"removed": 0}  # the collection's own removal took its files
        system = RequestContext.system(svc.store.require(SUPERUSERS))
        try:
            held = file_names(c, await svc.records.view(c, rid, system))
        except ApiError:
            held = set()
        gone = sorted(names - held)
        if gone:
            storage = await self.store.storage()
            await storage.delete([file_key(c.id, rid, n) for n in gone])
            for n in gone:
                await storage.delete_prefix(thumbs_prefix(c.id, rid, n))
        return {"removed": len(gone)}

    async def delete_job(self, ctx: Any, args: dict[str, Any]) -> dict[str, int]:
        """The job: remove the stored objects (idempotent: missing ones are no error)."""
        storage = await self.store.storage()
        keys = [str(k) for k in args.get("keys") or []]
        prefixes = [str(p) for p in args.get("prefixes") or []]
        if keys:
            await storage.delete(keys)
        for p in prefixes:
            await storage.delete_prefix(p)
        return {"keys": len(keys), "prefixes": len(prefixes)}
