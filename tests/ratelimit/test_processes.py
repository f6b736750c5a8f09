"""Two real `shipyard serve` processes on one database and one Redis: a concurrent burst
split between them admits exactly maxRequests; with Redis gone each process limits on its
own (exactly, per process), logs it once and answers no 5xx; when Redis returns the limit
is shared again."""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.helpers.servers import RedisServer, Server, start_server, stop_server
from tests.helpers.wait import wait_until

LIMIT = 10
RULES = [{"label": "posts:list", "audience": "", "duration": 3600, "maxRequests": LIMIT}]
FALLBACK = "rate limits are per process until Redis is reachable again"
SHARED = "rate limits are shared through Redis again"


def burst(servers: list[Server], n: int) -> dict[str, Counter[int]]:
    """`n` concurrent list reads, alternating between the servers; statuses per server."""
    urls = [servers[i % len(servers)].url for i in range(n)]
    with httpx.Client(timeout=30) as http, ThreadPoolExecutor(16) as pool:
        codes = list(
            pool.map(lambda u: http.get(u + "/api/collections/posts/records").status_code, urls)
        )
    out: dict[str, Counter[int]] = {s.url: Counter() for s in servers}
    for url, code in zip(urls, codes, strict=True):
        out[url][code] += 1
    return out


def admitted(counts: dict[str, Counter[int]]) -> int:
    assert all(set(c) <= {200, 429} for c in counts.values()), counts  # never a 5xx
    return sum(c[200] for c in counts.values())


def test_two_processes_share_one_exact_limit_through_redis(
    tmp_path: Path, database_url: str, redis_server: RedisServer
) -> None:
    url = database_url or f"sqlite:///{tmp_path / 'shared.db'}"
    extra = {
        "SHIPYARD_REDIS_URL": redis_server.url,
        "SHIPYARD_REDIS_RETRY_INTERVAL": "0.2",
        "SHIPYARD_RATELIMIT_ENABLED": "true",
        "SHIPYARD_RATELIMIT_RULES": json.dumps(RULES),
    }
    a = start_server(tmp_path / "a", url, extra)
    try:
        b = start_server(tmp_path / "b", url, extra)
        try:
            su = {"Authorization": a.superuser_token()}
            body = {"name": "posts", "listRule": "", "fields": [{"name": "title", "type": "text"}]}
            r = httpx.post(a.url + "/api/collections", json=body, headers=su)
            assert r.status_code == 200, r.text

            # shared: exactly LIMIT of a concurrent burst, wherever they landed
            counts = burst([a, b], 4 * LIMIT)
            assert admitted(counts) == LIMIT, counts

            # Redis gone: each process counts alone, exactly, and says so once
            redis_server.stop()
            counts = burst([a, b], 4 * LIMIT)
            admitted(counts)
            assert [c[200] for c in counts.values()] == [LIMIT, LIMIT], counts
            assert admitted(burst([a, b], 4)) == 0  # still down: refused from memory, no 5xx

            # back (and empty): each process keeps refusing from memory (its budget there is
            # spent) until it tries Redis again; its first 200 is its first Redis decision
            redis_server.start()
            for srv in (a, b):
                url = srv.url + "/api/collections/posts/records"
                wait_until(lambda u=url: httpx.get(u).status_code == 200, 30, what="Redis again")
            counts = burst([a, b], 4 * LIMIT)
            assert admitted(counts) == LIMIT - 2, counts
        finally:
            stop_server(b)
    finally:
        stop_server(a)
    for srv in (a, b):
        log = srv.log_path.read_text()
        assert log.count(FALLBACK) == 1, log[-3000:]
        assert log.count(SHARED) == 1, log[-3000:]
