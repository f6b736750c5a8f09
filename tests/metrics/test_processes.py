"""Metrics of a real deployment, on SQLite and PostgreSQL: `shipyard serve --workers 2` and a
`shipyard worker` process sharing one database. Requests are counted exactly once whichever
process served them, every process's own series show up, a SIGKILLed server process's
series disappear while the totals it counted stay, and a job worker's jobs count too."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

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


def test_requests_are_counted_once_across_server_processes(cluster: Server) -> None:
    two = wait_until(lambda: len(_instances(_metrics(cluster))) == 2, timeout=30,
                     what="both server processes publishing")  # fmt: skip
    assert two
    for i in range(REQUESTS):  # a new connection each: the kernel spreads them over both
        with httpx.Client(timeout=10) as client:
            r = client.get(f"{cluster.url}/api/collections/nothing{i % 3}/records")
            assert r.status_code == 404

    # each process reads the others' last publication (at most an interval old), so the
    # total is reached once both have published; it must never exceed what was made
    seen: list[float] = []

    def counted() -> bool:
        seen.append(_misses(_metrics(cluster)))
        return seen[-5:] == [REQUESTS] * 5  # stable, whichever process answered

    wait_until(counted, timeout=30, what=f"{REQUESTS} requests counted")
    assert max(seen) == REQUESTS  # no process counted twice


def test_a_killed_server_process_leaves_its_counts_not_its_series(cluster: Server) -> None:
    before = _misses(_metrics(cluster))
    assert before == REQUESTS  # the previous test's requests
    instances = _instances(_metrics(cluster))
    servers = [i for i in instances if _pid(i) != cluster.proc.pid]
    victim = servers[0]
    os.kill(_pid(victim), signal.SIGKILL)

    def gone() -> bool:
        text = _metrics(cluster)
        assert _misses(text) == before  # the total never drops, not even for a moment
        return victim not in _instances(text)

    wait_until(gone, timeout=30, what="the killed process's series gone")
    assert _misses(_metrics(cluster)) == before


def test_a_job_worker_process_is_counted(cluster: Server, tmp_path: Path) -> None:
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
