"""Webhook deliveries to a real HTTP receiver, on SQLite and PostgreSQL.

Records are written through the HTTP API; the in-process worker delivers; a real server
on loopback (tests/helpers/webhook_receiver.py) records every request and plays failures.
Every signature is checked with the independent `standardwebhooks` library. Also: the
allow-list and SSRF refusals at delivery time, and webhooks in the declarative file.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from standardwebhooks.webhooks import Webhook as StandardWebhook
from standardwebhooks.webhooks import WebhookVerificationError
from starlette.testclient import TestClient

from shipyard import declarative
from shipyard.app import create_app
from shipyard.auth import superusers
from shipyard.settings import Settings, load_settings
from shipyard.tools import webhooks as wh
from tests.helpers.servers import SUPERUSER
from tests.helpers.wait import poll_until
from tests.helpers.webhook_receiver import Received, Receiver, receiver_fixture

H = dict[str, str]
MAX_ATTEMPTS = 4
ENV = {
    "SHIPYARD_WEBHOOK_ALLOW_PRIVATE": "127.0.0.1",
    "SHIPYARD_WEBHOOK_BACKOFF_BASE": "0.2",  # retries after ~0.2, 0.4, 0.8 s
    "SHIPYARD_WEBHOOK_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
    "SHIPYARD_WEBHOOK_TIMEOUT": "3",
}
ENVELOPE_KEYS = {"type", "timestamp", "data"}
DATA_KEYS = {"id", "collection", "collectionId", "action", "record", "oldRecord"}


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return load_settings(env=ENV, data_dir=str(tmp_path / "data"), database_url=database_url)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from receiver_fixture()


def _collection(client: TestClient, su: H, name: str, **extra: Any) -> dict[str, Any]:
    body = {"name": name, "fields": [{"name": "title", "type": "text"}], **extra}
    r = client.post("/api/collections", json=body, headers=su)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _subscribe(
    client: TestClient, su: H, receiver: Receiver, name: str, collection: str, **over: Any
) -> dict[str, Any]:
    body = {"name": name, "collection": collection, "url": f"{receiver.url}/{name}", **over}
    r = client.post("/api/webhooks", json=body, headers=su)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _jobs(client: TestClient, su: H) -> list[dict[str, Any]]:
    r = client.get("/api/jobs?kind=webhook&perPage=500", headers=su)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def _wait_jobs(
    client: TestClient, su: H, n: int, states: set[str], timeout: float = 15.0
) -> list[dict[str, Any]]:
    """Wait until `n` webhook jobs exist and all are in `states`."""
    got: list[dict[str, Any]] = []

    def done() -> bool:
        nonlocal got
        got = _jobs(client, su)
        return len(got) == n and all(j["state"] in states for j in got)

    poll_until(done, timeout, step=0.05)
    return got


def _log(client: TestClient, su: H, wid: str) -> list[dict[str, Any]]:
    r = client.get(f"/api/webhooks/{wid}/deliveries?perPage=500", headers=su)
    assert r.status_code == 200, r.text
    return sorted(r.json()["items"], key=lambda d: d["id"])


def _verified(req: Received, secret: str) -> dict[str, Any]:
    payload = req.verify(secret)  # raises if the signature or headers are wrong
    assert isinstance(payload, dict)
    return payload


def test_signed_delivery_per_event(
    client: TestClient, su: H, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    posts = _collection(client, su, "posts")
    hook = _subscribe(client, su, receiver, "posts-hook", "posts")
    secret = hook["secret"]
    base = "/api/collections/posts/records"
    created = client.post(base, json={"title": "first"}, headers=su).json()
    rid = created["id"]
    updated = client.patch(f"{base}/{rid}", json={"title": "second"}, headers=su).json()
    assert client.delete(f"{base}/{rid}", headers=su).status_code == 204

    got = receiver.wait_for(lambda g: len(g) >= 3)
    assert len(got) == 3, got
    by_type: dict[str, dict[str, Any]] = {}
    for req in got:
        assert req.method == "POST"
        assert req.path == "/posts-hook"
        assert req.headers["content-type"] == "application/json"
        payload = _verified(req, secret)
        assert set(payload) == ENVELOPE_KEYS
        data = payload["data"]
        assert set(data) == DATA_KEYS
        assert req.headers["webhook-id"] == data["id"]
        assert data["id"].startswith("evt_")
        assert payload["type"] == f"record.{data['action']}"
        assert (data["collection"], data["collectionId"]) == ("posts", posts["id"])
        assert abs(int(req.headers["webhook-timestamp"]) - req.at) < 60
        by_type[payload["type"]] = data
        # the signature covers the body: one changed byte and it no longer verifies
        with pytest.raises(WebhookVerificationError):
            StandardWebhook(secret).verify(req.body + b" ", req.headers)
        with pytest.raises(WebhookVerificationError):
            StandardWebhook(wh.new_secret()).verify(req.body, req.headers)
    assert set(by_type) == {"record.create", "record.update", "record.delete"}
    assert by_type["record.create"]["record"] == created
    assert by_type["record.create"]["oldRecord"] is None
    assert by_type["record.update"]["record"] == updated
    assert by_type["record.update"]["oldRecord"] == created
    assert by_type["record.delete"]["record"] == updated
    assert len({r.id for r in got}) == 3

    jobs = _wait_jobs(client, su, 3, {"completed"})
    assert {j["state"] for j in jobs} == {"completed"}, jobs
    log = _log(client, su, hook["id"])
    assert len(log) == 3
    assert {d["event"] for d in log} == {r.id for r in got}
    for d in log:
        assert (d["status"], d["code"], d["attempt"], d["error"]) == ("delivered", 200, 1, "")
        assert d["durationMs"] >= 0
        assert d["type"].startswith("record.")
        assert d["at"]
        assert d["response"] == '{"ok":true}'
    # the event filter of the log
    one = got[0].id
    r = client.get(f"/api/webhooks/{hook['id']}/deliveries?event={one}", headers=su)
    assert [d["event"] for d in r.json()["items"]] == [one]
    # neither the secret nor the key bytes show in the logs or in the jobs API
    jobs_text = client.get("/api/jobs?kind=webhook", headers=su).text
    for s in (secret, secret.removeprefix("whsec_")):
        assert s not in caplog.text
        assert s not in jobs_text


def test_auth_records_carry_no_password_or_token_key(
    client: TestClient, su: H, receiver: Receiver
) -> None:
    r = client.post(
        "/api/collections",
        json={"name": "members", "type": "auth", "fields": [{"name": "nick", "type": "text"}]},
        headers=su,
    )
    assert r.status_code == 200, r.text
    hook = _subscribe(client, su, receiver, "members-hook", "members")
    pw, pw2 = "first-pass-123", "second-pass-456"
    base = "/api/collections/members/records"
    body = {"email": "m@example.com", "password": pw, "passwordConfirm": pw, "nick": "m"}
    rid = client.post(base, json=body, headers=su).json()["id"]
    change = {"nick": "n", "password": pw2, "passwordConfirm": pw2}
    assert client.patch(f"{base}/{rid}", json=change, headers=su).status_code == 200

    svc = client.app.state.services  # type: ignore[attr-defined]
    table = svc.store.get("members").table
    row = client.portal.call(  # type: ignore[union-attr]
        svc.db.fetchone, f'SELECT "password", "tokenKey" FROM "{table}" WHERE "id" = ?', (rid,)
    )
    stored_hash, token_key = str(row[0]), str(row[1])
    assert len(stored_hash) > 20
    assert len(token_key) > 10
    assert client.delete(f"{base}/{rid}", headers=su).status_code == 204

    got = receiver.wait_for(lambda g: len(g) >= 3)
    assert len(got) == 3
    for req in got:
        data = _verified(req, hook["secret"])["data"]
        for rec in (data["record"], data["oldRecord"]):
            if rec is None:
                continue
            assert rec["id"] == rid
            assert rec["nick"] in ("m", "n")
            assert "password" not in rec
            assert "tokenKey" not in rec
        for leaked in (pw, pw2, stored_hash, token_key, "passwordConfirm"):
            assert leaked.encode() not in req.body


def test_collection_star_event_filters_and_inactive(
    client: TestClient, su: H, receiver: Receiver
) -> None:
    _collection(client, su, "posts", fields=[{"name": "title", "type": "text", "required": True}])
    _collection(client, su, "tags")
    every = _subscribe(client, su, receiver, "every", "*")
    deletes = _subscribe(client, su, receiver, "deletes", "posts", events=["delete"])
    off = _subscribe(client, su, receiver, "off", "posts", active=False)
    tag_updates = _subscribe(client, su, receiver, "tagupd", "tags", events=["update"])

    p, t = "/api/collections/posts/records", "/api/collections/tags/records"
    pid = client.post(p, json={"title": "a"}, headers=su).json()["id"]
    assert client.patch(f"{p}/{pid}", json={"title": "b"}, headers=su).status_code == 200
    assert client.post(p, json={"title": ""}, headers=su).status_code == 400  # nothing saved
    assert client.delete(f"{p}/{pid}", headers=su).status_code == 204
    tid = client.post(t, json={"title": "x"}, headers=su).json()["id"]
    assert client.patch(f"{t}/{tid}", json={"title": "y"}, headers=su).status_code == 200

    # jobs are enqueued in the writes' own transactions: all of them exist by now
    jobs = _wait_jobs(client, su, 7, {"completed"})
    per_hook: dict[str, int] = {}
    for j in jobs:
        per_hook[j["args"]["webhook"]] = per_hook.get(j["args"]["webhook"], 0) + 1
    assert per_hook == {every["id"]: 5, deletes["id"]: 1, tag_updates["id"]: 1}, per_hook
    assert off["id"] not in per_hook

    got = receiver.wait_for(lambda g: len(g) >= 7)
    by_path: dict[str, list[str]] = {}
    secrets = {"/every": every, "/deletes": deletes, "/tagupd": tag_updates}
    for req in got:
        payload = _verified(req, secrets[req.path]["secret"])
        by_path.setdefault(req.path, []).append(
            f"{payload['data']['collection']}.{payload['data']['action']}"
        )
    assert sorted(by_path["/every"]) == sorted(
        ["posts.create", "posts.update", "posts.delete", "tags.create", "tags.update"]
    )
    assert by_path["/deletes"] == ["posts.delete"]
    assert by_path["/tagupd"] == ["tags.update"]
    assert "/off" not in by_path
    assert len(got) == 7
    # one event, two subscriptions: the same webhook-id for both
    delete_ids = {r.id for r in got if r.path in ("/every", "/deletes") and b'"delete"' in r.body}
    assert len(delete_ids) == 1


def test_cascade_deletes_send_their_own_events(
    client: TestClient, su: H, receiver: Receiver
) -> None:
    posts = _collection(client, su, "posts")
    rel = {"name": "post", "type": "relation", "collectionId": posts["id"], "required": True,
           "cascadeDelete": True, "maxSelect": 1}  # fmt: skip
    _collection(client, su, "comments", fields=[rel, {"name": "title", "type": "text"}])
    hook = _subscribe(client, su, receiver, "deletes", "*", events=["delete"])
    pid = client.post("/api/collections/posts/records", json={"title": "p"}, headers=su).json()
    cids = {
        client.post(
            "/api/collections/comments/records", json={"post": pid["id"]}, headers=su
        ).json()["id"]
        for _ in range(2)
    }
    r = client.delete(f"/api/collections/posts/records/{pid['id']}", headers=su)
    assert r.status_code == 204
    assert len(_wait_jobs(client, su, 3, {"completed"})) == 3  # one per deleted record
    got = receiver.wait_for(lambda g: len(g) >= 3)
    seen = {
        (d["collection"], d["record"]["id"])
        for d in (_verified(r, hook["secret"])["data"] for r in got)
    }
    assert seen == {("posts", pid["id"]), *(("comments", c) for c in cids)}
    assert len({r.id for r in got}) == 3


def test_subscription_follows_a_collection_rename(
    client: TestClient, su: H, receiver: Receiver
) -> None:
    posts = _collection(client, su, "posts")
    hook = _subscribe(client, su, receiver, "renamed", "posts")
    r = client.patch(f"/api/collections/{posts['id']}", json={"name": "articles"}, headers=su)
    assert r.status_code == 200, r.text
    shown = client.get(f"/api/webhooks/{hook['id']}", headers=su).json()
    assert shown["collection"] == "articles"
    client.post("/api/collections/articles/records", json={"title": "x"}, headers=su)
    [req] = receiver.wait_for(lambda g: len(g) >= 1)
    data = _verified(req, hook["secret"])["data"]
    assert (data["collection"], data["collectionId"]) == ("articles", posts["id"])
    # a new collection that takes the old name is not what was subscribed to
    _collection(client, su, "posts")
    client.post("/api/collections/posts/records", json={"title": "y"}, headers=su)
    client.post("/api/collections/articles/records", json={"title": "z"}, headers=su)
    _wait_jobs(client, su, 2, {"completed"})
    got = receiver.wait_for(lambda g: len(g) >= 2)
    assert [_verified(g, hook["secret"])["data"]["record"]["title"] for g in got] == ["x", "z"]


def test_retry_keeps_webhook_id_and_body(client: TestClient, su: H, receiver: Receiver) -> None:
    _collection(client, su, "posts")
    hook = _subscribe(client, su, receiver, "flaky", "posts")
    receiver.mode = "503"
    client.post("/api/collections/posts/records", json={"title": "x"}, headers=su)
    receiver.wait_for(lambda g: len(g) >= 1)
    receiver.mode = "close"  # the next attempt: connection closed without an answer
    receiver.wait_for(lambda g: len(g) >= 2)
    receiver.mode = "ok"
    got = receiver.wait_for(lambda g: any(r.answered == 200 for r in g))
    assert [r.answered for r in got] == [503, None, 200], got
    assert len({r.id for r in got}) == 1
    assert len({r.body for r in got}) == 1
    for req in got:  # each attempt is signed afresh, and each verifies
        _verified(req, hook["secret"])

    [job] = _wait_jobs(client, su, 1, {"completed"})
    assert job["attempt"] == 3
    assert len(job["errors"]) == 2
    log = _log(client, su, hook["id"])
    assert [(d["attempt"], d["status"], d["code"]) for d in log] == [
        (1, "failed", 503),
        (2, "failed", None),
        (3, "delivered", 200),
    ]
    assert {d["event"] for d in log} == {got[0].id}
    assert log[0]["error"] == "HTTP 503"
    assert log[0]["response"] == "unavailable"
    assert log[1]["error"]  # what the connection did, e.g. RemoteProtocolError


def test_dead_letter_after_max_attempts(
    client: TestClient, su: H, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _collection(client, su, "posts")
    token = "tok_" + wh.new_secret()[6:20]  # URLs often carry a token: never logged
    url = f"{receiver.url}/down/{token}?key={token}"
    hook = _subscribe(client, su, receiver, "down", "posts", url=url)
    receiver.stop()  # connection refused
    client.post("/api/collections/posts/records", json={"title": "x"}, headers=su)
    [job] = _wait_jobs(client, su, 1, {"discarded"})
    assert job["state"] == "discarded"
    assert job["attempt"] == MAX_ATTEMPTS
    assert len(job["errors"]) == MAX_ATTEMPTS
    assert token not in orjson.dumps(job["errors"]).decode()
    assert token not in caplog.text
    log = _log(client, su, hook["id"])
    assert [d["attempt"] for d in log] == list(range(1, MAX_ATTEMPTS + 1))
    assert all(d["status"] == "failed" and d["code"] is None and d["error"] for d in log)
    assert all(d["job"] == job["id"] for d in log)
    assert len({d["event"] for d in log}) == 1

    # a dead letter can be replayed once the receiver is back: same webhook-id
    receiver.start()
    r = client.post(f"/api/jobs/{job['id']}/retry", headers=su)
    assert r.status_code == 200, r.text
    got = receiver.wait_for(lambda g: len(g) >= 1)
    assert len(got) == 1
    assert got[0].id == log[0]["event"]
    _verified(got[0], hook["secret"])
    _wait_jobs(client, su, 1, {"completed"})
    assert _log(client, su, hook["id"])[-1]["status"] == "delivered"


def test_redirect_is_a_failed_delivery(client: TestClient, su: H, receiver: Receiver) -> None:
    _collection(client, su, "posts")
    hook = _subscribe(client, su, receiver, "moved", "posts")
    receiver.mode = "redirect"
    client.post("/api/collections/posts/records", json={"title": "x"}, headers=su)
    [job] = _wait_jobs(client, su, 1, {"discarded"})
    log = _log(client, su, hook["id"])
    assert [(d["status"], d["code"]) for d in log] == [("failed", 302)] * MAX_ATTEMPTS
    paths = {r.path for r in receiver.snapshot()}
    assert paths == {"/moved"}  # never followed to /redirected
    assert job["attempt"] == MAX_ATTEMPTS


def test_endless_answer_is_not_awaited(client: TestClient, su: H, receiver: Receiver) -> None:
    """A 2xx is the answer: the body is neither waited for nor kept beyond its start."""
    _collection(client, su, "posts")
    hook = _subscribe(client, su, receiver, "endless", "posts")
    receiver.mode = "endless"
    client.post("/api/collections/posts/records", json={"title": "x"}, headers=su)
    [job] = _wait_jobs(client, su, 1, {"completed", "discarded"})
    assert (job["state"], job["attempt"]) == ("completed", 1), job
    [d] = _log(client, su, hook["id"])
    assert (d["status"], d["code"]) == ("delivered", 200)
    assert d["response"] == "x" * 1024


def test_delivery_log_retention_and_deletion(
    client: TestClient, su: H, receiver: Receiver, settings: Settings
) -> None:
    _collection(client, su, "posts")
    hook = _subscribe(client, su, receiver, "logged", "posts")
    svc = client.app.state.services  # type: ignore[attr-defined]
    old = time.time() - settings.jobs_discarded_retention - 60
    recent = time.time() - settings.jobs_discarded_retention + 3600
    for event, at in (("evt_old", old), ("evt_recent", recent)):
        client.portal.call(  # type: ignore[union-attr]
            svc.webhooks.db.execute,
            'INSERT INTO "_webhook_deliveries" ("webhook", "event", "type", "job", "attempt", '
            '"status", "code", "duration_ms", "error", "response", "at") '
            "VALUES (?, ?, 'record.create', NULL, 1, 'delivered', 200, 1.0, '', '', ?)",
            (hook["id"], event, at),
        )
    client.post("/api/collections/posts/records", json={"title": "x"}, headers=su)
    _wait_jobs(client, su, 1, {"completed"})
    events = [d["event"] for d in _log(client, su, hook["id"])]
    assert "evt_old" not in events
    assert "evt_recent" in events
    assert len(events) == 2

    assert client.delete(f"/api/webhooks/{hook['id']}", headers=su).status_code == 204
    left = client.portal.call(  # type: ignore[union-attr]
        svc.webhooks.db.fetchone,
        'SELECT COUNT(*) FROM "_webhook_deliveries" WHERE "webhook" = ?',
        (hook["id"],),
    )
    assert left[0] == 0


def test_inactive_or_deleted_subscription_stops_pending_retries(
    client: TestClient, su: H, receiver: Receiver
) -> None:
    _collection(client, su, "posts")
    paused = _subscribe(client, su, receiver, "paused", "posts")
    gone = _subscribe(client, su, receiver, "gone", "posts")
    receiver.mode = "503"
    client.post("/api/collections/posts/records", json={"title": "x"}, headers=su)

    def two_each(g: list[Received]) -> bool:
        return all(sum(r.path == p for r in g) >= 2 for p in ("/paused", "/gone"))

    receiver.wait_for(two_each)  # the next attempts are >= 0.3 s away
    r = client.patch(f"/api/webhooks/{paused['id']}", json={"active": False}, headers=su)
    assert r.status_code == 200
    assert client.delete(f"/api/webhooks/{gone['id']}", headers=su).status_code == 204
    receiver.mode = "ok"
    jobs = _wait_jobs(client, su, 2, {"discarded"})
    assert {j["state"] for j in jobs} == {"discarded"}
    assert all(j["attempt"] < MAX_ATTEMPTS for j in jobs)
    assert not receiver.delivered()
    reasons = " ".join(j["errors"][-1]["error"] for j in jobs)
    assert "inactive" in reasons
    assert "deleted" in reasons


def test_refused_at_delivery_time(database_url: str, tmp_path: Path, receiver: Receiver) -> None:
    """A subscription made while an address was allowed, then the allow-list narrowed: the
    delivery is refused before anything is sent, logged as `refused`, and dead-lettered."""
    data_dir = str(tmp_path / "data")
    wide = load_settings(
        env={**ENV, "SHIPYARD_WEBHOOK_ALLOW_PRIVATE": "127.0.0.0/8"},
        data_dir=data_dir,
        database_url=database_url,
    )
    with TestClient(create_app(wide)) as c:
        svc = c.app.state.services  # type: ignore[attr-defined]
        c.portal.call(superusers.create, svc, *SUPERUSER)  # type: ignore[union-attr]
        su = _login(c)
        _collection(c, su, "posts")
        by_address = _subscribe(c, su, receiver, "by-address", "posts")  # 127.0.0.1
        host_url = receiver.url.replace("127.0.0.1", "localhost") + "/by-host"
        by_host = _subscribe(c, su, receiver, "by-host", "posts", url=host_url)
        # the CIDR admits all of 127/8, and nothing else
        r = c.post("/api/webhooks", json={"name": "x", "collection": "posts",
                                         "url": "http://10.1.1.1/"}, headers=su)  # fmt: skip
        assert r.status_code == 400

    narrow = load_settings(
        env={**ENV, "SHIPYARD_WEBHOOK_ALLOW_PRIVATE": "localhost"},
        data_dir=data_dir,
        database_url=database_url,
    )
    with TestClient(create_app(narrow)) as c:
        su = _login(c)
        c.post("/api/collections/posts/records", json={"title": "x"}, headers=su)
        jobs = _wait_jobs(c, su, 2, {"completed", "discarded"})
        state = {j["args"]["webhook"]: j for j in jobs}
        assert state[by_address["id"]]["state"] == "discarded"
        assert state[by_address["id"]]["attempt"] == 1  # not retried: refusals are final
        assert state[by_host["id"]]["state"] == "completed"
        [refused] = _log(c, su, by_address["id"])
        assert (refused["status"], refused["code"], refused["attempt"]) == ("refused", None, 1)
        assert "127.0.0.1" in refused["error"]
        assert [d["status"] for d in _log(c, su, by_host["id"])] == ["delivered"]
    got = receiver.snapshot()
    assert [r.path for r in got] == ["/by-host"]  # nothing sent to the refused one
    # the request went to the checked address, with the subscription's host name
    assert got[0].headers["host"] == f"localhost:{receiver.port}"
    _verified(got[0], by_host["secret"])


def _login(c: TestClient) -> H:
    r = c.post(
        "/api/collections/_superusers/auth-with-password",
        json={"identity": SUPERUSER[0], "password": SUPERUSER[1]},
    )
    assert r.status_code == 200, r.text
    return {"Authorization": r.json()["token"]}


# ---------------------------------------------------------------------- the SSRF guard itself


@pytest.mark.parametrize(
    ("allow", "url", "ok"),
    [
        ([], "http://127.0.0.1:{port}/", False),
        ([], "http://localhost:{port}/", False),
        (["127.0.0.1"], "http://127.0.0.1:{port}/", True),
        (["127.0.0.1"], "http://localhost:{port}/", True),  # resolves only to that address
        (["localhost"], "http://localhost:{port}/", True),
        (["localhost"], "http://127.0.0.1:{port}/", False),  # a host entry is not an address
        (["127.0.0.0/8"], "http://127.0.0.1:{port}/", True),
        (["10.0.0.0/8"], "http://127.0.0.1:{port}/", False),
        (["127.0.0.2"], "http://127.0.0.1:{port}/", False),
        (["127.0.0.1"], "http://[::ffff:127.0.0.1]:{port}/", False),  # v6 form, not listed
    ],
)
def test_allow_list(receiver: Receiver, allow: list[str], url: str, ok: bool) -> None:
    """By host, by address and by network; a refusal sends nothing at all."""
    secret = wh.new_secret()
    body = b'{"hello":"world"}'
    headers = wh.signed_headers(secret, "msg_1", body)
    target = url.format(port=receiver.port)

    async def send() -> wh.Delivery:
        return await wh.post(target, body, headers, allow=allow, timeout=3)

    if ok:
        d = asyncio.run(send())
        assert d.ok, d
        assert d.status == 200, d
        [req] = receiver.snapshot()
        assert req.verify(secret) == {"hello": "world"}
    else:
        with pytest.raises(wh.Refused):
            asyncio.run(send())
        assert receiver.snapshot() == []


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"],
)
def test_public_addresses_pass(address: str) -> None:
    """The guard refuses internal forms (tests/api) without refusing public ones."""
    assert wh.is_public(ipaddress.ip_address(address))


def test_signatures_match_standard_webhooks() -> None:
    """Our signer against the library's, for generated and for unpadded secrets."""
    unpadded = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo"  # 26 bytes, no '=' padding
    for secret in (wh.new_secret(), wh.new_secret(), unpadded):
        body = orjson.dumps({"type": "record.create", "n": secret})
        headers = wh.signed_headers(secret, "evt_abc", body)
        assert StandardWebhook(secret).verify(body, headers) == orjson.loads(body)


# ---------------------------------------------------------------------- declarative file


def _schema_file(
    path: Path, url: str, events: list[str], env: str, more: tuple[str, ...] = ()
) -> Path:
    doc = {
        "collections": [
            {"name": name, "type": "base", "fields": [{"name": "title", "type": "text"}]}
            for name in ("notes", *more)
        ],
        "webhooks": [
            {"name": "notes-out", "collection": "notes", "events": events, "url": url,
             "secretEnv": env},
        ],
    }  # fmt: skip
    path.write_bytes(orjson.dumps(doc))
    return path


def test_declarative_file(
    database_url: str,
    tmp_path: Path,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data_dir = tmp_path / "data"
    env_name = "SHIPYARD_TEST_NOTES_HOOK_SECRET"
    file = _schema_file(tmp_path / "schema.json", receiver.url + "/v1", ["create"], env_name)
    env = {
        **os.environ,
        **ENV,
        "SHIPYARD_DATA_DIR": str(data_dir),
        "SHIPYARD_DATABASE_URL": database_url,
    }
    env.pop(env_name, None)
    cli = [sys.executable, "-m", "shipyard.cli", "migrate", "--schema-file", str(file)]

    # a missing environment variable is a clear error, and nothing is applied
    missing = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=60)
    assert missing.returncode != 0
    assert env_name in missing.stderr, missing.stderr
    assert "notes-out" in missing.stderr, missing.stderr
    first = wh.new_secret()
    done = subprocess.run(
        cli, env={**env, env_name: first}, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert first not in done.stdout + done.stderr

    settings = load_settings(env=ENV, data_dir=str(data_dir), database_url=database_url)
    with TestClient(create_app(settings)) as c:
        svc = c.app.state.services  # type: ignore[attr-defined]
        assert svc.store.get("notes") is not None
        [w] = c.portal.call(svc.webhooks.all)  # type: ignore[union-attr]
        assert (w.name, w.collection, w.events, w.url) == (
            "notes-out", "notes", ["create"], receiver.url + "/v1",
        )  # fmt: skip
        c.portal.call(superusers.create, svc, *SUPERUSER)  # type: ignore[union-attr]
        su = _login(c)
        note = c.post("/api/collections/notes/records", json={"title": "a"}, headers=su).json()
        [req] = receiver.wait_for(lambda g: len(g) >= 1)
        assert req.path == "/v1"
        assert _verified(req, first)["data"]["record"]["id"] == note["id"]

        # re-applying updates the same subscription by name, with the new secret
        second = wh.new_secret()
        monkeypatch.setenv(env_name, second)
        _schema_file(file, receiver.url + "/v2", ["update", "create"], env_name)
        c.portal.call(declarative.apply_file, svc, file)  # type: ignore[union-attr]
        [w2] = c.portal.call(svc.webhooks.all)  # type: ignore[union-attr]
        assert (w2.id, w2.events, w2.url) == (w.id, ["create", "update"], receiver.url + "/v2")
        url = f"/api/collections/notes/records/{note['id']}"
        assert c.patch(url, json={"title": "b"}, headers=su).status_code == 200
        got = receiver.wait_for(lambda g: len(g) >= 2)
        assert [r.path for r in got] == ["/v1", "/v2"]
        assert _verified(got[1], second)["type"] == "record.update"
        with pytest.raises(WebhookVerificationError):
            got[1].verify(first)

        # a missing variable on re-apply changes nothing
        monkeypatch.delenv(env_name)
        _schema_file(file, receiver.url + "/v3", ["delete"], env_name, more=("extra",))
        with pytest.raises(declarative.SchemaFileError, match=env_name):
            c.portal.call(declarative.apply_file, svc, file)  # type: ignore[union-attr]
        assert svc.store.get("extra") is None  # checked before any collection is applied
        [w3] = c.portal.call(svc.webhooks.all)  # type: ignore[union-attr]
        assert (w3.url, w3.events, w3.secret) == (w2.url, w2.events, second)


def test_hidden_fields_are_not_sent(client: TestClient, su: H, receiver: Receiver) -> None:
    r = client.post(
        "/api/collections",
        json={
            "name": "cards",
            "type": "base",
            "fields": [
                {"name": "label", "type": "text"},
                {"name": "pin", "type": "text", "hidden": True},
            ],
        },
        headers=su,
    )
    assert r.status_code == 200, r.text
    hook = _subscribe(client, su, receiver, "cards-hook", "cards")
    base = "/api/collections/cards/records"
    rid = client.post(base, json={"label": "a", "pin": "PIN-1234"}, headers=su).json()["id"]
    assert client.patch(f"{base}/{rid}", json={"label": "b"}, headers=su).status_code == 200
    got = receiver.wait_for(lambda g: len(g) >= 2)
    assert len(got) == 2
    for req in got:
        data = _verified(req, hook["secret"])["data"]
        assert data["record"]["label"] in ("a", "b")
        assert "pin" not in data["record"]
        assert data["oldRecord"] is None or "pin" not in data["oldRecord"]
        assert b"PIN-1234" not in req.body


def test_delivery_job_with_bad_args_is_dead_lettered(client: TestClient, su: H) -> None:
    for args in ({"event": {"id": "evt_x"}}, {"webhook": "abc"}, [1, 2], "x"):
        r = client.post("/api/jobs", json={"kind": "webhook", "args": args}, headers=su)
        assert r.status_code == 200, r.text
    jobs = _wait_jobs(client, su, 4, {"discarded"})
    assert len(jobs) == 4, jobs
    assert all(j["attempt"] == 1 for j in jobs), jobs
    assert all("webhook:" in j["errors"][-1]["error"] for j in jobs)
