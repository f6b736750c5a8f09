"""One `litestream replicate` per data directory, run by a supervisor process that
`shipyard serve`'s main process starts before its workers (`start`) and stops after them
(`stop`): restarted when it dies, so their last commits are shipped.

- A process of its own, not a thread of the server: granian forks its workers from the
  main process, and a `subprocess.Popen` in a thread there races those forks (a worker
  inherits the pipe Popen waits on, and the wait never ends: seen here).

- One per machine: the supervisor first takes an exclusive `flock` on
  `<data_dir>/.pitr/lock`; a second `shipyard serve` on the same directory waits for it
  (and takes over if the first one goes). Litestream inherits the locked descriptor, so
  the lock is held while either lives: a restore or another supervisor never runs
  beside an orphaned Litestream.
- Restarts back off from 1 s to 60 s (back to 1 s after a minute of running).
- The supervisor runs in its own session (a Ctrl-C of the terminal reaches the server
  only; the server stops it after its workers) and gets SIGKILL from the kernel when the
  server dies, as Litestream does when the supervisor dies (`PR_SET_PDEATHSIG`; for
  Litestream through `setpriv`): a SIGKILL of the server leaves nothing behind.
- Every few seconds it writes `<data_dir>/.pitr/status.json`: running, pid, restarts,
  and per database the local and replicated transaction ids with how long the replica
  has been behind; `GET /api/health` shows it to superusers.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from shipyard.backups import pitr
from shipyard.logs import lines as log_lines

log = logging.getLogger("shipyard.pitr")

BACKOFF_MIN = 1.0
BACKOFF_MAX = 60.0
STATUS_EVERY = 2.0  # seconds between two status writes (and lag checks)
STOP_GRACE = 15.0  # seconds Litestream gets for its last sync before SIGKILL


def _die_with_parent() -> list[str]:
    """A prefix that makes the kernel SIGKILL Litestream when the supervising thread dies:
    util-linux `setpriv --pdeathsig` where there is one (Debian's essential util-linux).
    Not a `preexec_fn`: Python code between fork and exec can deadlock in a process with
    other threads (granian's), and did here."""
    setpriv = shutil.which("setpriv") if sys.platform.startswith("linux") else None
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []


def _max_txid(names: list[str]) -> int:
    """The highest transaction id among LTX file names (`<min>-<max>.ltx`, hex)."""
    best = 0
    for n in names:
        if n.endswith(".ltx"):
            with contextlib.suppress(ValueError, IndexError):
                best = max(best, int(n[:-4].split("-")[1], 16))
    return best


def local_txid(db: Path) -> int:
    d = db.with_name(f".{db.name}-litestream") / "ltx"
    try:
        return _max_txid([f.name for lvl in d.iterdir() for f in lvl.iterdir()])
    except OSError:
        return 0


class Supervisor:
    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.stopping = threading.Event()
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.since = 0.0
        self.last_exit: int | None = None
        self.holding = False
        self._behind: dict[str, float] = {}
        self._replica: dict[str, int] = {}
        self._checked = 0.0

    def run(self) -> None:
        """Wait for the lock, then keep Litestream running until `stopping` is set."""
        fd = pitr.open_lock(self.settings)
        try:
            waited = False
            while not self.stopping.is_set():
                if pitr.try_lock(fd):
                    self.holding = True
                    break
                if not waited:
                    log.info("pitr: another process replicates this data directory; waiting")
                    waited = True
                self.stopping.wait(1.0)
            if self.holding:
                self._supervise(fd)
        finally:
            self._write_status()
            os.close(fd)

    def _supervise(self, fd: int) -> None:
        backoff = BACKOFF_MIN
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                proc = self._spawn(fd)
            except (OSError, pitr.PitrError) as exc:
                log.error("pitr: cannot start litestream: %s", exc)
            else:
                self._watch(proc)
            if self.stopping.is_set():
                break
            if time.monotonic() - started > BACKOFF_MAX:
                backoff = BACKOFF_MIN
            self.restarts += 1
            log.warning(
                "pitr: litestream exited (status %s); restarting in %.0f s",
                self.last_exit,
                backoff,
            )
            self._write_status()
            self.stopping.wait(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    def _spawn(self, fd: int) -> subprocess.Popen[bytes]:
        cfg = pitr.write_config(self.settings)
        for db in pitr.databases(self.settings):
            db.parent.mkdir(parents=True, exist_ok=True)
        proc = self.proc = subprocess.Popen(  # noqa: S603 - our binary, our arguments
            [
                *_die_with_parent(),
                pitr.litestream_binary(self.settings),
                "replicate",
                "-config",
                str(cfg),
                "-no-expand-env",
            ],
            env=pitr.child_env(self.settings),
            stdin=subprocess.DEVNULL,
            pass_fds=(fd,),
            start_new_session=True,
        )
        self.since = time.time()
        log.info("pitr: litestream %s replicating to %s", proc.pid, pitr.describe(self.settings))
        return proc

    def _watch(self, proc: subprocess.Popen[bytes]) -> None:
        while proc.poll() is None:
            self._write_status()
            if self.stopping.wait(STATUS_EVERY):
                proc.send_signal(signal.SIGTERM)  # a last sync, then it exits
                try:
                    proc.wait(timeout=STOP_GRACE)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                break
        self.last_exit = proc.returncode
        self.proc = None

    # ------------------------------------------------------------------ status

    def _replica_txids(self) -> dict[str, int]:
        """The replica's highest transaction id per database: a directory listing for a
        local replica; `litestream ltx` (one LIST per level) for S3, at most every 15 s."""
        s = self.settings
        out: dict[str, int] = {}
        if not s.backups_pitr_s3:
            for db in pitr.databases(s):
                d = pitr.replica_dir(s) / pitr.replica_name(db) / "ltx"
                with contextlib.suppress(OSError):
                    out[db.name] = _max_txid([f.name for lvl in d.iterdir() for f in lvl.iterdir()])
            return out
        if time.monotonic() - self._checked < 15.0:
            return self._replica
        self._checked = time.monotonic()
        cfg = pitr.state_dir(s) / "litestream.yml"
        for db in pitr.databases(s):
            with contextlib.suppress(OSError, ValueError, subprocess.SubprocessError):
                r = subprocess.run(  # noqa: S603 - our binary, our arguments
                    [
                        pitr.litestream_binary(s),
                        "ltx",
                        "-config",
                        str(cfg),
                        "-no-expand-env",
                        "-level",
                        "all",
                        "-json",
                        str(db),
                    ],
                    env=pitr.child_env(s),
                    capture_output=True,
                    timeout=30,
                )
                files = json.loads(r.stdout) if r.returncode == 0 else []
                out[db.name] = max((int(f["max_txid"], 16) for f in files), default=0)
        self._replica = out
        return out

    def status(self) -> dict[str, Any]:
        now = time.time()
        replica = self._replica_txids() if self.holding else {}
        dbs = {}
        for db in pitr.databases(self.settings):
            local = local_txid(db)
            shipped = replica.get(db.name, 0)
            if local > shipped:
                self._behind.setdefault(db.name, now)
            else:
                self._behind.pop(db.name, None)
            behind = self._behind.get(db.name)
            dbs[db.name] = {
                "localTxid": local,
                "replicaTxid": shipped,
                "lagSeconds": round(now - behind, 1) if behind else 0.0,
            }
        proc = self.proc
        return {
            "running": proc is not None and proc.poll() is None and not self.stopping.is_set(),
            "pid": proc.pid if proc is not None else None,
            "replica": pitr.describe(self.settings),
            "since": self.since,
            "restarts": self.restarts,
            "lastExit": self.last_exit,
            "databases": dbs,
            "checked": now,
        }

    def _write_status(self) -> None:
        if not self.holding:
            return
        try:
            d = pitr.state_dir(self.settings)
            tmp = d / "status.tmp"
            tmp.write_text(json.dumps(self.status()))
            os.replace(tmp, d / "status.json")
        except Exception as exc:  # a status is not worth stopping the replication for
            log.warning("pitr: cannot write the status: %s", exc)


# ---------------------------------------------------------------------- the processes


def start(settings: Any) -> subprocess.Popen[bytes]:
    """The supervisor process, from `shipyard serve` before granian forks anything; it
    reads the same settings from the environment."""
    pitr.litestream_binary(settings)  # a missing binary stops start-up, loudly
    return subprocess.Popen(  # noqa: S603 - this Python, our module
        [sys.executable, "-m", "shipyard.backups.pitr_supervisor", str(os.getpid())],
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_GRACE + 5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> None:
    from shipyard.settings import load_settings

    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the server
    if len(sys.argv) > 1 and os.getppid() != int(sys.argv[1]):
        return  # the server died before the line above
    settings = load_settings()
    log_lines.configure(settings.log_level, settings.log_format)  # as the server's lines
    sup = Supervisor(settings)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sup.stopping.set())
    sup.run()


if __name__ == "__main__":
    main()
