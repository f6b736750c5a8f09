#!/usr/bin/env python
"""Job queue benchmark: Shipyard vs procrastinate, side by side, in one run.

For each system x engine x number of worker processes (Shipyard on SQLite and on
PostgreSQL, procrastinate on the same PostgreSQL server; 1 and 2 processes, the same
concurrency in each):

  1. a fresh database (PostgreSQL: a new database on the server, dropped afterwards;
     SQLite: a temporary data directory) and the system's schema;
  2. throughput: enqueue N no-op jobs with the library's normal API (Shipyard:
     `Jobs.enqueue(..., tx=tx)` inside transactions of `--batch` jobs; procrastinate:
     `batch_defer_async` in batches of the same size), then start the worker processes
     (`shipyard worker` / `procrastinate worker`) and poll the tables until every job is
     done; jobs/s = N / (last job finished - first job started), from the timestamps the
     workers wrote;
  3. latency, with the same workers now idle: enqueue `--rate` jobs per second, one per
     transaction, for `--seconds`; enqueue-to-start of each job from the database (Shipyard:
     `attempted_at - created_at` in `_jobs`; procrastinate: `started` - `deferred` in
     `procrastinate_events`) and as the handler saw it (the time its handler started minus
     the time this script's enqueue commit returned);
  4. verification: every job completed exactly once (one attempt, no retries, the counts
     match, every latency job's handler ran exactly once); otherwise the run is marked
     FAILED and the script exits 1.

Workers are always stopped (whole process group) and databases dropped in a `finally`, also
on Ctrl-C or failure. Writes a markdown report (bench/results/jobs.md) and prints it.

    python bench/jobs.py [--jobs 10000] [--workers 1,2] [--concurrency 10] [--quick]
"""

from __future__ import annotations

import abc
import argparse
import asyncio
import contextlib
import datetime as dt
import functools
import os
import platform
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    HERE,
    ROOT,
    BenchError,
    db_url,
    exit_cleanly_on_signals,
    git_rev,
    machine_info,
    pg_admin,
    pg_reachable,
    pkg_version,
    system_busy_s,
    wait_quiet,
)

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
HOOKS = HERE / "jobs_hooks.py"
NOOP, STAMP = "bench_noop", "bench_stamp"
SYSTEMS = ("shipyard-sqlite", "shipyard-postgres", "procrastinate")


@dataclass
class Config:
    system: str  # one of SYSTEMS
    workers: int

    @property
    def name(self) -> str:
        return self.system.split("-")[0]

    @property
    def engine(self) -> str:
        return "SQLite" if self.system == "shipyard-sqlite" else "PostgreSQL"

    @property
    def label(self) -> str:
        return f"{self.name} / {self.engine} / {self.workers} worker(s)"


@dataclass
class Result:
    cfg: Config
    concurrency: int
    jobs: int = 0
    enqueue_s: float = 0.0
    drain_s: float = 0.0  # first job started -> last job finished (workers' timestamps)
    wall_s: float = 0.0  # workers spawned -> every job seen done by the poller
    busy_share: float = 0.0  # all CPUs busy during the drain (anything on the machine)
    analyzed: str = "-"  # job table had planner statistics after the drain (PostgreSQL)
    latency_ms: list[float] = field(default_factory=list)  # database timestamps
    handler_ms: list[float] = field(default_factory=list)  # handler start - commit returned
    rate_achieved: float = 0.0
    verified: str = ""
    error: str = ""
    worker_cmd: str = ""
    logs: list[Path] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        return self.jobs / self.drain_s if self.drain_s > 0 else 0.0

    @property
    def enqueue_rate(self) -> float:
        return self.jobs / self.enqueue_s if self.enqueue_s > 0 else 0.0


# --------------------------------------------------------------------------- helpers


class TimeLimit(Exception):
    """--time-limit passed: abort every remaining run (cleanup still happens)."""


def set_time_limit(seconds: int) -> None:
    def handler(_signum: int, _frame: Any) -> None:
        raise TimeLimit(f"time limit of {seconds}s exceeded")

    signal.signal(signal.SIGALRM, handler)
    signal.alarm(seconds)


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) with linear interpolation between the closest ranks."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def fmt_ms(v: float) -> str:
    if v != v:  # nan
        return "-"
    return f"{v:.1f} ms" if v < 100 else f"{v:.0f} ms"


class Cleanup:
    """What a run leaves behind — worker process groups, databases, directories — undone in
    reverse order, also on errors and Ctrl-C."""

    def __init__(self) -> None:
        self.actions: list[tuple[str, Callable[[], None]]] = []

    def push(self, what: str, fn: Callable[[], None]) -> None:
        self.actions.append((what, fn))

    def run(self) -> None:
        while self.actions:
            what, fn = self.actions.pop()
            try:
                fn()
            except Exception as exc:
                print(f"warning: cleanup of {what} failed: {exc}", file=sys.stderr)


def stop_group(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


@dataclass
class Workers:
    procs: list[subprocess.Popen[bytes]]
    logs: list[Path]

    def check_alive(self) -> None:
        for proc, log in zip(self.procs, self.logs, strict=True):
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-3000:]
                raise BenchError(f"worker {proc.pid} exited with {proc.returncode}; log:\n{tail}")

    def stop(self) -> None:
        for proc in self.procs:
            stop_group(proc)


def spawn_workers(
    cmd: list[str], env: dict[str, str], count: int, workdir: Path, cleanup: Cleanup
) -> Workers:
    procs, logs = [], []
    for k in range(count):
        log = workdir / f"worker-{k}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, cwd=workdir, env=env,
                start_new_session=True,  # stop_group() kills the whole group
            )  # fmt: skip
        cleanup.push(f"worker {proc.pid}", functools.partial(stop_group, proc))
        procs.append(proc)
        logs.append(log)
    return Workers(procs, logs)


def clean_env() -> dict[str, str]:
    """The caller's environment without any SHIPYARD_*/PROCRASTINATE_* settings."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SHIPYARD_", "PROCRASTINATE_", "BENCH_"))
    }


def python_path() -> str:
    """bench/ (the hooks and the procrastinate app), then the caller's PYTHONPATH."""
    return os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)


def read_stamps(stamps: Path, prefix: str) -> dict[int, list[float]]:
    out: dict[int, list[float]] = {}
    for f in stamps.glob(f"{prefix}-*.txt"):
        for line in f.read_text().splitlines():
            i, at = line.split()
            out.setdefault(int(i), []).append(float(at))
    return out


async def sleep_until(t: float) -> None:
    delay = t - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)


async def wait_for(
    what: str,
    done: Callable[[], Awaitable[bool]],
    workers: Workers,
    timeout: float,
    interval: float = 0.05,
) -> None:
    deadline = time.monotonic() + timeout
    while not await done():
        workers.check_alive()
        if time.monotonic() > deadline:
            raise BenchError(f"{what}: not done after {timeout:.0f} s")
        await asyncio.sleep(interval)


# --------------------------------------------------------------------------- the systems


class System(abc.ABC):
    """One system on one database: enqueue, poll, read the timestamps, verify."""

    worker_cmd: list[str]
    worker_env: dict[str, str]
    env_text: str  # the worker's environment as the report shows it
    enqueue_api: str

    @abc.abstractmethod
    async def open(self) -> None: ...
    @abc.abstractmethod
    async def close(self) -> None: ...
    @abc.abstractmethod
    async def enqueue_noops(self, n: int, batch: int) -> None: ...
    @abc.abstractmethod
    async def enqueue_stamp(self, i: int) -> None: ...
    @abc.abstractmethod
    async def done(self, kind: str) -> int:
        """Jobs of `kind` completed."""

    @abc.abstractmethod
    async def failed(self) -> str:
        """Jobs that failed or were retried (none may), described; "" when none."""

    @abc.abstractmethod
    async def window(self) -> tuple[float, float]:
        """(first no-op job started, last no-op job finished), epoch seconds."""

    @abc.abstractmethod
    async def latencies(self) -> dict[int, tuple[float, float]]:
        """Latency job i -> (enqueued, started), epoch seconds, as the database has them."""

    async def analyzed(self) -> str:
        """PostgreSQL: whether the job table had planner statistics (ANALYZE, usually
        autovacuum's) by the end of the drain; they change the claim's plan."""
        return "-"

    @abc.abstractmethod
    async def verify(self, n: int, m: int) -> str:
        """Every job completed exactly once, or BenchError; returns what was checked."""


class Shipyard(System):
    enqueue_api = "`svc.jobs.enqueue(kind, args, tx=tx)` inside `async with svc.db.transaction()`"

    def __init__(self, url: str, data_dir: Path, concurrency: int, stamps: Path) -> None:
        self.url, self.data_dir = url, data_dir
        env = clean_env()
        env.update(
            SHIPYARD_DATABASE_URL=url,
            SHIPYARD_DATA_DIR=str(data_dir),
            SHIPYARD_HOOKS=str(HOOKS),
            SHIPYARD_JOBS_CONCURRENCY=str(concurrency),
            SHIPYARD_LOG_LEVEL="warning",
            PYTHONPATH=python_path(),
            BENCH_JOBS_STAMPS=str(stamps),
        )
        self.worker_env = env
        self.worker_cmd = [sys.executable, "-m", "shipyard.cli", "worker"]
        db_text = "<fresh database>" if url else "''"
        self.env_text = (
            f"SHIPYARD_DATABASE_URL={db_text} "
            "SHIPYARD_DATA_DIR=<tmp> "
            f"SHIPYARD_HOOKS=bench/jobs_hooks.py SHIPYARD_JOBS_CONCURRENCY={concurrency} "
            "PYTHONPATH=bench"
        )

    async def open(self) -> None:
        from shipyard.services import Services
        from shipyard.settings import load_settings

        settings = load_settings(
            env={"SHIPYARD_CONFIG": str(self.data_dir / "absent.toml")},
            database_url=self.url,
            data_dir=str(self.data_dir),
            hooks=str(HOOKS),
            jobs_worker=False,
            log_level="warning",
        )
        self.svc = await Services.open(settings)
        self.q = self.svc.jobs.queue
        self.t = self.q.table

    async def close(self) -> None:
        await self.svc.close()

    async def enqueue_noops(self, n: int, batch: int) -> None:
        for start in range(0, n, batch):
            async with self.svc.db.transaction() as tx:
                for _ in range(min(batch, n - start)):
                    await self.svc.jobs.enqueue(NOOP, {}, tx=tx)

    async def enqueue_stamp(self, i: int) -> None:
        async with self.svc.db.transaction() as tx:
            await self.svc.jobs.enqueue(STAMP, {"i": i}, tx=tx)

    async def done(self, kind: str) -> int:
        row = await self.q.db.fetchone(
            f'SELECT COUNT(*) FROM "{self.t}" WHERE "kind" = ? AND "state" = \'completed\'',
            (kind,),
        )
        return int(row[0]) if row else 0

    async def failed(self) -> str:
        rows = await self.q.db.fetchall(
            f'SELECT "id", "kind", "state", "attempt", "errors" FROM "{self.t}" '
            "WHERE \"state\" IN ('retryable', 'discarded', 'cancelled') OR \"attempt\" > 1 "
            "LIMIT 3"
        )
        return "; ".join(f"job {r[0]} ({r[1]}) {r[2]} attempt {r[3]}: {r[4][:500]}" for r in rows)

    async def window(self) -> tuple[float, float]:
        row = await self.q.db.fetchone(
            f'SELECT MIN("attempted_at"), MAX("finished_at") FROM "{self.t}" WHERE "kind" = ?',
            (NOOP,),
        )
        assert row is not None
        return float(row[0]), float(row[1])

    async def latencies(self) -> dict[int, tuple[float, float]]:
        import orjson

        rows = await self.q.db.fetchall(
            f'SELECT "args", "created_at", "attempted_at" FROM "{self.t}" WHERE "kind" = ?',
            (STAMP,),
        )
        return {int(orjson.loads(a)["i"]): (float(c), float(s)) for a, c, s in rows}

    async def analyzed(self) -> str:
        if not self.q.pg:
            return "-"
        row = await self.q.db.fetchone(
            "SELECT COALESCE(last_analyze, last_autoanalyze) IS NOT NULL "
            "FROM pg_stat_user_tables WHERE relname = ?",
            (self.t,),
        )
        return "yes" if row and row[0] else "no"

    async def verify(self, n: int, m: int) -> str:
        rows = await self.q.db.fetchall(
            f'SELECT "kind", "state", "attempt", COUNT(*), COUNT(DISTINCT "worker") '
            f'FROM "{self.t}" GROUP BY "kind", "state", "attempt"'
        )
        got = {(k, s, int(a)): int(c) for k, s, a, c, _ in rows}
        want = {(NOOP, "completed", 1): n, (STAMP, "completed", 1): m}
        if got != want:
            raise BenchError(f"shipyard: jobs by (kind, state, attempt) {got}, expected {want}")
        workers = {k: int(w) for k, _, _, _, w in rows}
        return (
            f"{n} + {m} jobs, each `completed` after exactly one attempt; "
            f"no-op jobs ran on {workers[NOOP]} worker(s)"
        )


class Procrastinate(System):
    enqueue_api = (
        "`task.batch_defer_async(*kwargs)` per batch (throughput), `task.defer_async(i=…)` "
        "(latency)"
    )

    def __init__(self, url: str, concurrency: int, stamps: Path) -> None:
        self.url = url
        env = clean_env()
        env.update(BENCH_PG_URL=url, PYTHONPATH=python_path(), BENCH_JOBS_STAMPS=str(stamps))
        self.worker_env = env
        self.worker_cmd = [
            *(
                sys.executable,
                "-m",
                "procrastinate",
                "--app=jobs_procrastinate.app",
                "--log-level=warning",
            ),
            *("worker", "--concurrency", str(concurrency)),
        ]
        self.env_text = "BENCH_PG_URL=<fresh database> PYTHONPATH=bench"

    async def open(self) -> None:
        import psycopg
        from jobs_procrastinate import make_app

        self.app = make_app(self.url)
        await self.app.open_async()
        await self.app.schema_manager.apply_schema_async()
        self.noop = self.app.configure_task(NOOP, allow_unknown=False)
        self.stamp = self.app.configure_task(STAMP, allow_unknown=False)
        self.conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)

    async def close(self) -> None:
        await self.conn.close()
        await self.app.close_async()

    async def enqueue_noops(self, n: int, batch: int) -> None:
        for start in range(0, n, batch):
            await self.noop.batch_defer_async(*({} for _ in range(min(batch, n - start))))

    async def enqueue_stamp(self, i: int) -> None:
        await self.stamp.defer_async(i=i)

    async def _one(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        cur = await self.conn.execute(sql.encode(), params)
        return await cur.fetchone()

    async def done(self, kind: str) -> int:
        row = await self._one(
            "SELECT COUNT(*) FROM procrastinate_jobs WHERE task_name = %s AND status = 'succeeded'",
            (kind,),
        )
        return int(row[0])

    async def failed(self) -> str:
        cur = await self.conn.execute(
            "SELECT id, task_name, status::text, attempts FROM procrastinate_jobs "
            "WHERE status IN ('failed', 'cancelled', 'aborted') OR attempts > 1 LIMIT 3"
        )
        rows = await cur.fetchall()
        return "; ".join(f"job {r[0]} ({r[1]}) {r[2]} after {r[3]} attempt(s)" for r in rows)

    async def window(self) -> tuple[float, float]:
        row = await self._one(
            "SELECT EXTRACT(EPOCH FROM MIN(e.at) FILTER (WHERE e.type = 'started')), "
            "EXTRACT(EPOCH FROM MAX(e.at) FILTER (WHERE e.type = 'succeeded')) "
            "FROM procrastinate_events e JOIN procrastinate_jobs j ON j.id = e.job_id "
            "WHERE j.task_name = %s",
            (NOOP,),
        )
        return float(row[0]), float(row[1])

    async def latencies(self) -> dict[int, tuple[float, float]]:
        cur = await self.conn.execute(
            "SELECT (j.args->>'i')::int, EXTRACT(EPOCH FROM d.at), EXTRACT(EPOCH FROM s.at) "
            "FROM procrastinate_jobs j "
            "JOIN procrastinate_events d ON d.job_id = j.id AND d.type = 'deferred' "
            "JOIN procrastinate_events s ON s.job_id = j.id AND s.type = 'started' "
            "WHERE j.task_name = %s",
            (STAMP,),
        )
        return {int(i): (float(d), float(s)) for i, d, s in await cur.fetchall()}

    async def analyzed(self) -> str:
        row = await self._one(
            "SELECT COALESCE(last_analyze, last_autoanalyze) IS NOT NULL "
            "FROM pg_stat_user_tables WHERE relname = 'procrastinate_jobs'"
        )
        return "yes" if row and row[0] else "no"

    async def verify(self, n: int, m: int) -> str:
        cur = await self.conn.execute(
            "SELECT task_name, status::text, attempts, COUNT(*) FROM procrastinate_jobs "
            "GROUP BY 1, 2, 3"
        )
        got = {(k, s, int(a)): int(c) for k, s, a, c in await cur.fetchall()}
        want = {(NOOP, "succeeded", 1): n, (STAMP, "succeeded", 1): m}
        if got != want:
            raise BenchError(
                f"procrastinate: jobs by (task, status, attempts) {got}, expected {want}"
            )
        cur = await self.conn.execute(
            "SELECT type::text, COUNT(*), COUNT(DISTINCT job_id) FROM procrastinate_events "
            "GROUP BY 1"
        )
        events = {t: (int(c), int(d)) for t, c, d in await cur.fetchall()}
        total = n + m
        want_ev = {t: (total, total) for t in ("deferred", "started", "succeeded")}
        if events != want_ev:
            raise BenchError(f"procrastinate: events {events}, expected {want_ev}")
        return (
            f"{n} + {m} jobs, each `succeeded` after exactly one attempt; exactly one "
            "deferred, started and succeeded event per job"
        )


# --------------------------------------------------------------------------- one run


async def run_one(
    res: Result, args: argparse.Namespace, pg_admin_url: str | None, cleanup: Cleanup
) -> None:
    """Fill `res` with one configuration's measurements; BenchError if anything is wrong."""
    cfg = res.cfg
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-jobs-{cfg.system}-{cfg.workers}-"))
    if not args.keep:
        cleanup.push(str(tmp), lambda: shutil.rmtree(tmp, ignore_errors=True))
    stamps = tmp / "stamps"
    stamps.mkdir()
    url = ""
    if cfg.engine == "PostgreSQL":
        assert pg_admin_url is not None
        dbname = f"bench_jobs_{cfg.name}_{cfg.workers}_{uuid.uuid4().hex[:8]}"
        pg_admin(pg_admin_url, f'CREATE DATABASE "{dbname}"')
        cleanup.push(
            f"database {dbname}",
            lambda: pg_admin(pg_admin_url, f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'),
        )
        url = db_url(pg_admin_url, dbname)
    sys_: System = (
        Procrastinate(url, args.concurrency, stamps)
        if cfg.name == "procrastinate"
        else Shipyard(url, tmp / "data", args.concurrency, stamps)
    )
    res.worker_cmd = f"{sys_.env_text} {shlex.join(sys_.worker_cmd)}".replace(
        sys.executable, "python"
    )
    await sys_.open()
    workers: Workers | None = None
    try:
        n, m = args.jobs, int(args.rate * args.seconds)
        # ---- throughput: enqueue everything, then start the workers and drain
        t0 = time.perf_counter()
        await sys_.enqueue_noops(n, args.batch)
        res.enqueue_s = time.perf_counter() - t0
        if args.wait_quiet:
            wait_quiet(args.wait_quiet)
        b0, w0 = system_busy_s(), time.monotonic()
        workers = spawn_workers(sys_.worker_cmd, sys_.worker_env, cfg.workers, tmp, cleanup)
        res.logs = workers.logs

        async def drained() -> bool:
            bad = await sys_.failed()
            if bad:
                raise BenchError(f"{cfg.label}: jobs failed or were retried: {bad}")
            return await sys_.done(NOOP) >= n

        await wait_for("drain", drained, workers, timeout=120 + n / 50, interval=0.1)
        res.wall_s = time.monotonic() - w0
        res.busy_share = (system_busy_s() - b0) / (res.wall_s * (os.cpu_count() or 1))
        first, last = await sys_.window()
        res.jobs, res.drain_s = n, last - first
        res.analyzed = await sys_.analyzed()

        # ---- latency: idle workers, one job per transaction at a steady rate
        await asyncio.sleep(1.0)
        committed: dict[int, float] = {}
        t0 = time.perf_counter()
        for i in range(m):
            await sleep_until(t0 + i / args.rate)
            await sys_.enqueue_stamp(i)
            committed[i] = time.time()
        res.rate_achieved = m / (time.perf_counter() - t0) if m else 0.0

        async def stamped() -> bool:
            bad = await sys_.failed()
            if bad:
                raise BenchError(f"{cfg.label}: jobs failed or were retried: {bad}")
            return await sys_.done(STAMP) >= m

        await wait_for("latency jobs", stamped, workers, timeout=60)
        await asyncio.sleep(0.3)  # a completion batch may still be in flight: verify sees it

        # ---- verification
        res.verified = await sys_.verify(n, m)
        seen = read_stamps(stamps, cfg.name)
        twice = sorted(i for i, v in seen.items() if len(v) != 1)
        missing = sorted(set(range(m)) - set(seen))
        if twice or missing or len(seen) != m:
            raise BenchError(
                f"{cfg.label}: handler stamps wrong: ran more than once {twice[:10]}, "
                f"never ran {missing[:10]}, {len(seen)} distinct of {m}"
            )
        res.verified += f"; each of the {m} latency handlers ran exactly once"
        lat = await sys_.latencies()
        if sorted(lat) != list(range(m)):
            raise BenchError(f"{cfg.label}: {len(lat)} latency rows for {m} jobs")
        res.latency_ms = [(s - c) * 1000 for c, s in lat.values()]
        res.handler_ms = [(seen[i][0] - committed[i]) * 1000 for i in range(m)]
    finally:
        if workers is not None:
            workers.stop()
        await sys_.close()


# --------------------------------------------------------------------------- report


def versions(pg_admin_url: str | None) -> dict[str, str]:
    out = {
        "Shipyard": f"{pkg_version('shipyard')} (commit {git_rev()})",
        "procrastinate": pkg_version("procrastinate"),
        "psycopg": pkg_version("psycopg"),
        "SQLite": sqlite3.sqlite_version,
        "Python": platform.python_version(),
    }
    if pg_admin_url:
        row = pg_admin(pg_admin_url, "SHOW server_version")
        out["PostgreSQL"] = str(row[0]) if row else "?"
    return out


def commit_probe(pg_admin_url: str, n: int = 200) -> str:
    """Median and p90 time of a one-row INSERT that commits (a WAL flush) on the server, in
    a scratch database: what a queue that commits once per job pays per job."""
    import psycopg

    name = f"bench_jobs_probe_{uuid.uuid4().hex[:8]}"
    pg_admin(pg_admin_url, f'CREATE DATABASE "{name}"')
    try:
        with psycopg.connect(db_url(pg_admin_url, name), autocommit=True) as conn:
            conn.execute("CREATE TABLE probe (x int)")
            took = []
            for i in range(n):
                t0 = time.perf_counter()
                conn.execute("INSERT INTO probe VALUES (%s)", (i,))
                took.append((time.perf_counter() - t0) * 1000)
    finally:
        pg_admin(pg_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    settings = ", ".join(
        f"{k} {pg_admin(pg_admin_url, f'SHOW {k}')[0]}" for k in ("synchronous_commit", "fsync")
    )
    return f"p50 {fmt_ms(pct(took, 0.5))}, p90 {fmt_ms(pct(took, 0.9))} ({settings})"


def targets(results: list[Result]) -> list[tuple[str, str, str]]:
    rows = []
    ok = [r for r in results if not r.error]
    for w in sorted({r.cfg.workers for r in ok}):
        sy = [r for r in ok if r.cfg.system == "shipyard-postgres" and r.cfg.workers == w]
        pr = [r for r in ok if r.cfg.system == "procrastinate" and r.cfg.workers == w]
        if sy and pr:
            a, b = sy[0].throughput, pr[0].throughput
            rows.append(
                (
                    f"PostgreSQL throughput above procrastinate's, {w} worker process(es)",
                    f"{a:,.0f} vs {b:,.0f} jobs/s ({a / b:.2f}x)",
                    "yes" if a > b else "**no**",
                )
            )
    for r in ok:
        if r.cfg.name == "shipyard":
            p50 = pct(r.latency_ms, 0.5)
            rows.append(
                (
                    f"p50 enqueue-to-start under 10 ms: Shipyard / {r.cfg.engine} / "
                    f"{r.cfg.workers} worker(s)",
                    fmt_ms(p50),
                    "yes" if p50 < 10 else "**no**",
                )
            )
    return rows


def report(
    results: list[Result],
    args: argparse.Namespace,
    facts: dict[str, Any],
    vers: dict[str, str],
    cmdline: str,
    systems: dict[str, str],
) -> str:
    m = int(args.rate * args.seconds)
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Job queue: Shipyard vs procrastinate",
        "",
        f"Generated by `{cmdline}` on {when}.",
        "",
        "## Targets",
        "",
        "| target | measured | met |",
        "|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in targets(results)]
    failed = [r for r in results if r.error]
    if failed:
        lines += ["", "**FAILED runs** (verification or errors; exit status 1):", ""]
        lines += [f"- {r.cfg.label}: `{r.error.splitlines()[0][:300]}`" for r in failed]
    lines += [
        "",
        f"## Throughput: {args.jobs:,} no-op jobs enqueued first, then drained",
        "",
        f"Concurrency {args.concurrency} per worker process for both systems. *jobs/s* = jobs "
        "÷ (last job finished - first job started), from the workers' own timestamps in the "
        "database; *spawn→done* also counts starting the worker processes and the poller's "
        "0.1 s interval. *machine busy* = share of all CPUs in use during the drain (workers, "
        "PostgreSQL, this script, anything else). *job table analyzed*: whether PostgreSQL "
        "had planner statistics for the job table by the end of the drain (autovacuum runs "
        "ANALYZE on its own schedule; each run starts on a fresh database without any). "
        "Without them Shipyard's claim sorts the whole backlog on every claim (see "
        "bench/README.md), so a run where autovacuum came by mid-drain is faster.",
        "",
        "| system | engine | worker processes | jobs/s | drain | spawn→done | machine busy "
        "| job table analyzed | enqueue jobs/s |",
        "|---|---|---|---:|---:|---:|---:|---|---:|",
    ]
    for r in results:
        if r.error:
            lines.append(f"| {r.cfg.name} | {r.cfg.engine} | {r.cfg.workers} | FAILED ||||||")
            continue
        lines.append(
            f"| {r.cfg.name} | {r.cfg.engine} | {r.cfg.workers} | **{r.throughput:,.0f}** | "
            f"{r.drain_s:.2f} s | {r.wall_s:.2f} s | {r.busy_share:.0%} | {r.analyzed} | "
            f"{r.enqueue_rate:,.0f} |"
        )
    lines += [
        "",
        f"## Enqueue-to-start latency: {m} jobs at {args.rate:g}/s, one per transaction, "
        "workers idle",
        "",
        "*database*: Shipyard `attempted_at - created_at` (`_jobs`; `created_at` is taken just "
        "before the INSERT, `attempted_at` just before the claiming UPDATE); procrastinate "
        "`started - deferred` in `procrastinate_events` (PostgreSQL `now()` of the defer and "
        "of the fetch). *handler*: when the handler started (`time.time()` in the worker) "
        "minus when this script's enqueue commit returned — the whole path, the same for both "
        "systems.",
        "",
        "| system | engine | worker processes | p50 | p90 | p99 | max | handler p50 | "
        "handler p99 | rate achieved |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if r.error:
            lines.append(f"| {r.cfg.name} | {r.cfg.engine} | {r.cfg.workers} | FAILED |||||||")
            continue
        lat, h = r.latency_ms, r.handler_ms
        lines.append(
            f"| {r.cfg.name} | {r.cfg.engine} | {r.cfg.workers} | **{fmt_ms(pct(lat, 0.5))}** "
            f"| {fmt_ms(pct(lat, 0.9))} | {fmt_ms(pct(lat, 0.99))} | {fmt_ms(max(lat))} | "
            f"{fmt_ms(pct(h, 0.5))} | {fmt_ms(pct(h, 0.99))} | {r.rate_achieved:.1f}/s |"
        )
    lines += ["", "## Verification", ""]
    lines += [f"- {r.cfg.label}: {r.error or r.verified}" for r in results]
    lines += [
        "",
        "## How it was run",
        "",
        f"- Machine: {facts['nproc']} CPUs ({facts['cpu']}), {facts['mem']}, Linux "
        f"{facts['kernel']}; load average at the start {facts['load']}. The workers, "
        "PostgreSQL and this script share these CPUs.",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()) + ".",
        f"- PostgreSQL: {facts['pg']}; every run gets its own fresh database on it, dropped "
        "afterwards. SQLite: a fresh temporary data directory per run (WAL, Shipyard's "
        "defaults).",
        f"- PostgreSQL commit latency (one-row INSERT in autocommit, measured at the start): "
        f"{facts['commit'] or '-'}.",
        "- Enqueue APIs (each library's normal one): Shipyard "
        f"{Shipyard.enqueue_api} in transactions of {args.batch} jobs; procrastinate "
        f"{Procrastinate.enqueue_api}, batches of {args.batch}.",
        "- Connection pools: Shipyard's default (`SHIPYARD_DB_POOL_MAX` = 10); procrastinate's "
        "PsycopgConnector with the same maximum (min 1, max 10). Both wake workers with "
        "LISTEN/NOTIFY on a separate connection; Shipyard on SQLite polls `PRAGMA "
        "data_version` every 10 ms.",
        "- Worker commands (one per worker process, each in its own process group):",
    ]
    for name, s in systems.items():
        lines.append(f"  - {name}: `{s}`")
    lines += [
        "",
        "Reading it: on a machine this small the workers, PostgreSQL and the enqueuing script "
        "compete for the same cores; compare the systems within one report, not absolute "
        "numbers across machines. A high *machine busy* share with one worker process means "
        "something else was running.",
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--pg-url", default=DEFAULT_PG, help=f"PostgreSQL server (default {DEFAULT_PG}); not reachable: a throwaway pgserver")  # fmt: skip
    p.add_argument("--jobs", type=int, help="no-op jobs per throughput run (10000; 2000 with --quick)")  # fmt: skip
    p.add_argument("--batch", type=int, default=500, help="jobs per enqueue transaction/batch")
    p.add_argument("--workers", default="1,2", help="worker process counts (default 1,2)")
    p.add_argument("--concurrency", type=int, default=10, help="jobs at once per worker process")
    p.add_argument("--rate", type=float, default=50.0, help="latency phase: jobs per second")
    p.add_argument("--seconds", type=float, help="latency phase length (5; 2 with --quick)")
    p.add_argument("--only", action="append", choices=SYSTEMS, help="run only these (repeatable)")
    p.add_argument("--out", type=Path, help="report path (bench/results/jobs.md; /tmp with --quick)")  # fmt: skip
    p.add_argument("--wait-quiet", type=float, help="wait up to this long for an idle machine before each drain (20; 0 with --quick)")  # fmt: skip
    p.add_argument("--time-limit", type=int, default=1800, help="abort after this many seconds")
    p.add_argument("--quick", action="store_true", help="smoke run: fewer jobs, report in /tmp")
    p.add_argument("--keep", action="store_true", help="keep the temp directories (worker logs)")
    a = p.parse_args()
    a.jobs = a.jobs or (2000 if a.quick else 10000)
    a.seconds = a.seconds or (2.0 if a.quick else 5.0)
    a.wait_quiet = a.wait_quiet if a.wait_quiet is not None else (0 if a.quick else 20)
    quick_out = Path(tempfile.gettempdir()) / "shipyard-jobs-quick.md"
    a.out = a.out or (quick_out if a.quick else HERE / "results/jobs.md")
    a.worker_counts = [int(w) for w in a.workers.split(",") if w.strip()]
    return a


def main() -> int:
    args = parse_args()
    exit_cleanly_on_signals()
    set_time_limit(args.time_limit)
    script = os.path.relpath(sys.argv[0], ROOT) if sys.argv[0].endswith(".py") else sys.argv[0]
    cmdline = "python " + shlex.join([script, *sys.argv[1:]])
    load = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    facts: dict[str, Any] = {**machine_info(), "load": load}
    chosen = args.only or list(SYSTEMS)
    configs = [Config(s, w) for w in args.worker_counts for s in SYSTEMS if s in chosen]
    cleanup = Cleanup()
    results: list[Result] = []
    worker_cmds: dict[str, str] = {}
    try:
        pg_url: str | None = None
        if any(c.engine == "PostgreSQL" for c in configs):
            if pg_reachable(args.pg_url):
                pg_url, facts["pg"] = args.pg_url, f"the server at `{args.pg_url}`"
            else:
                import pgserver

                pgdir = tempfile.mkdtemp(prefix="bench-jobs-pg-")
                print(f"{args.pg_url} not reachable: starting pgserver in {pgdir}")
                srv = pgserver.get_server(pgdir, cleanup_mode="stop")
                # undone in reverse: stop the server, then remove its directory
                cleanup.push(pgdir, lambda: shutil.rmtree(pgdir, ignore_errors=True))
                cleanup.push("pgserver", srv.cleanup)
                pg_url, facts["pg"] = srv.get_uri(), "a throwaway `pgserver` (PyPI)"
        vers = versions(pg_url)
        facts["commit"] = commit_probe(pg_url) if pg_url else ""
        for cfg in configs:
            print(f"== {cfg.label}", flush=True)
            res = Result(cfg, args.concurrency)
            try:
                asyncio.run(run_one(res, args, pg_url, cleanup))
                print(
                    f"   {res.throughput:,.0f} jobs/s (enqueue {res.enqueue_rate:,.0f}/s), "
                    f"latency p50 {fmt_ms(pct(res.latency_ms, 0.5))} "
                    f"p99 {fmt_ms(pct(res.latency_ms, 0.99))}",
                    flush=True,
                )
            except BenchError as exc:
                res.error = str(exc)
                print(f"   FAILED: {exc}", file=sys.stderr, flush=True)
                for log in res.logs:
                    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                    print(f"   --- {log.name}:\n{tail}", file=sys.stderr, flush=True)
            results.append(res)
            if res.worker_cmd:
                worker_cmds.setdefault(cfg.system, res.worker_cmd)
        text = report(results, args, facts, vers, cmdline, worker_cmds)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(text)
        print(f"report written to {args.out}")
    except (BenchError, TimeLimit, KeyboardInterrupt) as exc:
        print(f"bench/jobs.py: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.alarm(0)
        cleanup.run()
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
