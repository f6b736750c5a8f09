"""Handler-start stamps for `bench/jobs.py`, shared by both systems' latency tasks."""

from __future__ import annotations

import os
import time

_fd: int | None = None


def stamp(system: str, i: int) -> None:
    """Append `<i> <epoch seconds>` to this process's file in `$BENCH_JOBS_STAMPS`: one
    unbuffered O_APPEND write, so nothing is lost when the worker is stopped."""
    global _fd
    now = time.time()
    if _fd is None:
        path = os.path.join(os.environ["BENCH_JOBS_STAMPS"], f"{system}-{os.getpid()}.txt")
        _fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.write(_fd, f"{i} {now!r}\n".encode())
