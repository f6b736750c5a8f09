"""Read-after-write consistency of the response cache on real server processes.

Writers bump a counter per record; every read records, before it is sent, the highest value
already acknowledged for each record, and must see at least that. Two processes share
PostgreSQL and Redis (a write on one, the read on the other), the embedded default runs as
one SQLite process, and a third test kills Redis in the middle and brings it back.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.servers import RedisServer, Server, fresh_pg_database, start_server, stop_server

RECORDS = 6


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    acked: dict[str, int] = field(default_factory=dict)
    reads: int = 0  # record values checked
    stale: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)


def _setup(server: Server) -> list[str]:
    h = {"Authorization": server.superuser_token()}
    r = httpx.post(
        server.url + "/api/collections",
        json={
            "name": "counters",
            "listRule": "",
            "viewRule": "",
            "updateRule": "",
            "fields": [{"name": "n", "type": "number"}],
        },
        headers=h,
    )
    assert r.status_code == 200, r.text
    ids = []
    for _ in range(RECORDS):
        r = httpx.post(server.url + "/api/collections/counters/records", json={"n": 0}, headers=h)
        assert r.status_code == 200, r.text
        ids.append(r.json()["id"])
    return ids


def _writer(urls: list[str], rid: str, tally: Tally, stop: float) -> None:
    n = 0
    with httpx.Client(timeout=10) as http:
        while time.monotonic() < stop:
            n += 1
            url = random.choice(urls)
            try:
                r = http.patch(f"{url}/api/collections/counters/records/{rid}", json={"n": n})
            except httpx.HTTPError as exc:
                tally.errors.append(f"write {exc!r}")
                return
            if r.status_code != 200:
                tally.errors.append(f"write {r.status_code} {r.text[:200]}")
                return
            with tally.lock:
                tally.acked[rid] = n


def _reader(urls: list[str], ids: list[str], tally: Tally, stop: float) -> None:
    with httpx.Client(timeout=10) as http:
        while time.monotonic() < stop:
            with tally.lock:
                expected = dict(tally.acked)  # acknowledged before this read starts
            url = random.choice(urls)
            if random.random() < 0.5:
                path = "/api/collections/counters/records?perPage=50"
            else:
                path = f"/api/collections/counters/records/{random.choice(ids)}"
            try:
                r = http.get(url + path)
            except httpx.HTTPError as exc:
                tally.errors.append(f"read {exc!r}")
                return
            if r.status_code != 200:
                tally.errors.append(f"read {r.status_code} {r.text[:200]}")
                return
            data = r.json()
            items = data.get("items", [data])
            with tally.lock:
                outcome = r.headers.get("x-shipyard-cache", "?")
                tally.outcomes[outcome] = tally.outcomes.get(outcome, 0) + 1
                for item in items:
                    tally.reads += 1
                    want = expected.get(item["id"], 0)
                    if item["n"] < want:
                        tally.stale.append(f"{path} on {url}: n={item['n']} < acked {want}")


def _run(servers: list[Server], seconds: float, during: Any = None, readers: int = 6) -> Tally:
    ids = _setup(servers[0])
    urls = [s.url for s in servers]
    tally = Tally(acked={i: 0 for i in ids})
    stop = time.monotonic() + seconds
    threads = [threading.Thread(target=_writer, args=(urls, i, tally, stop)) for i in ids]
    threads += [
        threading.Thread(target=_reader, args=(urls, ids, tally, stop)) for _ in range(readers)
    ]
    for t in threads:
        t.start()
    if during is not None:
        during()
    for t in threads:
        t.join(timeout=seconds + 60)
    writes = sum(tally.acked.values())
    print(
        f"\n{len(servers)} process(es): {tally.reads} record reads checked, {writes} writes, "
        f"{len(tally.stale)} stale, outcomes {tally.outcomes}"
    )
    return tally


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> str:
    return fresh_pg_database(request.getfixturevalue("pg_admin_url"))


def _two_servers(tmp_path: Path, pg_url: str, extra: dict[str, str]) -> tuple[Server, Server]:
    """Servers a and b on one database; a is stopped again when b does not start."""
    a = start_server(tmp_path / "a", pg_url, extra)
    try:
        return a, start_server(tmp_path / "b", pg_url, extra)
    except BaseException:
        stop_server(a)
        raise


def test_two_processes_on_postgres_and_redis_never_read_stale(
    tmp_path: Path, pg_url: str, redis_url: str
) -> None:
    extra = {"SHIPYARD_REDIS_URL": redis_url, "SHIPYARD_REDIS_NAMESPACE": uuid.uuid4().hex}
    a, b = _two_servers(tmp_path, pg_url, extra)
    try:
        tally = _run([a, b], seconds=8)
    finally:
        stop_server(a)
        stop_server(b)
    assert tally.errors == []
    assert tally.stale == []
    assert tally.reads > 1000
    assert tally.outcomes.get("hit", 0) > 0  # the cache was really in play


def test_single_sqlite_process_never_reads_stale(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "s", "")
    try:
        tally = _run([srv], seconds=6)
    finally:
        stop_server(srv)
    assert tally.errors == []
    assert tally.stale == []
    assert tally.reads > 1000
    assert tally.outcomes.get("hit", 0) > 0


def test_redis_outage_mid_run(tmp_path: Path, pg_url: str, redis_server: RedisServer) -> None:
    extra = {
        "SHIPYARD_REDIS_URL": redis_server.url,
        "SHIPYARD_REDIS_RETRY_INTERVAL": "0.5",
    }
    a, b = _two_servers(tmp_path, pg_url, extra)

    def outage() -> None:
        time.sleep(3)
        redis_server.stop()
        time.sleep(3)
        redis_server.start()

    try:
        tally = _run([a, b], seconds=10, during=outage)
        # recovered by itself: the same URL is a hit again on both processes
        for srv in (a, b):
            seen = []
            for _ in range(20):
                seen.append(
                    httpx.get(srv.url + "/api/collections/counters/records").headers[
                        "x-shipyard-cache"
                    ]
                )
                if seen[-1] == "hit":
                    break
                time.sleep(0.2)
            assert seen[-1] == "hit", seen
        logs = (tmp_path / "a" / "server.log").read_text()
    finally:
        stop_server(a)
        stop_server(b)
    assert tally.errors == []
    assert tally.stale == []
    assert tally.outcomes.get("bypass", 0) > 0  # served uncached during the outage
    assert logs.count("Redis is unreachable") == 1, logs  # logged once, not per request
