"""argon2 runs off the event loop, at most SHIPYARD_PASSWORD_HASH_CONCURRENCY at once.

Before, every password hash and check ran on the event loop: about ten failed sign-ups a
second pushed everyone's cached reads from 1 ms to 420 ms. Now hashing runs in a pool of
threads; requests beyond its size get an immediate 503 with `Retry-After` (not a place
in a queue), and reads go on being served while sign-ups and logins saturate it. Timing is
judged only against the server's own time for one sign-up, never in absolute terms.
"""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.helpers.security import PW
from tests.helpers.servers import Server, start_server, stop_server

SIGNUP_WORKERS = LOGIN_WORKERS = 4
ADMITTED = 6  # hash-bound requests that must have run while the pool was contended
BUSY = {
    "status": 503,
    "message": "Too many password checks are running; try again in a moment.",
    "data": {},
}


@pytest.fixture
def server(
    backend: str, database_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Server]:
    extra = {"SHIPYARD_PASSWORD_HASH_CONCURRENCY": 1}
    if backend == "postgres":  # the response cache needs Redis beside PostgreSQL
        extra["SHIPYARD_REDIS_URL"] = request.getfixturevalue("redis_url")
    srv = start_server(tmp_path / "srv", database_url, extra)
    try:
        yield srv
    finally:
        stop_server(srv)


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    ok: list[float] = field(default_factory=list)  # seconds per admitted sign-up/login
    busy: list[float] = field(default_factory=list)  # seconds per 503
    other: list[str] = field(default_factory=list)
    reads: list[float] = field(default_factory=list)
    read_outcomes: dict[str, int] = field(default_factory=dict)


def _signup_body() -> dict[str, str]:
    return {"email": f"u{uuid.uuid4().hex[:12]}@example.com", "password": PW, "passwordConfirm": PW}


def _hash_bound(url: str, body: dict[str, str], tally: Tally, stop: threading.Event) -> None:
    """Send one sign-up or login after another until told to stop."""
    with httpx.Client(timeout=120) as http:
        while not stop.is_set():
            payload = body or _signup_body()
            start = time.perf_counter()
            r = http.post(url, json=payload)
            took = time.perf_counter() - start
            with tally.lock:
                if r.status_code == 200:
                    tally.ok.append(took)
                elif r.status_code == 503 and r.json() == BUSY and r.headers["Retry-After"] == "1":
                    tally.busy.append(took)
                else:
                    tally.other.append(f"{r.status_code} {r.headers} {r.text[:200]}")
            if r.status_code == 503:
                time.sleep(0.01)  # as a client honouring a short back-off would


def _reader(url: str, tally: Tally, stop: threading.Event) -> None:
    with httpx.Client(timeout=120) as http:
        while not stop.is_set():
            start = time.perf_counter()
            r = http.get(url)
            took = time.perf_counter() - start
            with tally.lock:
                if r.status_code != 200:
                    tally.other.append(f"read {r.status_code} {r.text[:200]}")
                outcome = r.headers.get("x-shipyard-cache", "?")
                tally.read_outcomes[outcome] = tally.read_outcomes.get(outcome, 0) + 1
                tally.reads.append(took)


def test_reads_are_served_while_hashing_is_saturated(server: Server) -> None:
    base = server.url + "/api/collections"
    su = {"Authorization": server.superuser_token()}
    users = {"name": "users", "type": "auth", "createRule": "", "fields": []}
    posts = {"name": "posts", "listRule": "", "fields": [{"name": "title", "type": "text"}]}
    for body in (users, posts):
        r = httpx.post(base, json=body, headers=su)
        assert r.status_code == 200, r.text
    r = httpx.post(base + "/posts/records", json={"title": "hello"}, headers=su)
    assert r.status_code == 200, r.text
    read_url = base + "/posts/records"
    assert httpx.get(read_url).status_code == 200
    assert httpx.get(read_url).headers["x-shipyard-cache"] == "hit"

    # the unit of time: one sign-up (one argon2 hash) on an idle server
    solo = []
    accounts = []
    for _ in range(LOGIN_WORKERS):
        body = _signup_body()
        start = time.perf_counter()
        r = httpx.post(base + "/users/records", json=body)
        solo.append(time.perf_counter() - start)
        assert r.status_code == 200, r.text
        accounts.append({"identity": body["email"], "password": PW})
    unit = statistics.median(solo)

    tally = Tally()
    stop = threading.Event()
    threads = [
        threading.Thread(target=_hash_bound, args=(base + "/users/records", {}, tally, stop))
        for _ in range(SIGNUP_WORKERS)
    ]
    threads += [
        threading.Thread(
            target=_hash_bound,
            args=(base + "/users/auth-with-password", accounts[i], tally, stop),
        )
        for i in range(LOGIN_WORKERS)
    ]
    threads.append(threading.Thread(target=_reader, args=(read_url, tally, stop)))
    for t in threads:
        t.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with tally.lock:
            if len(tally.ok) >= ADMITTED and len(tally.busy) >= ADMITTED:
                break
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join()

    assert tally.other == []
    # the pool was saturated throughout: both admitted and refused requests, no third kind
    assert len(tally.ok) >= ADMITTED, tally
    assert len(tally.busy) >= ADMITTED, tally
    # a refusal is immediate, not a wait for a free slot (which takes about `unit`)
    assert statistics.median(tally.busy) < unit / 4, (statistics.median(tally.busy), unit)
    # reads went on, from the cache, without waiting for the hashing
    assert tally.read_outcomes.get("hit", 0) == len(tally.reads) >= 10, tally.read_outcomes
    assert statistics.median(tally.reads) < unit / 4, (statistics.median(tally.reads), unit)
