"""The queue of writers to one SQLite file, across processes: who writes next, and when.

SQLite lets one connection write at a time and tells the others only "busy". Retrying
after a sleep (SQLite's own busy handler, or ours) wastes the moments the lock is free and
serves whoever happens to retry first: a process that keeps writing keeps the lock while
the others sleep. Measured with 3 processes writing short transactions on 2 cores, the
slowest waits reached 115-181 ms (p99 1.4 ms), and `shipyard serve` with 2-4 processes
creating records had a p99 of 29-134 ms. Here the processes queue in the kernel instead,
with `flock` on two files beside the database:

* `<database>-writers`, the write lock: held from before `BEGIN IMMEDIATE` until after
  `COMMIT`;
* `<database>-turnstile`: a writer takes it before the write lock and lets it go once it
  has the write lock. A process that just committed must pass the turnstile again for its
  next write, behind a process already waiting there, so busy processes take turns.

Inside a process, writers queue on an asyncio lock, so one of them at a time takes part;
it waits for the kernel locks on a thread when they are taken (the event loop goes on
serving reads), and not at all when they are free (a few system calls). A process hands
the lock straight to its own next writer, up to BATCH in a row, because every hand-over
between processes costs a thread's wake-up. A process that dies loses its locks with it.
`flock` locks belong to one open file, not to the process as POSIX record locks do, so two
connections to one file in one process queue too. Writers that do not take part (the
`sqlite3` shell, another tool) are still waited for by the caller's busy retry.

Taking turns costs raw throughput when transactions are trivial: the same 3 processes did
14k transactions a second in all (35k with the unfair retry), with the slowest wait at
11 ms; a request's transaction is a small part of its work, so for `shipyard serve` it is
the tail that moves (bench/writes.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from time import monotonic

# writes in a row a process may do before the turnstile's next process gets the lock
# (measured as above: 1 in a row 9k transactions a second, 8 in a row 14k, 32 in a row
# 14k with the slowest wait at 31 ms instead of 11)
BATCH = 8


class WaitTimeout(Exception):
    """The writers ahead did not finish within the wait allowed."""


class _Ticket:
    """One wait on a thread. A waiter that gave up (timed out, cancelled) marks it; the
    thread, on getting the lock, lets it go at once: the next wait on that thread must not
    find the file already locked by us (it would succeed at once, and a late release would
    then take the lock from under it)."""

    __slots__ = ("abandoned", "got", "lock")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.abandoned = False
        self.got = False


def _try(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _wait(fd: int, ticket: _Ticket) -> None:
    fcntl.flock(fd, fcntl.LOCK_EX)
    with ticket.lock:
        if ticket.abandoned:
            _release(fd)
        else:
            ticket.got = True


def _release(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_UN)


def _open(path: str) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


class WriterQueue:
    """One per database connection (per process): `await acquire(timeout)` before a write
    transaction begins, `release()` after it ended."""

    def __init__(self, database: Path | str) -> None:
        self._write = _open(f"{database}-writers")
        self._turn = _open(f"{database}-turnstile")
        self._local = asyncio.Lock()
        self._pending = 0  # writers of this process waiting for their turn
        self._holding = False  # the last writer kept the write lock for the next one
        self._streak = 0  # writes done since the write lock was taken
        self._pool: ThreadPoolExecutor | None = None  # one thread, made on first contention

    async def acquire(self, timeout: float) -> None:
        """This process's turn to write; WaitTimeout after `timeout` seconds in the queue."""
        deadline = monotonic() + timeout
        local = self._local
        self._pending += 1
        try:
            if local.locked():
                await asyncio.wait_for(local.acquire(), timeout)
            else:
                await local.acquire()
        except BaseException as exc:
            self._pending -= 1
            if self._holding and not self._pending and not local.locked():
                self._holding = False  # kept for a writer that is gone
                _release(self._write)
            if isinstance(exc, TimeoutError):
                raise WaitTimeout from None
            raise
        self._pending -= 1
        if self._holding:  # the previous writer of this process kept the lock for us
            return
        try:
            await self._take(self._turn, deadline)
            try:
                await self._take(self._write, deadline)
            finally:
                _release(self._turn)
        except BaseException:
            local.release()
            raise
        self._streak = 0

    def release(self) -> None:
        """After the write: the lock stays with this process for its next writer already
        waiting, up to BATCH writes in a row; then the turnstile's next process has it."""
        self._streak += 1
        self._holding = bool(self._pending) and self._streak < BATCH
        if not self._holding:
            _release(self._write)
        self._local.release()

    async def _take(self, fd: int, deadline: float) -> None:
        if _try(fd):
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writers")
        ticket = _Ticket()
        loop = asyncio.get_running_loop()
        waiting = loop.run_in_executor(self._pool, _wait, fd, ticket)
        try:
            await asyncio.wait_for(asyncio.shield(waiting), max(0.0, deadline - monotonic()))
        except BaseException as exc:
            with ticket.lock:
                ticket.abandoned = True
                got = ticket.got
            if got:  # it came just now: nobody else can be waiting on the thread yet
                _release(fd)
            if isinstance(exc, TimeoutError):
                raise WaitTimeout from None
            raise

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        for fd in (self._write, self._turn):
            with contextlib.suppress(OSError):
                os.close(fd)
