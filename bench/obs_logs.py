"""The cost of writing request logs: a section of `bench/observability.py`'s report.

Three measurements, as markdown (`section(args)`):

1. the stdout access log: JSON lines rendered and written per second by the batched
   writer (to /dev/null), and what the request itself pays (one append);
2. PocketBase's request log `_logs`: rows built and inserted per second in the writer's
   batches (embedded SQLite in a temporary directory);
3. a `shipyard serve` process (1 worker, embedded SQLite) under wrk on a cached records
   list, with the `_logs` request log on and off, and with the stdout lines off as well:
   requests/s and the share of requests the request log recorded (the rest were dropped
   by its bounded queue, never blocking a request).

`args` may carry `duration` (seconds per wrk run, default 10), `warmup` (default 2),
`records` (default 1000) and `keep`; missing ones take the defaults. Runs standalone too:
`python bench/obs_logs.py --duration 5`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

import common  # noqa: E402  (bench/ is not a package)

from shipyard.kernel.telemetry import RequestInfo  # noqa: E402
from shipyard.logs import store  # noqa: E402
from shipyard.logs.lines import LineWriter  # noqa: E402
from shipyard.logs.requests import json_line  # noqa: E402
from shipyard.tools.db import connect  # noqa: E402

LIST_PATH = f"/api/collections/{common.COLLECTION}/records?perPage=20&sort=price"
CONFIGS = [
    ("request log on, stdout lines on (default)", {}),
    ("request log off, stdout lines on", {"SHIPYARD_LOGS_MAX_DAYS": "0"}),
    (
        "request log off, stdout lines off",
        {"SHIPYARD_LOGS_MAX_DAYS": "0", "SHIPYARD_ACCESS_LOG": "0"},
    ),
]


def _info(n: int) -> RequestInfo:
    return RequestInfo(
        request_id=f"{n:032x}",
        method="GET",
        route="/api/collections/{collection}/records",
        path="/api/collections/items/records",
        query="perPage=20&sort=price&token=secret",
        status=200,
        started=time.time(),
        duration=0.00042,
        ip="127.0.0.1",
        user_agent="wrk",
        referer="",
    )


_DATA = {
    "type": "request", "execTime": 0.42, "url": "/api/collections/items/records",
    "method": "GET", "status": 200, "referer": "", "userAgent": "wrk", "auth": "",
    "userIP": "127.0.0.1", "remoteIP": "127.0.0.1",
}  # fmt: skip


def stdout_lines_per_s(n: int = 200_000) -> tuple[float, float]:
    """(lines rendered and written per second, microseconds per append)."""
    infos = [_info(i) for i in range(1000)]
    fd = os.open(os.devnull, os.O_WRONLY)
    try:
        writer: LineWriter[RequestInfo] = LineWriter(json_line, fd=fd, max_lines=n + 1)
        t0 = time.perf_counter()
        for i in range(n):
            writer.add(infos[i % 1000])
        appended = time.perf_counter() - t0
        t0 = time.perf_counter()
        batch = 10_000  # the writer wakes every 50 ms: at 200k req/s that is 10k lines
        items = writer._items
        for start in range(0, n, batch):
            writer._items = items[start : start + batch]
            writer.flush()
        written = time.perf_counter() - t0
    finally:
        os.close(fd)
    return n / written, appended / n * 1e6


async def _rows_per_s(path: Path, n: int) -> float:
    db = await connect("", path)
    try:
        await store.ensure_schema(db)
        info = _info(0)
        t0 = time.perf_counter()
        for start in range(0, n, 1000):  # one flush writes what a second brought
            rows = [
                store.make_row(info.started, 0, "GET /api/collections/items/records", _DATA)
                for _ in range(min(1000, n - start))
            ]
            await store.insert(db, rows)
        return n / (time.perf_counter() - t0)
    finally:
        await db.close()


def log_rows_per_s(tmp: Path, n: int = 50_000) -> float:
    return asyncio.run(_rows_per_s(tmp / "rows.db", n))


def _logged_rows(server: common.Server) -> int:
    assert server.db_path is not None  # start_shipyard sets it
    with sqlite3.connect(server.db_path) as conn:
        return int(conn.execute('SELECT COUNT(*) FROM "_logs"').fetchone()[0])


def server_runs(args: Any, tmp: Path) -> list[tuple[str, common.WrkResult, int]]:
    duration = int(getattr(args, "duration", None) or 10)
    warmup = int(getattr(args, "warmup", None) or 2)
    n_records = int(getattr(args, "records", None) or 1000)
    out = []
    for i, (label, env) in enumerate(CONFIGS):
        where = tmp / f"run{i}"
        where.mkdir()
        server = common.start_shipyard(where, env)
        try:
            common.wait_healthy(server)
            common.authenticate(server)
            common.create_collection(server)
            common.load_records(server, common.make_records(n_records))
            url = server.base + LIST_PATH
            common.wrk(url, f"{warmup}s", latency=False)
            time.sleep(2)  # the request log's writer catches up with the warm-up
            before = _logged_rows(server)
            raw, cmd = common.wrk(url, f"{duration}s")
            result = common.parse_wrk(raw, cmd)
            time.sleep(2)
            recorded = _logged_rows(server) - before
            out.append((label, result, recorded))
        finally:
            server.stop()
    return out


def section(args: Any) -> str:
    """The markdown section: the writers' own rates, then the server with and without."""
    keep = bool(getattr(args, "keep", False))
    tmp = Path(tempfile.mkdtemp(prefix="shipyard-bench-logs-"))
    try:
        lines_s, append_us = stdout_lines_per_s()
        rows_s = log_rows_per_s(tmp)
        runs = server_runs(args, tmp)
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
    base = runs[-1][1].rps if runs else 0.0
    lines = [
        "## Log write cost",
        "",
        "| Writer | Rate |",
        "|---|---|",
        f"| stdout JSON lines (render + batched `os.write`, to /dev/null) | {lines_s:,.0f} lines/s |",
        f"| what a request pays for its line (one append) | {append_us:.2f} µs |",
        f"| `_logs` rows (built + multi-row INSERT, 1,000 a batch, SQLite) | {rows_s:,.0f} rows/s |",
        "",
        f"`shipyard serve` (1 worker, embedded SQLite), wrk -t2 -c64 on `GET {LIST_PATH}` "
        "(cached):",
        "",
        "| Configuration | req/s | vs. no logs | p99 | `_logs` rows written | share recorded |",
        "|---|---|---|---|---|---|",
    ]
    for label, r, recorded in runs:
        share = f"{recorded / r.requests:.0%}" if recorded and r.requests else "—"
        delta = f"{(r.rps / base - 1) * 100:+.1f} %" if base else "—"
        lines.append(
            f"| {label} | {r.rps:,.0f} | {delta} | {common.fmt_ms(r.p99_ms)} | "
            f"{recorded:,} | {share} |"
        )
    lines += [
        "",
        "The request log never blocks a request: past its queue (SHIPYARD_LOGS_QUEUE_MAX, "
        "flushed every SHIPYARD_LOGS_FLUSH_INTERVAL) entries are dropped and counted.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--records", type=int, default=1000)
    ap.add_argument("--keep", action="store_true")
    print(section(ap.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
