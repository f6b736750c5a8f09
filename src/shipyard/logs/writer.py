"""The thread that turns finished requests (and Shipyard's own warnings and errors) into
stdout lines and `_logs` rows, and writes both.

Why a thread: a batch of thousands of rows inserted on the event loop held every request
behind it (p99 of cached reads 13 ms → 90 ms, bench/observability.py). The lines and rows
are rendered on the event loop, a batch of a few hundred requests at a time (requests.py
`render_batch`, about a microsecond a request); the thread only writes them — `os.writev`
and SQLite's own work run with the GIL released, in parallel with requests. (Rendering in
the thread made it hold the GIL against the event loop: measured, cached reads lost a tenth
more.) The `_logs` rows go to the auxiliary database (tools/db.py `auxiliary`), through a connection of this thread's own (SQLite) or through the event
loop's pool (PostgreSQL: the thread waits, the loop does not).

The lines reach the thread as bytes, one string per batch encoded once on the event loop
(a batch of a few hundred: telemetry's FLUSH_AT), and are written with one `os.writev` for all
that waits: the thread takes the GIL twice a write, not once per slice of lines (each time
the loop must be made to let go of it: two thread switches), and no batch of thousands is
ever joined into one string — megabytes fresh from the system, page-faulted in each time
(measured: 6x the CPU of slices the allocator keeps reusing).

Bounded: past `max_pending` entries waiting, new ones are dropped and counted, never
waited for. `flush()` waits until everything submitted before it is written.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from shipyard.kernel.telemetry import RequestInfo
from shipyard.tools.db import Database
from shipyard.tools.metrics import Counter

from . import store
from .requests import Options, render_batch
from .store import Row

log = logging.getLogger("shipyard.logs")

RowSink = Callable[[Sequence[Row]], None]  # writes rows (in the writer thread) or raises
IOV_MAX = 1024  # buffers one `os.writev` takes (POSIX's minimum; Linux's)


def sqlite_sink(path: Path, busy_timeout_ms: int) -> RowSink:
    """Rows into the SQLite file at `path`, through a connection of the writer thread."""
    local = threading.local()

    def write(rows: Sequence[Row]) -> None:
        conn: sqlite3.Connection | None = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = sqlite3.connect(str(path), isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("BEGIN IMMEDIATE")
        try:
            for sql, params in store.insert_statements(rows, "sqlite"):
                conn.execute(sql, params)
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    return write


def loop_sink(db: Database, loop: asyncio.AbstractEventLoop, timeout: float = 60.0) -> RowSink:
    """Rows through `db` on the event loop (PostgreSQL's async pool); the thread waits."""

    def write(rows: Sequence[Row]) -> None:
        asyncio.run_coroutine_threadsafe(store.insert(db, rows), loop).result(timeout)

    return write


@dataclass(slots=True)
class _Batch:
    data: bytes  # whole lines, each ending with a newline
    lines: int  # how many
    rows: list[Row]
    count: int  # requests it holds


@dataclass(slots=True)
class _Event:
    record: logging.LogRecord
    options: Options


class _Tally:
    """Written and dropped entries of one log, counted by the thread, reported by the loop
    into `shipyard_log_entries_total{log, result}`."""

    __slots__ = ("dropped", "label", "reported", "written")

    def __init__(self, label: str) -> None:
        self.label = label
        self.written = self.dropped = 0
        self.reported = (0, 0)

    def report(self, counter: Counter | None) -> None:
        written, dropped = self.written, self.dropped
        if counter is not None:
            counter.inc((self.label, "written"), written - self.reported[0])
            counter.inc((self.label, "dropped"), dropped - self.reported[1])
        self.reported = (written, dropped)


class LogWriter:
    def __init__(
        self,
        *,
        lines: bool,
        sink: RowSink | None,
        max_pending: int = 10000,
        fd: int = 1,
        event_row: Callable[[logging.LogRecord, Options], Row | None] | None = None,
    ) -> None:
        self.lines = lines  # JSON request lines on `fd`
        self.sink = sink  # where `_logs` rows go (None: nowhere)
        self.fd = fd
        self.max_pending = max_pending
        self.event_row = event_row
        self.stdout = _Tally("stdout")
        self.requests = _Tally("requests")
        self.counter: Counter | None = None
        self._queue: queue.SimpleQueue[_Batch | _Event | Future[None] | None] = queue.SimpleQueue()
        self._submitted = 0  # entries put (the loop's count)
        self._taken = 0  # entries taken (the thread's count)
        self._events_put = self._events_taken = 0  # the same for Shipyard's own events
        self._thread: threading.Thread | None = None
        self._warned = False

    # ------------------------------------------------------------------ producers

    def submit(self, infos: Sequence[RequestInfo], options: Options) -> None:
        """A batch of finished requests (from the event loop), rendered here: as many as
        there is room for, the rest dropped and counted."""
        infos = self.admit(infos, options.enabled, 0)
        if not infos:
            return
        data, lines, rows = render_batch(infos, options, self.lines)
        self.put(data, lines, rows, len(infos))

    def put(self, data: bytes, lines: int, rows: list[Row], count: int) -> None:
        """The rendered lines (requests.py's `render_batch`) and rows of `count` requests, from the event
        loop (the caller made sure there was room: `room`), to be written."""
        if count:
            self._submitted += count
            self._queue.put(_Batch(data, lines, rows, count))

    def room(self) -> int:
        """How many more entries may wait."""
        return max(0, self.max_pending - (self._submitted - self._taken))

    def admit(self, infos: Sequence[RequestInfo], rows: bool, held: int) -> Sequence[RequestInfo]:
        """As many of `infos` as there is room for (`held` more already wait elsewhere for
        this writer); the rest dropped and counted."""
        room = max(self.room() - held, 0)
        if len(infos) > room:
            self.lost(len(infos) - room, rows)
            infos = infos[:room]
        return infos

    def lost(self, n: int, rows: bool) -> None:
        """Count `n` requests dropped before they reached the writer."""
        if self.lines:
            self.stdout.dropped += n
        if rows:
            self.requests.dropped += n

    def event(self, record: logging.LogRecord, options: Options) -> None:
        """One of Shipyard's own warnings or errors, for `_logs` (any thread but ours);
        bounded like requests (a storm of warnings is dropped and counted, not kept)."""
        if threading.current_thread() is self._thread:
            return  # what the writer itself logs (a failed write) is not recorded again
        if self._events_put - self._events_taken >= self.max_pending:
            self.requests.dropped += 1
            return
        self._events_put += 1
        self._queue.put(_Event(record, options))

    # ------------------------------------------------------------------ life cycle

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="shipyard-logs", daemon=True)
            self._thread.start()

    async def flush(self) -> None:
        """Wait until everything submitted so far is written."""
        if self._thread is None:
            return
        done: Future[None] = Future()
        self._queue.put(done)
        await asyncio.wrap_future(done)

    async def close(self) -> None:
        if self._thread is None:
            return
        await self.flush()
        self._queue.put(None)
        await asyncio.to_thread(self._thread.join, 30)
        self._thread = None

    def report(self) -> None:
        self.stdout.report(self.counter)
        self.requests.report(self.counter)

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            items = [item]
            while not self._queue.empty() and len(items) < 64:  # what else is waiting
                items.append(self._queue.get())
            stop = self._write(items)
            if stop:
                return

    def _write(self, items: list[_Batch | _Event | Future[None] | None]) -> bool:
        chunks: list[tuple[bytes, int]] = []
        rows: list[Row] = []
        waiting: list[Future[None]] = []
        stop = False
        for item in items:
            if isinstance(item, _Batch):
                self._taken += item.count
                if item.lines:
                    chunks.append((item.data, item.lines))
                rows += item.rows
            elif isinstance(item, _Event):
                self._events_taken += 1
                row = self.event_row(item.record, item.options) if self.event_row else None
                if row is not None:
                    rows.append(row)
            elif isinstance(item, Future):
                waiting.append(item)
            else:
                stop = True
        if chunks:
            self._write_lines(chunks)
        if rows:
            self._write_rows(rows)
        for done in waiting:
            done.set_result(None)
        return stop

    def _write_lines(self, chunks: list[tuple[bytes, int]]) -> None:
        """The chunks (bytes of whole lines, how many lines) with as few `os.writev` as the
        system takes (one, unless a pipe takes part of it), the GIL released meanwhile."""
        done = 0  # chunks written whole
        try:
            while done < len(chunks):
                n = os.writev(self.fd, [c for c, _ in chunks[done : done + IOV_MAX]])
                while done < len(chunks) and n >= len(chunks[done][0]):
                    n -= len(chunks[done][0])
                    self.stdout.written += chunks[done][1]
                    done += 1
                if n:  # part of a chunk: the rest of it goes first next time
                    data, lines = chunks[done]
                    chunks[done] = (data[n:], lines)
        except Exception:  # stdout closed or full: the lines are lost, the server goes on
            self.stdout.dropped += sum(lines for _, lines in chunks[done:])

    def _write_rows(self, rows: list[Row]) -> None:
        if self.sink is None:
            return
        try:
            self.sink(rows)
            self.requests.written += len(rows)
            self._warned = False
        except Exception as exc:
            self.requests.dropped += len(rows)
            if not self._warned:  # once per outage
                self._warned = True
                log.warning("could not write %d request log entries: %s", len(rows), exc)


__all__ = ["LogWriter", "RowSink", "loop_sink", "sqlite_sink"]
