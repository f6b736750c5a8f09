"""Events cross processes: a subscriber on one `shipyard serve` process hears every write
committed on another, in commit order, only after commit; its subscriptions may be posted
to any process (SQLite outbox, PostgreSQL NOTIFY)."""

from __future__ import annotations

import uuid

import httpx

from tests.helpers.realtime import ON_BACKENDS, Pair, Stream

pytestmark = ON_BACKENDS


def _posts(pair: Pair, **rules: str) -> str:
    name = "p" + uuid.uuid4().hex[:8]
    pair.collection(
        {
            "name": name,
            "type": "base",
            "listRule": "",
            "viewRule": "",
            "createRule": "",
            "updateRule": "",
            "deleteRule": "",
            **rules,
            "fields": [
                {"name": "title", "type": "text"},
                {"name": "n", "type": "number"},
                {"name": "body", "type": "text", "max": 100000},
            ],
        }
    )
    return name


def test_writes_on_another_process_reach_the_subscriber_in_commit_order(pair: Pair) -> None:
    name = _posts(pair)
    s = Stream(pair.a.url)
    try:
        assert s.subscribe(f"{name}/*").status_code == 204
        ids = [pair.create(name, {"title": f"t{i}", "n": i})["id"] for i in range(12)]
        pair.update(name, ids[0], {"title": "changed"})
        pair.delete(name, ids[1])
        got = s.wait(14)
        assert [(e["action"], e["record"]["id"]) for e in got] == [
            *(("create", i) for i in ids),
            ("update", ids[0]),
            ("delete", ids[1]),
        ]
        assert [e["record"]["n"] for e in got[:12]] == list(range(12))
        assert got[12]["record"]["title"] == "changed"
        assert got[0]["record"]["collectionName"] == name
    finally:
        s.close()


def test_subscriptions_posted_to_another_process(pair: Pair) -> None:
    """The stream is on the first process, its POST reaches the second: 204, and the
    events of a write made right after the answer arrive."""
    name = _posts(pair)
    s = Stream(pair.a.url)
    try:
        r = s.subscribe(f"{name}/*", via=pair.b.url)
        assert r.status_code == 204, r.text
        rec = pair.create(name, {"title": "x"})
        assert s.wait(1)[0]["record"]["id"] == rec["id"]
        # a changed auth is refused by the other process too (PocketBase's 403)
        assert s.subscribe(f"{name}/*", via=pair.b.url, token=pair.token).status_code == 204
        r = s.subscribe(f"{name}/*", via=pair.b.url)
        assert r.status_code == 403
        assert r.json()["message"] == (
            "The current and the previous request authorization don't match."
        )
        # replacing with nothing: no more events
        assert s.subscribe(via=pair.b.url, token=pair.token).status_code == 204
        pair.create(name, {"title": "y"})
        assert len(s.quiet(1)) == 1
    finally:
        s.close()
    r = httpx.post(pair.b.url + "/api/realtime", json={"clientId": "x" * 40})
    assert r.status_code == 404


def test_a_failed_write_publishes_nothing(pair: Pair) -> None:
    name = _posts(pair, createRule="title != 'no'")
    s = Stream(pair.a.url)
    try:
        assert s.subscribe(f"{name}/*").status_code == 204
        r = httpx.post(f"{pair.b.url}/api/collections/{name}/records", json={"title": "no"})
        assert r.status_code == 400  # the rule refused it inside the transaction
        pair.create(name, {"title": "yes"})
        got = s.quiet(1)
        assert [e["record"]["title"] for e in got] == ["yes"]
    finally:
        s.close()


def test_large_records_cross_too(pair: Pair) -> None:
    """Over PostgreSQL NOTIFY's 8000-byte payload limit the event goes through the table."""
    name = _posts(pair)
    s = Stream(pair.a.url)
    try:
        assert s.subscribe(f"{name}/*").status_code == 204
        big = "é" * 20000
        pair.create(name, {"body": big})
        pair.create(name, {"body": "small"})
        got = s.wait(2)
        assert [e["record"]["body"] for e in got] == [big, "small"]
    finally:
        s.close()


def test_a_batch_publishes_its_writes_after_its_commit(pair: Pair) -> None:
    """POST /api/batch: every write of the one transaction, in order, once it commits; a
    batch that fails publishes nothing."""
    name = _posts(pair, createRule="title != 'no'")
    r = httpx.patch(
        pair.a.url + "/api/settings", json={"batch": {"enabled": True}}, headers=pair.su
    )
    assert r.status_code == 200, r.text
    s = Stream(pair.a.url)
    try:
        assert s.subscribe(f"{name}/*").status_code == 204
        url = f"/api/collections/{name}/records"

        def batch(*titles: str) -> int:
            requests = [{"method": "POST", "url": url, "body": {"title": t}} for t in titles]
            r = httpx.post(pair.b.url + "/api/batch", json={"requests": requests})
            return r.status_code

        assert batch("one", "no") == 400  # the second is refused: nothing commits
        assert batch("two", "three") == 200
        got = s.wait(2)
        assert [(e["action"], e["record"]["title"]) for e in got] == [
            ("create", "two"),
            ("create", "three"),
        ]
        assert len(s.quiet(2)) == 2
    finally:
        s.close()
