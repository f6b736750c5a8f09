"""Concurrent wrong passwords against two `shipyard serve` processes on one database.

Before, the limit was checked, the password verified and the failure counted in three
steps: 29 wrong passwords fired at once were all verified and none got 429. Now each
attempt is reserved (checked and counted in one atomic statement) before argon2 runs, so
however the requests race across processes, no more than the limit are ever verified: the
others get 429 with Retry-After. A 400 ("Failed to authenticate.") is a verified wrong
guess, a 429 one that was never checked; the tests count them exactly.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.security import PW
from tests.helpers.servers import Server, start_server, stop_server

PER_IDENTITY, PER_IP = 5, 8
USERS = {"name": "users", "type": "auth", "createRule": "", "fields": []}


@pytest.fixture
def servers(backend: str, database_url: str, tmp_path: Path) -> Iterator[list[Server]]:
    """Two server processes sharing the test's database (the SQLite file of the first)."""
    extra = {
        "SHIPYARD_AUTH_MAX_FAILURES_PER_IDENTITY": PER_IDENTITY,
        "SHIPYARD_AUTH_MAX_FAILURES_PER_IP": PER_IP,
        # enough argon2 slots for every attempt that may run: this test is about the limiter
        "SHIPYARD_PASSWORD_HASH_CONCURRENCY": PER_IP,
    }
    url = database_url or f"sqlite:///{tmp_path / 'shared' / 'data.db'}"
    started: list[Server] = []
    try:
        for name in ("a", "b"):
            started.append(start_server(tmp_path / name, url, extra))
        yield started
    finally:
        for srv in started:
            stop_server(srv)


def _burst(servers: list[Server], bodies: list[dict[str, str]]) -> list[httpx.Response]:
    """Send every login at the same moment, alternating between the servers."""
    gate = threading.Barrier(len(bodies))
    out: list[Any] = [None] * len(bodies)

    def one(i: int) -> None:
        url = servers[i % len(servers)].url + "/api/collections/users/auth-with-password"
        with httpx.Client(timeout=60) as http:
            gate.wait()
            out[i] = http.post(url, json=bodies[i])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def _statuses(responses: list[httpx.Response]) -> Counter[int]:
    for r in responses:
        if r.status_code == 429:
            wait = int(r.headers["Retry-After"])
            assert 1 <= wait <= 300
            assert r.json() == {
                "status": 429,
                "message": "Too many failed authentication attempts; try again later.",
                "data": {"retryAfter": wait},
            }
        elif r.status_code == 400:
            assert r.json()["message"] == "Failed to authenticate."
    return Counter(r.status_code for r in responses)


def test_concurrent_guesses_never_pass_the_limits(servers: list[Server]) -> None:
    su = {"Authorization": servers[0].superuser_token()}
    r = httpx.post(servers[0].url + "/api/collections", json=USERS, headers=su)
    assert r.status_code == 200, r.text
    for name in ("victim", "other"):
        r = httpx.post(
            servers[1].url + "/api/collections/users/records",
            json={"email": f"{name}@example.com", "password": PW, "passwordConfirm": PW},
        )
        assert r.status_code == 200, r.text

    # 30 wrong passwords at once, on both processes: exactly the limit of them is verified
    bodies = [{"identity": "victim@example.com", "password": f"wrong-{i}"} for i in range(30)]
    got = _statuses(_burst(servers, bodies))
    assert got == Counter({400: PER_IDENTITY, 429: 30 - PER_IDENTITY}), got
    # the account is locked, for the right password too (whichever process is asked)
    for srv in servers:
        r = httpx.post(
            srv.url + "/api/collections/users/auth-with-password",
            json={"identity": "victim@example.com", "password": PW},
        )
        assert r.status_code == 429, r.text

    # the address has 5 failures; 20 logins of unknown identities at once get only the
    # rest of its limit verified, and then it is locked for everyone
    left = PER_IP - PER_IDENTITY
    bodies = [{"identity": f"nobody{i}@example.com", "password": "guess-1"} for i in range(20)]
    got = _statuses(_burst(servers, bodies))
    assert got == Counter({400: left, 429: 20 - left}), got
    for srv in servers:
        r = httpx.post(
            srv.url + "/api/collections/users/auth-with-password",
            json={"identity": "other@example.com", "password": PW},
        )
        assert r.status_code == 429, r.text
