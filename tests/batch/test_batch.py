"""POST /api/batch on SQLite and PostgreSQL, through HTTP: the four actions and their
results, one transaction (a failing sub-request rolls every earlier one back, with its
record events' outbox), each sub-request under its own rules with the caller's auth, the
`batch` settings and their limits, files in multipart batches, expand/fields on sub-URLs,
the response cache, and rate limits counted per sub-request."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from shipyard.app import create_app
from shipyard.auth import superusers
from shipyard.settings import load_settings
from tests.helpers.servers import SUPERUSER

H = dict[str, str]
App = tuple[TestClient, H]
P = dict[str, str]


def batch(client: TestClient, requests: list[dict[str, Any]], headers: H | None = None) -> Any:
    return client.post("/api/batch", json={"requests": requests}, headers=headers or {})


def create(p: P, title: str, **extra: Any) -> dict[str, Any]:
    return {"method": "POST", "url": p["url"], "body": {"title": title, **extra}}


def titles(app: App, p: P) -> list[str]:
    client, su = app
    r = client.get(p["url"] + "?sort=title&perPage=100", headers=su)
    return [item["title"] for item in r.json()["items"]]


def failed(index: int, status: int, message: str, data: Any = None) -> dict[str, Any]:
    """PocketBase's answer to a batch whose sub-request `index` failed so."""
    response = {"status": status, "message": message, "data": data or {}}
    item = {
        "code": "batch_request_failed",
        "message": "Batch request failed.",
        "response": response,
    }
    return {
        "status": 400,
        "message": "Batch transaction failed.",
        "data": {"requests": {str(index): item}},
    }


def test_off_until_turned_on(app: App) -> None:
    client, su = app
    assert load_settings(env={}).batch_enabled is False  # PocketBase's default
    r = client.patch("/api/settings", json={"batch": {"enabled": False}}, headers=su)
    assert r.status_code == 200, r.text
    r = client.post("/api/batch", json={"requests": []}, headers=su)
    assert (r.status_code, r.json()) == (
        403,
        {"status": 403, "message": "Batch requests are not allowed.", "data": {}},
    )


def test_create_update_upsert_delete(app: App, posts: P) -> None:
    client, _ = app
    rid, url = "a" * 15, posts["url"]
    r = batch(
        client,
        [
            create(posts, "a", id=rid),
            {"method": "PUT", "url": url + "?fields=id,title", "body": {"id": rid, "title": "b"}},
            {"method": "PUT", "url": url, "body": {"title": "c"}},
            {"method": "PATCH", "url": f"{url}/{rid}", "body": {"n+": 5}},
        ],
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert [x["status"] for x in out] == [200, 200, 200, 200]
    assert out[0]["body"]["title"] == "a"
    assert out[0]["body"]["collectionName"] == posts["posts"]
    assert out[1]["body"] == {"id": rid, "title": "b"}  # upsert of an existing id: update
    assert out[2]["body"]["title"] == "c"
    assert out[2]["body"]["id"] != rid  # upsert without an existing id: create
    assert (out[3]["body"]["n"], out[3]["body"]["title"]) == (5, "b")
    assert titles(app, posts) == ["b", "c"]
    r = batch(client, [{"method": "DELETE", "url": f"{url}/{rid}"}])
    assert r.json() == [{"status": 204, "body": None}]
    assert titles(app, posts) == ["c"]


def test_a_failing_sub_request_rolls_back_the_batch(app: App, posts: P) -> None:
    client, su = app
    hook = {"name": posts["posts"], "collection": posts["posts"], "url": "http://127.0.0.1:9/h"}
    r = client.post("/api/webhooks", json=hook, headers=su)
    assert r.status_code == 200, r.text
    before = client.get("/api/jobs?kind=webhook", headers=su).json()["totalItems"]
    r = batch(client, [create(posts, "kept-1"), create(posts, "kept-2")])
    assert r.status_code == 200
    assert client.get("/api/jobs?kind=webhook", headers=su).json()["totalItems"] == before + 2
    missing = {"method": "PATCH", "url": f"{posts['url']}/nope", "body": {}}
    r = batch(client, [create(posts, "gone"), missing])
    assert r.json() == failed(1, 404, "The requested resource wasn't found.")
    assert r.status_code == 400
    r = batch(client, [create(posts, "gone"), create(posts, "")])  # every field's problem named
    body = r.json()["data"]["requests"]["1"]["response"]
    assert (body["status"], set(body["data"])) == (400, {"title"})
    assert titles(app, posts) == ["kept-1", "kept-2"]
    # the rolled-back creates enqueued no webhook delivery (the outbox is in the transaction)
    assert client.get("/api/jobs?kind=webhook", headers=su).json()["totalItems"] == before + 2


def test_later_sub_requests_see_earlier_writes(app: App, posts: P) -> None:
    client, _ = app
    author = {"method": "POST", "url": f"/api/collections/{posts['authors']}/records",
              "body": {"id": "b" * 15, "name": "Ann"}}  # fmt: skip
    post = create(posts, "p", author="b" * 15)
    post["url"] += "?expand=author&fields=title,expand.author.name"
    r = batch(client, [author, post])
    assert r.status_code == 200, r.text
    assert r.json()[1]["body"] == {"title": "p", "expand": {"author": {"name": "Ann"}}}


def test_rules_apply_with_the_callers_auth(app: App, posts: P) -> None:
    client, su = app
    locked = {"method": "POST", "url": f"/api/collections/{posts['locked']}/records",
              "body": {"title": "x"}}  # fmt: skip
    only_su = failed(0, 403, "Only superusers can perform this action.")
    assert batch(client, [locked]).json() == only_su
    # a sub-request's own Authorization header lends no one's rights (as PocketBase)
    assert batch(client, [{**locked, "headers": su}]).json() == only_su
    r = batch(client, [{**locked, "headers": {"Authorization": "garbage"}}], headers=su)
    assert r.status_code == 200, r.text


def test_bad_batches(app: App, posts: P) -> None:
    client, _ = app
    url = posts["url"]
    blank = {"code": "validation_required", "message": "Cannot be blank."}
    unreadable = (400, "Failed to read the submitted batch data.", {})
    cases: list[tuple[Any, tuple[int, str, Any]]] = [
        ({"requests": []}, (400, "Invalid batch request data.", {"requests": blank})),
        ({}, (400, "Invalid batch request data.", {"requests": blank})),
        ({"requests": "x"}, unreadable),
        ({"requests": [1]}, unreadable),
        ({"requests": [{"method": "POST", "url": url, "body": "x"}]}, unreadable),
        ({"requests": [{"method": "POST", "url": url, "headers": {"a": 1}}]}, unreadable),
        ([1], unreadable),
        (
            {"requests": [{"method": "POST"}]},
            (400, "Invalid batch request data.", {"requests": {"0": {"url": blank}}}),
        ),
        (
            {"requests": [{"method": "post", "url": url}, {"method": "POST", "url": "x" * 2001}]},
            (
                400,
                "Invalid batch request data.",
                {
                    "requests": {
                        "0": {
                            "method": {
                                "code": "validation_in_invalid",
                                "message": "Must be a valid value.",
                            }
                        },
                        "1": {
                            "url": {
                                "code": "validation_length_too_long",
                                "message": "The length must be no more than 2000.",
                                "params": {"max": 2000, "min": 0},
                            }
                        },
                    }
                },
            ),
        ),
    ]
    for payload, (status, message, data) in cases:
        r = client.post("/api/batch", json=payload)
        assert r.json() == {"status": status, "message": message, "data": data}, payload
        assert r.status_code == status
    r = client.post("/api/batch", content=b"{", headers={"content-type": "application/json"})
    assert r.json()["message"] == "Failed to read the submitted batch data."
    something = "Something went wrong while processing your request."
    for sub in (
        {"method": "GET", "url": url},  # only the four write actions
        {"method": "POST", "url": url + "/"},
        {"method": "POST", "url": "http://x" + url},
    ):
        assert batch(client, [sub]).json() == failed(0, 400, something), sub
    nope = {"method": "POST", "url": "/api/collections/nope/records"}
    assert batch(client, [nope]).json() == failed(0, 404, "Missing collection context.")


def test_settings_limits(app: App, posts: P) -> None:
    client, su = app
    r = client.patch("/api/settings", json={"batch": {"maxRequests": 2}}, headers=su)
    assert r.status_code == 200, r.text
    r = batch(client, [create(posts, "a"), create(posts, "b"), create(posts, "c")])
    assert r.status_code == 400
    assert r.json()["data"] == {
        "requests": {
            "code": "validation_length_too_long",
            "message": "The length must be no more than 2.",
            "params": {"max": 2, "min": 0},
        }
    }
    bad = {"maxRequests": -1, "timeout": -1, "maxBodySize": -5}
    r = client.patch("/api/settings", json={"batch": bad}, headers=su)
    assert r.status_code == 400
    assert set(r.json()["data"]["batch"]) == {"maxRequests", "timeout", "maxBodySize"}
    r = client.patch("/api/settings", json={"batch": {"maxRequests": 0}}, headers=su)
    assert r.json()["data"]["batch"]["maxRequests"]["code"] == "validation_required"
    r = client.patch("/api/settings", json={"batch": {"maxBodySize": 200}}, headers=su)
    assert r.status_code == 200, r.text
    r = batch(client, [create(posts, "t" * 300)])
    assert r.status_code == 413
    assert titles(app, posts) == []


def test_timeout_rolls_back(app: App, posts: P) -> None:
    client, su = app
    name = "slow" + posts["posts"]
    r = client.post(
        "/api/collections",
        json={
            "name": name,
            "createRule": "",
            "listRule": "",
            "fields": [{"name": "t", "type": "text"}],
        },
        headers=su,
    )
    assert r.status_code == 200, r.text
    url = f"/api/collections/{name}/records"
    assert client.patch("/api/settings", json={"batch": {"timeout": 1}}, headers=su).is_success
    r = batch(client, [{"method": "POST", "url": url, "body": {"t": str(i)}} for i in range(4)])
    assert (r.status_code, r.json()) == (
        400,
        {"status": 400, "message": "Batch transaction failed.", "data": {}},
    )
    assert client.get(url).json()["totalItems"] == 0
    r = batch(client, [{"method": "POST", "url": url, "body": {"t": "quick"}}])
    assert r.status_code == 200, r.text  # within the timeout: committed


def test_multipart_with_files(app: App, posts: P) -> None:
    client, _ = app
    payload = {"requests": [create(posts, "one"), create(posts, "two"), create(posts, "three")]}
    files = [
        ("@jsonPayload", (None, json.dumps(payload))),
        ("requests.0.f", ("a.txt", b"hello", "text/plain")),
        ("requests[1].f", ("b.txt", b"hi", "text/plain")),
        ("requests.1.f", ("c.txt", b"yo", "text/plain")),
        ("requests.9.f", ("d.txt", b"ignored", "text/plain")),  # no such sub-request
    ]
    r = client.post("/api/batch", files=files)
    assert r.status_code == 200, r.text
    out = [x["body"] for x in r.json()]
    assert [len(b["f"]) for b in out] == [1, 2, 0]
    got = client.get(f"/api/files/{posts['posts']}/{out[0]['id']}/{out[0]['f'][0]}")
    assert got.status_code == 200
    assert got.content == b"hello"
    # a batch that fails after storing a file takes the file back out of storage
    storage = Path(client.app.state.services.settings.data_dir) / "storage"  # type: ignore[attr-defined]
    stored = {p for p in storage.rglob("*") if p.is_file()}
    payload = {"requests": [create(posts, "kept?"), create(posts, "")]}
    files = [("@jsonPayload", (None, json.dumps(payload))),
             ("requests.0.f", ("gone.txt", b"gone", "text/plain"))]  # fmt: skip
    r = client.post("/api/batch", files=files)
    assert r.json()["data"]["requests"]["1"]["code"] == "batch_request_failed"
    assert {p for p in storage.rglob("*") if p.is_file()} == stored


def test_writes_reach_cached_reads(app: App, posts: P) -> None:
    client, _ = app
    assert client.get(posts["url"]).json()["totalItems"] == 0  # cached now
    assert batch(client, [create(posts, "new")]).status_code == 200
    assert client.get(posts["url"]).json()["totalItems"] == 1


def test_each_sub_request_counts_against_its_route(tmp_path: Path) -> None:
    """Rate limits on (the default) with `*:create` at 2: the batch's third create is the
    one refused, and nothing is written. `batch_enabled` set at start-up is read-only.
    (SQLite only: the check is the gateway's, the same on both engines.)"""
    rules = [{"label": "*:create", "audience": "", "duration": 3600, "maxRequests": 2}]
    settings = load_settings(
        env={},
        data_dir=str(tmp_path / "data"),
        ratelimit_rules=json.dumps(rules),
        batch_enabled=True,
    )
    with TestClient(create_app(settings), client=("127.0.0.1", 50000)) as client:
        client.portal.call(superusers.create, client.app.state.services, *SUPERUSER)  # type: ignore[attr-defined, union-attr]
        r = client.post(
            "/api/collections/_superusers/auth-with-password",
            json={"identity": SUPERUSER[0], "password": SUPERUSER[1]},
        )
        su = {"Authorization": r.json()["token"]}
        body = {"name": "posts", "listRule": "", "createRule": "",
                "fields": [{"name": "title", "type": "text"}]}  # fmt: skip
        assert client.post("/api/collections", json=body, headers=su).status_code == 200
        r = client.patch("/api/settings", json={"batch": {"enabled": False}}, headers=su)
        assert r.json()["data"]["batch"]["enabled"]["code"] == "validation_read_only"
        p = {"url": "/api/collections/posts/records"}
        r = batch(client, [create(p, "a"), create(p, "b"), create(p, "c")])
        assert r.json() == failed(2, 429, "Too Many Requests.")
        assert client.get(p["url"]).json()["totalItems"] == 0
        r = batch(client, [create(p, "d")], headers=su)  # superusers are exempt (the default)
        assert r.status_code == 200, r.text
