"""Where record files live now: local disk under `<data_dir>/storage`, or the S3 bucket the
`s3` settings name (read at each use, so a change applies on every process), and the keys
PocketBase uses: `<collectionId>/<recordId>/<filename>`, thumbnails beside in
`thumbs_<filename>/<size>_<filename>` (plus `.webp`/`.avif` for negotiated formats)."""

from __future__ import annotations

from typing import Any

from shipyard.kernel.runtime import RuntimeSettings
from shipyard.tools.storage import LocalStorage, Storage
from shipyard.tools.storage_s3 import S3Config, S3Storage

DOWNLOAD_STALENESS = 1.0  # seconds a download may go on with settings read before


def file_key(collection_id: str, record_id: str, name: str) -> str:
    return f"{collection_id}/{record_id}/{name}"


def thumbs_prefix(collection_id: str, record_id: str, name: str) -> str:
    return f"{collection_id}/{record_id}/thumbs_{name}"


class FileStore:
    def __init__(self, runtime: RuntimeSettings[Any], data_dir: Any) -> None:
        self.runtime = runtime
        self.local = LocalStorage(data_dir / "storage")
        self._s3: dict[S3Config, S3Storage] = {}

    async def storage_for_download(self) -> Storage:
        """The storage for serving a file: the settings as of at most a second ago (one
        indexed read a second per process instead of one per download, the hot path)."""
        await self.runtime.refresh(max_age=DOWNLOAD_STALENESS)
        return await self.storage(refresh=False)

    async def storage(self, refresh: bool = True) -> Storage:
        """The storage in effect; without `refresh`, as of the last refresh (inside a write
        transaction, where reading the settings table could wait on that very write)."""
        if refresh:
            await self.runtime.refresh()
        v = self.runtime.value
        if not v("s3", "enabled"):
            return self.local
        config = S3Config(
            v("s3", "bucket"),
            v("s3", "region"),
            v("s3", "endpoint"),
            v("s3", "accessKey"),
            v("s3", "secret"),
            v("s3", "forcePathStyle"),
        )
        if config not in self._s3:
            self._s3[config] = S3Storage(config)
        return self._s3[config]

    async def close(self) -> None:
        for s3 in self._s3.values():
            await s3.close()
        self._s3.clear()
