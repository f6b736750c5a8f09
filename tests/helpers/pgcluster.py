"""A throwaway PostgreSQL cluster of its own (initdb, pg_ctl) for tests that stop, archive
and restore a whole cluster: the point-in-time recovery drill with pgBackRest.

PostgreSQL refuses to run as root: as root, the cluster and pgBackRest run as the `postgres`
OS user (Debian's postgresql-common, which the pgbackrest package depends on, makes it).
A prerequisite that is missing fails the test with what to install: CI must not skip it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.helpers.servers import free_port
from tests.helpers.wait import wait_until

INSTALL_HINT = "`./run test` installs them (pgbackrest, and the distribution's postgresql)"


def pg_bin_dirs() -> list[Path]:
    """Directories holding initdb/pg_ctl/postgres: the machine's (newest first; Debian's
    pgbackrest supports its own distribution's PostgreSQL), then PyPI pgserver's."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    out = [p for p in found if (p / "initdb").exists()]
    with contextlib.suppress(ImportError):
        import pgserver

        bundled = Path(pgserver.__file__).parent / "pginstall" / "bin"
        if (bundled / "initdb").exists():
            out.append(bundled)
    return out


def require_pgbackrest() -> str:
    path = shutil.which("pgbackrest")
    if not path:
        raise AssertionError(f"pgbackrest is not installed: {INSTALL_HINT}")
    return path


@dataclass
class OsUser:
    """Who runs the cluster: this process's user, or `postgres` when that is root."""

    name: str
    uid: int
    gid: int

    @classmethod
    def for_cluster(cls) -> OsUser:
        if os.geteuid() != 0:
            me = pwd.getpwuid(os.geteuid())
            return cls(me.pw_name, me.pw_uid, me.pw_gid)
        try:
            pg = pwd.getpwnam("postgres")
        except KeyError:
            raise AssertionError(
                "running as root, and PostgreSQL refuses to: no `postgres` OS user to run "
                f"the cluster as ({INSTALL_HINT})"
            ) from None
        return cls("postgres", pg.pw_uid, pg.pw_gid)

    def run(self, args: list[str], cwd: Path, timeout: float = 300) -> str:
        """Run a command as this user; its output. Fails with the output on an error."""
        kw: dict[str, Any] = {}
        if os.geteuid() == 0 and self.uid != 0:
            kw = {"user": self.uid, "group": self.gid, "extra_groups": []}
        done = subprocess.run(
            args, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False, **kw
        )
        if done.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
            )
        return done.stdout

    def own(self, path: Path) -> None:
        if os.geteuid() == 0:
            os.chown(path, self.uid, self.gid)


class Cluster:
    """A cluster in `base` (its data directory `data`, its socket directory `base`)."""

    def __init__(self, bin_dir: Path, base: Path, user: OsUser, port: int) -> None:
        self.bin, self.base, self.user, self.port = bin_dir, base, user, port
        self.data = base / "data"

    @classmethod
    def create(cls, bin_dir: Path, user: OsUser) -> Cluster:
        base = Path(tempfile.mkdtemp(prefix="shipyard-pgc-"))
        user.own(base)
        cluster = cls(bin_dir, base, user, free_port())
        user.run(
            [str(bin_dir / "initdb"), "-D", str(cluster.data), "-A", "trust", "-E", "UTF8"],
            cwd=base,
        )
        cluster.configure(
            {
                "port": str(cluster.port),
                "listen_addresses": "'127.0.0.1'",
                "unix_socket_directories": f"'{base}'",
                "fsync": "off",  # a test cluster: nothing here must survive a power cut
            }
        )
        return cluster

    @property
    def url(self) -> str:
        return f"postgresql://{self.user.name}@127.0.0.1:{self.port}/postgres"

    @property
    def major(self) -> int:
        m = re.match(r"\d+", (self.data / "PG_VERSION").read_text())
        return int(m.group(0)) if m else 0

    def configure(self, values: dict[str, str]) -> None:
        """Append `name = value` lines to postgresql.conf (the last one of a name wins)."""
        with (self.data / "postgresql.conf").open("a") as f:
            f.writelines(f"{k} = {v}\n" for k, v in values.items())

    def start(self) -> None:
        self.user.run(
            [str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.base / "pg.log"),
             "-w", "-t", "120", "start"],
            cwd=self.base,
        )  # fmt: skip

    def stop(self) -> None:
        self.user.run(
            [str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"],
            cwd=self.base,
        )

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def query(self, sql: str) -> Any:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            row = conn.execute(sql).fetchone()
        return row[0] if row else None

    def switch_and_wait_archived(self, timeout: float = 60) -> str:
        """Close the current WAL segment and wait until the archiver has pushed it."""
        segment = str(self.query("SELECT pg_walfile_name(pg_switch_wal())"))

        def archived() -> bool:
            last = self.query("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
            return bool(last) and str(last)[:24] >= segment

        wait_until(archived, timeout=timeout, step=0.1, what=f"WAL segment {segment} archived")
        return segment

    def wait_promoted(self, timeout: float = 120) -> None:
        wait_until(
            lambda: self.query("SELECT NOT pg_is_in_recovery()"),
            timeout=timeout,
            step=0.1,
            what="the restored cluster out of recovery",
        )

    def destroy(self) -> None:
        if self.running():
            with contextlib.suppress(AssertionError, subprocess.SubprocessError):
                self.stop()
        shutil.rmtree(self.base, ignore_errors=True)
