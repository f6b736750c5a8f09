"""Metrics of a real deployment, on SQLite and PostgreSQL: `shipyard serve --workers 2` and a
`shipyard worker` process sharing one database. Requests are counted exactly once whichever
process served them, every process's own series show up, a SIGKILLed server process's
series disappear while the totals it counted stay, and a job worker's jobs count too (its
failures reach error tracking)."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from shipyard.metrics.cluster import RETIRED, TABLE
from shipyard.tools.db import AUXILIARY
from tests.helpers.promtext import samples, value
from tests.helpers.servers import Server, fresh_pg_database, start_server, stop_server
from tests.helpers.wait import wait_until

pytestmark = pytest.mark.e2e

INTERVAL = "0.5"  # seconds between publications: a dead process is noticed after 1.5 s
REQUESTS = 40
LIST = "/api/collections/{collection}/records"
HOOKS = """
from shipyard.functions import Functions

functions = Functions()


@functions.job("fine")
async def fine(ctx, args):
    return "ok"


@functions.job("boom")
async def boom(ctx, args):
    raise RuntimeError("worker-side failure 7341")
"""


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """Two server processes on one database; jobs run only in `shipyard worker` processes."""
    tmp = tmp_path_factory.mktemp(f"cluster-{request.param}")
    url = ""
    if request.param == "postgres":
        url = fresh_pg_database(request.getfixturevalue("pg_admin_url"))
    hooks = tmp / "hooks.py"
    hooks.write_text(HOOKS)
    env = {
        "SHIPYARD_WORKERS": "2",
        "SHIPYARD_METRICS_FLUSH_INTERVAL": INTERVAL,
        "SHIPYARD_JOBS_WORKER": "false",
        "SHIPYARD_HOOKS": str(hooks),
        "SHIPYARD_JOBS_POLL_INTERVAL": "0.2",
    }
    srv = start_server(tmp / "data", url, env)
    try:
        yield srv
    finally:
        stop_server(srv)


def _metrics(srv: Server) -> str:
    r = httpx.get(srv.url + "/metrics", timeout=10)  # from loopback: allowed by default
    assert r.status_code == 200, r.text
    return r.text


def _instances(text: str) -> set[str]:
    name = "shipyard_process_resident_memory_bytes"
    return {labels["instance"] for n, labels, _ in samples(text) if n == name}


def _pid(instance: str) -> int:
    return int(instance.split(":")[-2])  # host:pid:random


def _misses(text: str) -> float:
    return value(text, "shipyard_http_requests_total", method="GET", route=LIST, status="404")


def _serve(cluster: Server, n: int) -> None:
    """`n` requests on new connections (the kernel spreads them over both processes)."""
    for i in range(n):
        with httpx.Client(timeout=10) as client:
            r = client.get(f"{cluster.url}/api/collections/nothing{i % 3}/records")
            assert r.status_code == 404


def _published_since(cluster: Server, since: float) -> None:
    """Wait until every process has published after `since` (read from the table itself)."""
    sql = f'SELECT MIN("updated") FROM "{TABLE}" WHERE "instance" <> \'{RETIRED}\''
    url = cluster.env["SHIPYARD_DATABASE_URL"]

    def oldest() -> float:
        if url:
            with psycopg.connect(url) as conn:
                row = conn.execute(sql).fetchone()
        else:
            with contextlib.closing(
                sqlite3.connect(Path(cluster.env["SHIPYARD_DATA_DIR"]) / AUXILIARY)
            ) as conn:
                row = conn.execute(sql).fetchone()
        return float(row[0]) if row and row[0] is not None else 0.0

    wait_until(lambda: oldest() > since, timeout=30, what="every process published")


def _settled(cluster: Server, expected: float | None = None) -> list[float]:
    """Read /metrics until five reads in a row agree (on `expected`, when given): each
    process reads the others' last publication, at most an interval old. Every total seen."""
    seen: list[float] = []

    def agreed() -> bool:
        seen.append(_misses(_metrics(cluster)))
        last = seen[-5:]
        return len(last) == 5 and len(set(last)) == 1 and expected in (None, last[0])

    wait_until(agreed, timeout=30, what=f"the request total settled at {expected}")
    return seen


def _both_serving(cluster: Server) -> set[str]:
    found: set[str] = set()

    def two() -> bool:
        found.clear()
        found.update(_instances(_metrics(cluster)))
        return len(found) == 2

    wait_until(two, timeout=30, what="both server processes publishing")
    return found


def test_requests_are_counted_once_across_server_processes(cluster: Server) -> None:
    _both_serving(cluster)
    before = _settled(cluster)[-1]
    _serve(cluster, REQUESTS)
    seen = _settled(cluster, before + REQUESTS)
    assert max(seen) == before + REQUESTS  # never more than were made: nothing counted twice


def test_a_killed_server_process_leaves_its_counts_not_its_series(cluster: Server) -> None:
    instances = _both_serving(cluster)
    before = _settled(cluster)[-1]
    _serve(cluster, REQUESTS)
    # what a process counted after its last publication dies with it: the victim must
    # have published every request before it is killed
    _published_since(cluster, time.time())
    total = _settled(cluster, before + REQUESTS)[-1]
    victim = sorted(instances)[0]
    os.kill(_pid(victim), signal.SIGKILL)

    def gone() -> bool:
        text = _metrics(cluster)
        assert _misses(text) == total  # the total never drops, not even for a moment
        return victim not in _instances(text)

    wait_until(gone, timeout=30, what="the killed process's series gone")
    assert _misses(_metrics(cluster)) == total


def test_a_job_worker_process_is_counted_and_reports_errors(
    cluster: Server, tmp_path: Path
) -> None:
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "shipyard.cli", "worker"],
        env=cluster.env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(
            lambda: any(_pid(i) == worker.pid for i in _instances(_metrics(cluster))),
            timeout=60,
            what="the worker process publishing",
        )
        su = {"Authorization": cluster.superuser_token()}
        r = httpx.post(cluster.url + "/api/jobs", json={"kind": "fine"}, headers=su)
        assert r.status_code == 200, r.text
        done = "shipyard_jobs_total"
        wait_until(
            lambda: value(_metrics(cluster), done, kind="fine", state="completed") == 1,
            timeout=30,
            what="the job counted",
        )
        # a job failing in the worker process is an error event of the built-in project
        r = httpx.post(
            cluster.url + "/api/jobs", json={"kind": "boom", "maxAttempts": 1}, headers=su
        )
        assert r.status_code == 200, r.text

        def reported() -> list[dict[str, object]]:
            found = httpx.get(cluster.url + "/api/errors", params={"perPage": 100}, headers=su)
            assert found.status_code == 200, found.text
            items: list[dict[str, object]] = found.json()["items"]
            return [i for i in items if "worker-side failure 7341" in str(i)]

        wait_until(reported, timeout=30, what="the worker's job failure as an error issue")
        worker.send_signal(signal.SIGTERM)  # a clean stop folds its row at once
        assert worker.wait(timeout=30) == 0
        text = _metrics(cluster)
        assert not any(_pid(i) == worker.pid for i in _instances(text))
        assert value(text, done, kind="fine", state="completed") == 1
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=10)
        log.close()
