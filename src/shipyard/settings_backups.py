"""The backups part of the settings (docs/backups.md): where archives go, when they are
made, how many are kept, and the bounds on making, uploading and checking them. A base of
`Settings`, kept apart so that settings.py stays one screen per concern. The schedule,
the retention and the S3 target are also runtime settings (`backups` in /api/settings)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from shipyard.tools.cronexpr import CronError, check_schedule
from shipyard.tools.settings_parse import SettingsError

_S3_PATH = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")


@dataclass(frozen=True)
class BackupsSettings:
    backups_dir: str = ""  # local archives; empty: <data_dir>/backups
    backups_cron: str = ""  # a cron expression (UTC) for scheduled backups; "": none
    backups_cron_max_keep: int = 3  # scheduled archives kept (older `@auto_` ones removed)
    backups_s3_enabled: bool = False  # archives in an S3 bucket instead of backups_dir
    backups_s3_bucket: str = ""
    backups_s3_region: str = ""
    backups_s3_endpoint: str = ""  # empty for AWS; the URL of any S3-compatible store
    backups_s3_access_key: str = ""
    backups_s3_secret: str = field(default="", repr=False)
    backups_s3_force_path_style: bool = False
    backups_verify: bool = True  # restore every new archive into a scratch place and check it
    backups_max_upload_size: int = 8 * 1024**3  # bytes of an uploaded archive
    backups_lock_timeout: float = 6 * 3600.0  # seconds after which a crashed run's lock lapses
    backups_pg_dump: str = ""  # pg_dump binary; empty: the newest of PATH's and pgserver's
    # bytes an archive may unpack to (declared sizes and bytes actually read): a zip bomb
    # stops there instead of filling the disk
    backups_max_unpacked_size: int = 32 * 1024**3
    # restore drills (docs/operations/drills.md): when (cron, UTC; "": never), and how long
    # the scratch instance may take to start and answer the sample reads
    backups_drill_cron: str = "0 4 * * 0"
    backups_drill_timeout: float = 600.0
    # point-in-time recovery of SQLite (docs/backups.md): Litestream run by `shipyard serve`
    backups_pitr: bool = False
    backups_pitr_dir: str = ""  # the local replica; empty: <data_dir>/pitr
    backups_pitr_s3: bool = False  # replicate to the SHIPYARD_BACKUPS_S3_* bucket instead
    backups_pitr_s3_path: str = "pitr"  # the key prefix in that bucket
    backups_pitr_sync_interval: float = 1.0  # seconds between two syncs: the RPO
    backups_pitr_retention: float = 7 * 86400.0  # seconds back a restore can reach
    backups_pitr_snapshot_interval: float = 86400.0  # seconds between full snapshots
    # seconds every single sync is kept: a restore to a moment within them is exact to the
    # sync; older moments round down to a merged point (30 s, 5 min, 1 h)
    backups_pitr_exact_window: float = 3600.0
    backups_pitr_litestream: str = ""  # the binary; empty: beside Python's, then PATH's


def validate_backups(s: BackupsSettings) -> None:
    if s.backups_cron:
        try:
            check_schedule(s.backups_cron, "SHIPYARD_BACKUPS_CRON")
        except CronError as exc:
            raise SettingsError(str(exc)) from None
    if s.backups_drill_cron:
        try:
            check_schedule(s.backups_drill_cron, "SHIPYARD_BACKUPS_DRILL_CRON")
        except CronError as exc:
            raise SettingsError(str(exc)) from None
    if not 10 <= s.backups_drill_timeout <= 86400:  # also refuses nan
        raise SettingsError("SHIPYARD_BACKUPS_DRILL_TIMEOUT: must be between 10 s and 1 day")
    if s.backups_max_unpacked_size < 1024**2:
        raise SettingsError("SHIPYARD_BACKUPS_MAX_UNPACKED_SIZE: must be at least 1 MiB")
    if s.backups_cron_max_keep < 1:
        raise SettingsError("SHIPYARD_BACKUPS_CRON_MAX_KEEP: must be at least 1")
    if s.backups_max_upload_size < 1:
        raise SettingsError("SHIPYARD_BACKUPS_MAX_UPLOAD_SIZE: must be positive")
    if not 60 <= s.backups_lock_timeout <= 7 * 86400:  # also refuses nan
        raise SettingsError("SHIPYARD_BACKUPS_LOCK_TIMEOUT: must be between 60 s and 7 days")
    if s.backups_s3_enabled and not (
        s.backups_s3_bucket and s.backups_s3_access_key and s.backups_s3_secret
    ):
        raise SettingsError(
            "SHIPYARD_BACKUPS_S3_ENABLED: needs SHIPYARD_BACKUPS_S3_BUCKET, _ACCESS_KEY and _SECRET"
        )
    validate_pitr(s)


def validate_pitr(s: BackupsSettings) -> None:
    if not 0.05 <= s.backups_pitr_sync_interval <= 3600:  # also refuses nan
        raise SettingsError("SHIPYARD_BACKUPS_PITR_SYNC_INTERVAL: must be between 0.05 and 3600 s")
    if not 3600 <= s.backups_pitr_retention <= 3650 * 86400:
        raise SettingsError("SHIPYARD_BACKUPS_PITR_RETENTION: must be between 1 hour and 10 years")
    if not 60 <= s.backups_pitr_snapshot_interval <= s.backups_pitr_retention:
        raise SettingsError(
            "SHIPYARD_BACKUPS_PITR_SNAPSHOT_INTERVAL: must be between 60 s and "
            "SHIPYARD_BACKUPS_PITR_RETENTION (a restore needs a snapshot inside the window)"
        )
    if not 60 <= s.backups_pitr_exact_window <= s.backups_pitr_retention:
        raise SettingsError(
            "SHIPYARD_BACKUPS_PITR_EXACT_WINDOW: must be between 60 s and "
            "SHIPYARD_BACKUPS_PITR_RETENTION"
        )
    if not _S3_PATH.match(s.backups_pitr_s3_path):
        raise SettingsError(
            "SHIPYARD_BACKUPS_PITR_S3_PATH: letters, digits, '.', '_', '-' and inner '/' only"
        )
    if s.backups_pitr_s3 and not (
        s.backups_s3_bucket and s.backups_s3_access_key and s.backups_s3_secret
    ):
        raise SettingsError(
            "SHIPYARD_BACKUPS_PITR_S3: needs SHIPYARD_BACKUPS_S3_BUCKET, _ACCESS_KEY and _SECRET"
        )
    url = str(getattr(s, "database_url", ""))  # the whole Settings at load time
    if s.backups_pitr and url.startswith(("postgres://", "postgresql://")):
        raise SettingsError(
            "SHIPYARD_BACKUPS_PITR: Litestream replicates SQLite only; for PostgreSQL use "
            "WAL archiving with pgBackRest (docs/backups.md#point-in-time-recovery-sqlite)"
        )
