"""A webhook receiver goes down while records keep changing, then recovers: every event
still arrives, signed, once per write, and under the same id on every retry.

Real `shipyard serve` processes (SQLite: one server with two worker processes on the same
file; PostgreSQL: two servers on the same database, writes alternating between them), a
real receiver on loopback that first refuses connections, then answers 503, then closes
connections without answering, and then recovers — while writers create, update and delete
records. Signatures are checked with the independent `standardwebhooks` library.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.helpers.servers import Server, start_server, stop_server
from tests.helpers.wait import poll_until
from tests.helpers.webhook_receiver import Receiver

WRITERS = 3
WRITES_PER_WRITER = 50  # 150 writes
WRITE_SECONDS = 6.0
# receiver phases, seconds after the writes start: ok, refused, 503, closed, ok again
OUTAGE = [(1.0, "stopped"), (2.6, "503"), (4.2, "close"), (5.0, "ok")]
SETTINGS = {
    "SHIPYARD_WEBHOOK_ALLOW_PRIVATE": "127.0.0.1",
    "SHIPYARD_WEBHOOK_BACKOFF_BASE": "0.2",
    "SHIPYARD_WEBHOOK_MAX_ATTEMPTS": "12",  # never reached: ~0.2·2¹¹ s of outage
    "SHIPYARD_WEBHOOK_TIMEOUT": "3",
    "SHIPYARD_LOG_LEVEL": "info",
}

pytestmark = pytest.mark.e2e


@dataclass
class Writes:
    lock: threading.Lock = field(default_factory=threading.Lock)
    acked: list[tuple[str, str, int]] = field(default_factory=list)  # (action, id, n)
    errors: list[str] = field(default_factory=list)


def _writer(urls: list[str], token: str, wid: int, start: float, out: Writes) -> None:
    """Creates, updates and deletes its own records; every write carries a unique `n`."""
    rnd = random.Random(wid)
    owned: dict[str, int] = {}
    h = {"Authorization": token}
    base = "/api/collections/items/records"
    with httpx.Client(timeout=15, headers=h) as http:
        for i in range(WRITES_PER_WRITER):
            pause = start + i * WRITE_SECONDS / WRITES_PER_WRITER - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            n = wid * 10_000 + i
            url = urls[(i + wid) % len(urls)]
            try:
                if not owned or i % 4 == 0:
                    r = http.post(url + base, json={"n": n, "title": f"w{wid}"})
                    rid = r.json().get("id", "") if r.status_code == 200 else ""
                    owned[rid] = n
                    key = ("create", rid, n)
                elif i % 10 == 9 and len(owned) > 1:
                    rid = rnd.choice(sorted(owned))
                    r = http.delete(f"{url}{base}/{rid}")
                    key = ("delete", rid, owned.pop(rid))
                else:
                    rid = rnd.choice(sorted(owned))
                    r = http.patch(f"{url}{base}/{rid}", json={"n": n})
                    owned[rid] = n
                    key = ("update", rid, n)
            except httpx.HTTPError as exc:
                out.errors.append(f"writer {wid}: {exc!r}")
                return
            if r.status_code not in (200, 204):
                out.errors.append(f"writer {wid}: {r.status_code} {r.text[:200]}")
                return
            with out.lock:
                out.acked.append(key)


def _play_outage(receiver: Receiver, start: float) -> None:
    for at, mode in OUTAGE:
        time.sleep(max(0.0, start + at - time.monotonic()))
        if mode == "stopped":
            receiver.stop()
            continue
        if not receiver.listening:
            receiver.start()
        receiver.mode = mode


def _servers(backend: str, database_url: str, tmp_path: Path) -> list[Server]:
    if backend == "sqlite":  # one server, two worker processes sharing the file
        return [start_server(tmp_path / "srv", database_url, {**SETTINGS, "SHIPYARD_WORKERS": 2})]
    a = start_server(tmp_path / "a", database_url, SETTINGS)
    try:
        return [a, start_server(tmp_path / "b", database_url, SETTINGS)]
    except Exception:
        stop_server(a)
        raise


def test_receiver_outage(backend: str, database_url: str, tmp_path: Path) -> None:
    receiver = Receiver()
    receiver.start()
    servers = _servers(backend, database_url, tmp_path)
    try:
        secret = _run(servers, receiver)
    finally:
        for s in servers:
            stop_server(s)
        receiver.stop()
    for s in servers:  # read after the processes ended: every line is flushed
        log = s.log_path.read_text(errors="replace")
        assert "Shipyard listening" in log  # the check below reads the real output
        assert secret not in log
        assert secret.removeprefix("whsec_") not in log


def _delivery_log(url: str, h: dict[str, str], hook_id: str) -> list[dict[str, Any]]:
    """Every attempt of the subscription's delivery log, all pages."""
    out: list[dict[str, Any]] = []
    for page in range(1, 1000):
        r = httpx.get(
            f"{url}/api/webhooks/{hook_id}/deliveries",
            params={"page": page, "perPage": 500},
            headers=h,
        )
        assert r.status_code == 200, r.text
        body = r.json()
        out += body["items"]
        if page >= body["totalPages"]:
            break
    assert len(out) == body["totalItems"]
    return out


def _run(servers: list[Server], receiver: Receiver) -> str:
    """Subscribe, write through the outage, check what arrived; the secret."""
    token = servers[0].superuser_token()
    h = {"Authorization": token}
    first = servers[0].url
    r = httpx.post(
        first + "/api/collections",
        json={
            "name": "items",
            "fields": [{"name": "n", "type": "number"}, {"name": "title", "type": "text"}],
        },
        headers=h,
    )
    assert r.status_code == 200, r.text
    r = httpx.post(
        first + "/api/webhooks",
        json={"name": "items-out", "collection": "items", "url": receiver.url + "/items"},
        headers=h,
    )
    assert r.status_code == 200, r.text
    hook = r.json()
    secret = str(hook["secret"])

    writes = Writes()
    urls = [s.url for s in servers]
    start = time.monotonic() + 0.2
    threads = [
        threading.Thread(target=_writer, args=(urls, token, w, start, writes))
        for w in range(WRITERS)
    ]
    outage = threading.Thread(target=_play_outage, args=(receiver, start))
    for t in [*threads, outage]:
        t.start()
    for t in [*threads, outage]:
        t.join(timeout=60)
    wrote_for = time.monotonic() - start
    assert not writes.errors, writes.errors[:5]
    expected = set(writes.acked)
    assert len(expected) == len(writes.acked) == WRITERS * WRITES_PER_WRITER

    def all_delivered() -> bool:
        ok_keys = set()
        for req in receiver.delivered():
            d = orjson.loads(req.body)["data"]
            ok_keys.add((d["action"], d["record"]["id"], int(d["record"]["n"])))
        return ok_keys >= expected

    recovered = time.monotonic()
    poll_until(all_delivered, timeout=45, step=0.1)
    caught_up = time.monotonic() - recovered
    got = receiver.snapshot()

    # every request, failed or not, carries a valid Standard Webhooks signature
    bodies: dict[str, set[bytes]] = defaultdict(set)
    ids_of_write: dict[tuple[str, str, int], set[str]] = defaultdict(set)
    for req in got:
        assert req.method == "POST"
        assert req.path == "/items"
        payload = req.verify(secret)
        d = payload["data"]
        assert req.id == d["id"]
        bodies[req.id].add(req.body)
        ids_of_write[(d["action"], d["record"]["id"], int(d["record"]["n"]))].add(req.id)
    assert not [i for i, b in bodies.items() if len(b) > 1], "an id was sent with two bodies"
    assert not [k for k, ids in ids_of_write.items() if len(ids) > 1], "a write got two ids"
    assert set(ids_of_write) == expected  # nothing lost, nothing invented
    ok_ids = Counter(r.id for r in got if r.answered == 200)
    assert set(ok_ids) == set(bodies)  # every event was finally answered 200
    tries = Counter(r.id for r in got)

    def webhook_jobs() -> dict[str, int]:
        stats = httpx.get(first + "/api/jobs/stats", headers=h).json()
        return dict(stats["kinds"].get("webhook", {}))

    # one job per event, all completed (none discarded, none left behind)
    jobs = poll_until(lambda: webhook_jobs() == {"completed": len(expected)} or None, 10)
    assert jobs, webhook_jobs()
    attempts = _delivery_log(first, h, hook["id"])
    assert len(attempts) >= len(got)  # every attempt that reached the receiver, and more
    # the outage happened, in each of its forms, and was retried through
    assert {r.answered for r in got} == {200, 503, None}  # answered, 503, closed unanswered
    failed = [a for a in attempts if a["status"] == "failed"]
    refused = [a for a in failed if a["code"] is None and a["error"].startswith("ConnectError")]
    closed = [a for a in failed if a["code"] is None and not a["error"].startswith("ConnectError")]
    assert refused, "no attempt met the stopped receiver"  # never reached it: log only
    assert len(closed) >= sum(r.answered is None for r in got) > 0
    assert sum(a["code"] == 503 for a in failed) == sum(r.answered == 503 for r in got)
    delivered = [a for a in attempts if a["status"] == "delivered"]
    assert {a["event"] for a in delivered} == set(bodies)  # every event, logged delivered
    assert any(a["attempt"] > 1 for a in delivered), "no event was delivered on a retry"
    assert {a["status"] for a in attempts} == {"delivered", "failed"}
    print(
        f"\n[{len(servers)} server(s)] writes: {len(expected)} in {wrote_for:.1f} s; "
        f"events: {len(bodies)}; requests received: {len(got)} "
        f"(200: {sum(ok_ids.values())}, 503: {sum(r.answered == 503 for r in got)}, "
        f"closed: {sum(r.answered is None for r in got)}); "
        f"events retried: {sum(1 for n in tries.values() if n > 1)}; "
        f"duplicates by id (200 more than once): {sum(1 for n in ok_ids.values() if n > 1)}; "
        f"most requests for one event: {max(tries.values())}; delivery log rows (attempts, "
        f"incl. refused connections): {len(attempts)} ({len(refused)} refused); all delivered "
        f"{caught_up:.1f} s after the writes"
    )
    return secret
