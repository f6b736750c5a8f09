"""Helpers of the point-in-time recovery tests: a writer that remembers every acknowledged
record with the time of its acknowledgement, the processes running Litestream, and the
supervisor's lock (free once no Litestream of a data directory is left)."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

NOTES = {
    "name": "notes",
    "type": "base",
    "fields": [{"name": "body", "type": "text"}, {"name": "seq", "type": "number"}],
    "listRule": "",
    "viewRule": "",
    "createRule": "",
}


class Writer:
    """Creates `notes` records one after another from a thread until stopped or refused;
    `acks` holds (acknowledged at, record JSON) in order."""

    def __init__(self, url: str, prefix: str = "w") -> None:
        self.url = url
        self.prefix = prefix
        self.acks: list[tuple[float, dict[str, Any]]] = []
        self.stopped = threading.Event()
        self.error = ""
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Writer:
        self._thread.start()
        return self

    def _run(self) -> None:
        seq = 0
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self.stopped.is_set():
                seq += 1
                try:
                    r = client.post(
                        "/api/collections/notes/records",
                        json={"body": f"{self.prefix}-{seq}-" + "x" * (seq % 50), "seq": seq},
                    )
                except httpx.HTTPError as exc:
                    self.error = repr(exc)
                    return
                if r.status_code != 200:
                    self.error = f"{r.status_code} {r.text}"
                    return
                self.acks.append((time.time(), r.json()))

    def stop(self) -> None:
        self.stopped.set()
        self._thread.join(timeout=30)


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shipyard.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def litestream_pids(config: Path) -> list[int]:
    """Processes running `litestream replicate` with this configuration file."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            argv
            and argv[0].endswith(b"litestream")
            and b"replicate" in argv
            and str(config).encode() in argv
        ):
            out.append(int(d.name))
    return out


def lock_free(data_dir: Path) -> bool:
    """True when nobody holds the PITR lock of `data_dir` (no supervisor, no Litestream)."""
    path = data_dir / ".pitr" / "lock"
    if not path.exists():
        return True
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True
