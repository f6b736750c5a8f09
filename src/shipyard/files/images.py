"""What the files capability does with the image pipeline (shipyard.images): every uploaded
image decoded once before the write (a corrupt image or a decompression bomb is a 400 then,
never a 500 later; its size and BlurHash are kept), and thumbnails made on first request in
the format the client takes, once per thumbnail, in a bounded pool.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Mapping, Sequence

from shipyard.files.store import thumbs_prefix
from shipyard.images import (
    MIME,
    ImageError,
    PoolBusy,
    ThumbnailPool,
    allowed_spec,
    can_thumb,
    inspect,
    negotiate,
    thumb_filename,
    thumbnail,
)
from shipyard.kernel.errors import ApiError, FieldError
from shipyard.kernel.uploads import Upload
from shipyard.records.collections import Collection
from shipyard.settings import Settings, parse_image_formats, parse_image_widths
from shipyard.tools.storage import Stat, Storage

log = logging.getLogger("shipyard.files")

# uploads decoded on arrival: the formats the pipeline reads (PocketBase's thumbnail sources
# plus AVIF); anything else that is an image (SVG, BMP, TIFF…) is stored as it is
INSPECTED = frozenset(
    {"image/png", "image/jpeg", "image/jpg", "image/gif", "image/webp", "image/avif"}
)
SPOOL = 1 << 20  # an original read for a thumbnail sits in memory up to this, then on disk


class FileImages:
    def __init__(self, settings: Settings) -> None:
        self.max_pixels = settings.image_max_pixels
        self.placeholders = settings.image_placeholders
        self.formats = parse_image_formats(settings.image_formats)
        self.widths = parse_image_widths(settings.image_widths)
        # decoding and encoding run here, off the event loop, `thumbs_concurrency` at a time
        self.pool = ThumbnailPool(settings.thumbs_concurrency, settings.thumbs_max_wait)
        # reading originals from storage is bounded the same way (a burst of new thumbnail
        # URLs must not pull every original at once)
        self._reads = asyncio.Semaphore(settings.thumbs_concurrency)
        self._pending: dict[str, asyncio.Future[Stat | None]] = {}

    def close(self) -> None:
        self.pool.close(wait=False)

    # ------------------------------------------------------------------ uploads

    async def inspect_uploads(
        self, c: Collection, uploads: Mapping[str, Sequence[Upload]]
    ) -> dict[str, FieldError]:
        """Decode every new image once; refusals by field (PocketBase's error shape)."""
        errors: dict[str, FieldError] = {}
        for field, items in uploads.items():
            for u in items:
                if u.mime not in INSPECTED:
                    continue
                try:
                    info = await self.pool.run(
                        f"inspect:{id(u)}", inspect, u.file, self.max_pixels, self.placeholders
                    )
                except PoolBusy as exc:
                    raise ApiError(
                        503, f"The upload cannot be checked now: {exc.message}."
                    ) from exc
                except ImageError as exc:
                    errors[field] = FieldError(
                        "validation_invalid_image",
                        f"{u.original[:100]!r} is not a valid image: {exc.message}.",
                    )
                    break
                u.meta.update(
                    width=info.width,
                    height=info.height,
                    placeholder=info.placeholder,
                    frames=info.frames,
                )
        return errors

    # ------------------------------------------------------------------ thumbnails

    def thumb_format(
        self, spec: str, field_thumbs: Sequence[str], content_type: str, accept: str | None
    ) -> str | None:
        """The format of the `?thumb=spec` thumbnail for this request, or None when the
        original is served (a size not allowed, or a file that is not a thumbnailable image)."""
        if not spec or not can_thumb(content_type):
            return None
        if not allowed_spec(spec, field_thumbs, self.widths):
            return None
        return negotiate(accept, content_type, self.formats)

    async def thumb(
        self,
        storage: Storage,
        original: str,
        where: tuple[str, str, str],
        spec: str,
        fmt: str,
        content_type: str,
    ) -> tuple[str, Stat, str] | None:
        """(key, stat, served name) of the thumbnail, made once and stored beside the
        original; None: serve the original (the image cannot be thumbnailed). Raises
        PoolBusy when no generation slot frees up in time (a 503)."""
        collection_id, record_id, name = where
        served = thumb_filename(name, spec, fmt, content_type)
        key = f"{thumbs_prefix(collection_id, record_id, name)}/{served}"
        stat = await storage.stat(key)
        if stat is not None:
            return key, stat, served
        pending = self._pending.get(key)
        if pending is None:  # one generation per thumbnail in this process, whoever asks
            pending = asyncio.get_running_loop().create_future()
            self._pending[key] = pending
            try:
                pending.set_result(await self._make(storage, original, key, spec, fmt))
            except asyncio.CancelledError:
                pending.cancel()
                raise
            except BaseException as exc:
                pending.set_exception(exc)
                pending.exception()  # retrieved: no warning when no other request waited
                raise
            finally:
                del self._pending[key]
        made = await asyncio.shield(pending)
        return None if made is None else (key, made, served)

    async def _make(
        self, storage: Storage, original: str, key: str, spec: str, fmt: str
    ) -> Stat | None:
        try:
            async with asyncio.timeout(self.pool.max_wait):
                await self._reads.acquire()
        except TimeoutError:
            raise PoolBusy("too many thumbnails are being generated; retry shortly") from None
        try:
            with tempfile.SpooledTemporaryFile(SPOOL) as spool:
                async for chunk in storage.read(original):
                    spool.write(chunk)
                try:
                    out = await self.pool.run(key, thumbnail, spool, spec, fmt, self.max_pixels)
                except PoolBusy:
                    raise
                except ImageError as exc:  # stored before the checks on upload, or damaged
                    log.warning("thumbnail %s of %s failed, serving the original: %s", spec,
                                original, exc.message)  # fmt: skip
                    return None
        finally:
            self._reads.release()
        await storage.put_bytes(key, out, MIME[fmt])
        return await storage.stat(key)
