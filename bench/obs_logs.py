"""The cost of writing request logs: a section of `bench/observability.py`'s report.

Three measurements, as markdown (`section(args)`):

1. the stdout access log: JSON lines rendered and written per second by the log writer
   (to /dev/null), and what the request itself pays (one append to the telemetry batch);
2. PocketBase's request log `_logs`: rows rendered and inserted per second as the log
   writer's thread does it (embedded SQLite in a temporary directory);
3. a `shipyard serve` process (1 worker, embedded SQLite, the defaults) under wrk on a
   cached records list: requests/s and the share of requests the request log recorded
   (the rest would have been dropped by its bounded queue, never blocking a request).

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

from shipyard.kernel.telemetry import RequestInfo, Telemetry  # noqa: E402
from shipyard.logs import store  # noqa: E402
from shipyard.logs.requests import Options, render_request  # noqa: E402
from shipyard.logs.writer import LogWriter, sqlite_sink  # noqa: E402
from shipyard.tools.db import connect  # noqa: E402

LIST_PATH = f"/api/collections/{common.COLLECTION}/records?perPage=20&sort=price"
CONFIGS = [("request log on, stdout lines on (the defaults)", {})]


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


def stdout_lines_per_s(n: int = 200_000) -> tuple[float, float]:
    """(lines rendered and written per second, microseconds a request pays to be kept)."""
    infos = [_info(i) for i in range(1000)]
    telemetry = Telemetry(metrics_enabled=False)
    t0 = time.perf_counter()
    for i in range(n):
        telemetry.request_done(infos[i % 1000])
    kept = time.perf_counter() - t0
    fd = os.open(os.devnull, os.O_WRONLY)
    try:
        writer = LogWriter(lines=True, sink=None, fd=fd)
        lines_only = Options(enabled=False)
        t0 = time.perf_counter()
        batch = 1_000  # what the writer gets every 50 ms at 20k req/s
        for _ in range(n // batch):
            rendered = [render_request(info, lines_only)[0] or "" for info in infos]
            writer._write_lines(rendered)
        written = time.perf_counter() - t0
    finally:
        os.close(fd)
    return n / written, kept / n * 1e6


async def _rows_per_s(path: Path, n: int) -> float:
    db = await connect("", path)
    try:
        await store.ensure_schema(db)
    finally:
        await db.close()
    sink = sqlite_sink(path, 5000)
    infos = [_info(i) for i in range(1000)]
    rows_only = Options()
    t0 = time.perf_counter()
    for _ in range(n // 1000):  # one batch: what a second brought
        sink([row for info in infos if (row := render_request(info, rows_only, False)[1])])
    return n / (time.perf_counter() - t0)


def log_rows_per_s(tmp: Path, n: int = 50_000) -> float:
    return asyncio.run(_rows_per_s(tmp / "rows.db", n))


def _logged_rows(server: common.Server) -> int:
    assert server.db_path is not None  # start_shipyard sets it
    with sqlite3.connect(server.db_path.with_name("auxiliary.db")) as conn:
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
    lines = [
        "## Log write cost",
        "",
        "| Writer | Rate |",
        "|---|---|",
        f"| stdout JSON lines (rendered + one `os.write` a batch, to /dev/null) | {lines_s:,.0f} lines/s |",
        f"| what a request pays to be logged (one append to the telemetry batch) | {append_us:.2f} µs |",
        f"| `_logs` rows (rendered + multi-row INSERT, 1,000 a batch, SQLite, the writer thread's way) | {rows_s:,.0f} rows/s |",
        "",
        f"`shipyard serve` (1 worker, embedded SQLite), wrk -t2 -c64 on `GET {LIST_PATH}` "
        "(cached):",
        "",
        "| Configuration | req/s | p99 | `_logs` rows written | share recorded |",
        "|---|---|---|---|---|",
    ]
    for label, r, recorded in runs:
        share = f"{recorded / r.requests:.0%}" if recorded and r.requests else "—"
        lines.append(
            f"| {label} | {r.rps:,.0f} | {common.fmt_ms(r.p99_ms)} | {recorded:,} | {share} |"
        )
    lines += [
        "",
        "The request log never blocks a request: past SHIPYARD_LOGS_QUEUE_MAX entries waiting "
        "for the writer, new ones are dropped and counted (`shipyard_log_entries_total`).",
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
