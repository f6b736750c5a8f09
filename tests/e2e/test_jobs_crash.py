"""Real `shipyard worker` processes sharing one database (SQLite file and PostgreSQL): a batch
is drained with every job run once, and a worker SIGKILLed while it holds running jobs loses
none of them.

The handler sleeps a random short time, then writes its effect — a row in `effects` — in
`ctx.transaction()`, which commits together with the job's completion. With a 3-second
lease, the killed worker's jobs are rescued by the others about one lease later. Exactly
once means: every job completed, and exactly one effect row per job. Without
`ctx.transaction()` delivery is at least once: a killed attempt's effect stays and the job
runs again, so a job may have more effects than one, but never fewer.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from shipyard.services import Services
from shipyard.settings import Settings, load_settings

pytestmark = pytest.mark.e2e

CLI = [sys.executable, "-m", "shipyard.cli"]

HOOKS = """
import asyncio, random
from shipyard.functions import Functions

functions = Functions()


@functions.job("exactly_once", max_attempts=50)
async def exactly_once(ctx, args):
    await asyncio.sleep(random.uniform(*args["sleep"]))
    async with ctx.transaction() as tx:
        await tx.execute(
            "INSERT INTO effects (job_id, worker) VALUES (?, ?)", (ctx.job.id, ctx.job.worker)
        )


@functions.job("at_least_once", max_attempts=50)
async def at_least_once(ctx, args):
    await ctx.db.execute(
        "INSERT INTO effects (job_id, worker) VALUES (?, ?)", (ctx.job.id, ctx.job.worker)
    )
    await asyncio.sleep(random.uniform(*args["sleep"]))
"""


class Cluster:
    """Worker processes on one database, and a `Services` of the test's own to look."""

    def __init__(self, settings: Settings, env: dict[str, str], tmp: Path) -> None:
        self.settings = settings
        self.env = env
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []

    def start_worker(self, concurrency: int = 4) -> subprocess.Popen[bytes]:
        log_path = self.tmp / f"worker{len(self.procs)}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [*CLI, "worker", "--concurrency", str(concurrency)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        proc.log_path = log_path  # type: ignore[attr-defined]
        self.procs.append(proc)
        return proc

    async def ready(self, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
        log_path: Path = proc.log_path  # type: ignore[attr-defined]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError("worker exited:\n" + log_path.read_text(errors="replace"))
            if "Shipyard worker" in log_path.read_text(errors="replace"):
                return
            await asyncio.sleep(0.05)
        raise AssertionError("worker not ready:\n" + log_path.read_text(errors="replace"))

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture
def cluster(database_url: str, tmp_path: Path) -> Any:
    hooks = tmp_path / "crash_hooks.py"
    hooks.write_text(HOOKS)
    data = tmp_path / "data"
    env = {
        **os.environ,
        "SHIPYARD_DATA_DIR": str(data),
        "SHIPYARD_DATABASE_URL": database_url,
        "SHIPYARD_HOOKS": str(hooks),
        "SHIPYARD_JOBS_LEASE": "3",
        "SHIPYARD_JOBS_POLL_INTERVAL": "0.1",
        "SHIPYARD_JOBS_SHUTDOWN_GRACE": "1",
        "SHIPYARD_LOG_LEVEL": "warning",
    }
    settings = load_settings(
        env={}, data_dir=str(data), database_url=database_url, hooks=str(hooks), jobs_lease=3
    )
    c = Cluster(settings, env, tmp_path)
    try:
        yield c
    finally:
        c.stop_all()


async def open_services(settings: Settings) -> Services:
    svc = await Services.open(settings)  # creates the schema before any worker starts
    await svc.db.execute("CREATE TABLE effects (job_id INTEGER NOT NULL, worker TEXT)")
    return svc


async def enqueue_batch(svc: Services, kind: str, n: int, sleep: tuple[float, float]) -> list[int]:
    async with svc.db.transaction() as tx:  # all at once: every worker starts together
        return [
            (await svc.jobs.enqueue(kind, {"i": i, "sleep": sleep}, tx=tx)).id for i in range(n)
        ]


async def states(svc: Services) -> Counter[str]:
    rows = await svc.db.fetchall('SELECT "state", COUNT(*) FROM "_jobs" GROUP BY "state"')
    return Counter({str(s): int(n) for s, n in rows})


async def running_on(svc: Services, pid: int) -> set[int]:
    rows = await svc.db.fetchall(
        'SELECT "id" FROM "_jobs" WHERE "state" = \'running\' AND "worker" LIKE ?',
        (f"%:{pid}:%",),
    )
    return {int(r[0]) for r in rows}


async def wait_all_completed(svc: Services, n: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (await states(svc))["completed"] == n:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not all {n} jobs completed: {dict(await states(svc))}")


async def effects_per_job(svc: Services) -> Counter[int]:
    rows = await svc.db.fetchall("SELECT job_id FROM effects")
    return Counter(int(r[0]) for r in rows)


async def kill_while_running(svc: Services, proc: subprocess.Popen[bytes], after: int) -> set[int]:
    """SIGKILL `proc` once `after` jobs completed, at a moment it holds running jobs; returns
    the jobs it held. (SIGSTOP first, so the set read is the set killed.)"""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if (await states(svc))["completed"] >= after:
            os.kill(proc.pid, signal.SIGSTOP)
            if await running_on(svc, proc.pid):
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
                held = await running_on(svc, proc.pid)
                assert held, "the killed worker held no running jobs"
                return held
            os.kill(proc.pid, signal.SIGCONT)
        await asyncio.sleep(0.01)
    raise AssertionError("never caught the worker with running jobs")


async def rescued_from(svc: Services, pid: int) -> set[int]:
    jobs, _ = await svc.jobs.queue.list(limit=100_000)
    return {
        j.id
        for j in jobs
        if any("lease expired" in e["error"] and f":{pid}:" in e["error"] for e in j.errors)
    }


def test_two_worker_processes_drain_a_batch_exactly_once(cluster: Cluster) -> None:
    n = 300

    async def main() -> None:
        svc = await open_services(cluster.settings)
        try:
            workers = [cluster.start_worker(), cluster.start_worker()]
            for w in workers:
                await cluster.ready(w)
            ids = await enqueue_batch(svc, "exactly_once", n, (0.0, 0.02))
            await wait_all_completed(svc, n)
            effects = await effects_per_job(svc)
            assert sorted(effects) == sorted(ids)
            assert set(effects.values()) == {1}
            jobs, _ = await svc.jobs.queue.list(limit=n)
            assert {j.attempt for j in jobs} == {1}
            assert all(not j.errors for j in jobs)
            by_worker = Counter(str(j.worker).split(":")[1] for j in jobs)
            print(f"\n{n} jobs, by worker pid: {dict(by_worker)}")
            assert set(by_worker) == {str(w.pid) for w in workers}  # both took part
        finally:
            await svc.close()

    asyncio.run(main())


def test_sigkilled_worker_loses_no_job_and_effects_happen_exactly_once(cluster: Cluster) -> None:
    n = 200

    async def main() -> None:
        svc = await open_services(cluster.settings)
        try:
            victim, survivor = cluster.start_worker(), cluster.start_worker()
            for w in (victim, survivor):
                await cluster.ready(w)
            ids = await enqueue_batch(svc, "exactly_once", n, (0.02, 0.12))
            held = await kill_while_running(svc, victim, after=n // 5)
            cluster.start_worker()  # the replacement
            await wait_all_completed(svc, n)
            effects = await effects_per_job(svc)
            rescued = await rescued_from(svc, victim.pid)
            print(
                f"\njobs {n}, killed while running {len(held)}, rescued {len(rescued)}, "
                f"effects {sum(effects.values())}"
            )
            assert sorted(effects) == sorted(ids)  # none lost
            assert set(effects.values()) == {1}  # one effect per job = one completion each
            assert rescued == held
            assert survivor.poll() is None
        finally:
            await svc.close()

    asyncio.run(main())


def test_sigkilled_worker_without_transaction_runs_jobs_at_least_once(cluster: Cluster) -> None:
    n = 200

    async def main() -> None:
        svc = await open_services(cluster.settings)
        try:
            victim, _ = cluster.start_worker(), cluster.start_worker()
            for w in cluster.procs:
                await cluster.ready(w)
            ids = await enqueue_batch(svc, "at_least_once", n, (0.02, 0.12))
            held = await kill_while_running(svc, victim, after=n // 5)
            cluster.start_worker()
            await wait_all_completed(svc, n)
            effects = await effects_per_job(svc)
            rescued = await rescued_from(svc, victim.pid)
            twice = {jid for jid, k in effects.items() if k > 1}
            print(
                f"\njobs {n}, killed while running {len(held)}, rescued {len(rescued)}, "
                f"run more than once {len(twice)}"
            )
            assert sorted(effects) == sorted(ids)  # every job ran: never fewer than once
            assert rescued == held
            assert twice <= rescued  # only a killed attempt's job runs again
            assert max(effects.values()) <= 2
        finally:
            await svc.close()

    asyncio.run(main())
