"""Where archives are kept: a local directory (`backups_dir`, by default
`<data_dir>/backups`) or the S3 bucket of the `backups.s3` settings, read at each use so
that a change through /api/settings applies on every process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shipyard.tools.storage import LocalStorage, Storage
from shipyard.tools.storage_s3 import S3Config, S3Storage


class Target:
    def __init__(self, runtime: Any, local: Path) -> None:
        self.runtime = runtime
        self.local = LocalStorage(local)
        self._s3: dict[S3Config, S3Storage] = {}

    async def storage(self) -> Storage:
        s = await self.runtime.current()
        if not s.backups_s3_enabled:
            return self.local
        config = S3Config(
            s.backups_s3_bucket,
            s.backups_s3_region,
            s.backups_s3_endpoint,
            s.backups_s3_access_key,
            s.backups_s3_secret,
            s.backups_s3_force_path_style,
        )
        if config not in self._s3:
            self._s3[config] = S3Storage(config)
        return self._s3[config]

    async def close(self) -> None:
        for s3 in self._s3.values():
            await s3.close()
        self._s3.clear()
