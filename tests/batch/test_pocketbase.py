"""POST /api/batch against the oracle: the same batches sent to the real PocketBase binary
and to Shipyard get the same statuses and the same bodies (record ids and dates aside):
the 403 while off, every 400 of a body that cannot be read or checked, a failing
sub-request's `batch_request_failed` under its index, the result list of the four actions,
and the `batch` settings' checks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from tests.helpers.servers import SUPERUSER, pocketbase_server

H = dict[str, str]
App = tuple[TestClient, H]
P = dict[str, str]


@pytest.fixture(scope="module")
def pocketbase(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, H]]:
    with (
        pocketbase_server(tmp_path_factory.mktemp("pb") / "pb_data") as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        r = client.post(
            "/api/collections/_superusers/auth-with-password",
            json={"identity": SUPERUSER[0], "password": SUPERUSER[1]},
        )
        yield client, {"Authorization": r.json()["token"]}


@pytest.fixture
def pb(pocketbase: tuple[httpx.Client, H], app: App, posts: P) -> tuple[httpx.Client, H]:
    """PocketBase with the collections of `posts`, of the same names and fields."""
    client, su = pocketbase
    sy, sy_su = app
    on = {"enabled": True, "maxRequests": 50, "timeout": 3, "maxBodySize": 0}
    assert client.patch("/api/settings", json={"batch": on}, headers=su).status_code == 200
    for name in ("authors", "posts", "locked"):
        theirs = sy.get(f"/api/collections/{posts[name]}", headers=sy_su).json()
        body = {k: theirs[k] for k in ("name", "type") if k in theirs}
        body |= {k: v for k, v in theirs.items() if k.endswith("Rule")}
        fields = [dict(f) for f in theirs["fields"] if not f.get("system")]
        for f in fields:
            f.pop("id", None)
            if f["type"] == "relation":  # PocketBase's id of the same collection
                target = client.get(f"/api/collections/{posts['authors']}", headers=su)
                f["collectionId"] = target.json()["id"]
        r = client.post("/api/collections", json={**body, "fields": fields}, headers=su)
        assert r.status_code == 200, r.text
    return client, su


def _plain(value: Any) -> Any:
    """A body with what differs by nature (ids, dates, collection ids) blanked."""
    if isinstance(value, dict):
        return {
            k: "<varies>" if k in ("id", "created", "updated", "collectionId") else _plain(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def test_same_answers_as_pocketbase(app: App, posts: P, pb: tuple[httpx.Client, H]) -> None:
    sy, sy_su = app
    oracle, pb_su = pb
    url, locked = posts["url"], f"/api/collections/{posts['locked']}/records"
    rid = "c" * 15
    batches: list[tuple[Any, bool]] = [  # (body, sent as the superuser)
        ({"requests": []}, False),
        ({}, False),
        ({"requests": "x"}, False),
        ({"requests": [1]}, False),
        ({"requests": [{"method": "POST", "url": url, "body": "x"}]}, False),
        ({"requests": [{"method": "POST", "url": url, "headers": {"a": 1}}]}, False),
        ({"requests": [{"method": "POST"}]}, False),
        ({"requests": [{"method": "post", "url": url}, {"method": "PUT", "url": "x" * 2001}]}, False),
        ({"requests": [{"method": "GET", "url": url}]}, False),
        ({"requests": [{"method": "POST", "url": url + "/", "body": {"title": "x"}}]}, False),
        ({"requests": [{"method": "POST", "url": "/api/collections/nope/records"}]}, False),
        ({"requests": [{"method": "DELETE", "url": f"{url}/nope"}]}, False),
        ({"requests": [{"method": "POST", "url": locked, "body": {"title": "x"}}]}, False),
        ({"requests": [{"method": "POST", "url": locked, "body": {"title": "x"},
                        "headers": {"Authorization": "<su>"}}]}, False),
        ({"requests": [{"method": "POST", "url": url, "body": {"title": "x"}},
                       {"method": "POST", "url": url, "body": {}}]}, False),
        ({"requests": [
            {"method": "POST", "url": url, "body": {"title": "a", "id": rid}},
            {"method": "PUT", "url": url + "?fields=id,title", "body": {"title": "b", "id": rid}},
            {"method": "PUT", "url": url, "body": {"title": "c"}},
            {"method": "PATCH", "url": f"{url}/{rid}?fields=title,n", "body": {"n+": 2}},
            {"method": "DELETE", "url": f"{url}/{rid}"},
        ]}, False),
        ({"requests": [{"method": "POST", "url": locked, "body": {"title": "y"},
                        "headers": {"Authorization": "garbage"}}]}, True),
    ]  # fmt: skip
    for body, as_su in batches:
        answers = []
        for client, su in ((sy, sy_su), (oracle, pb_su)):
            for sub in body.get("requests", []) if isinstance(body.get("requests"), list) else []:
                if isinstance(sub, dict) and sub.get("headers", {}).get("Authorization") == "<su>":
                    sub["headers"] = dict(su)
            r = client.post("/api/batch", json=body, headers=su if as_su else {})
            answers.append((r.status_code, _plain(r.json())))
        assert answers[0] == answers[1], body
    # multipart: the JSON in @jsonPayload, files as requests.N.field (others ignored)
    payload = json.dumps({"requests": [{"method": "POST", "url": url, "body": {"title": "f"}}]})
    forms: list[list[tuple[str, Any]]] = [
        [("@jsonPayload", (None, payload)), ("requests.0.f", ("a.txt", b"hi", "text/plain")),
         ("requests.5.f", ("b.txt", b"no", "text/plain"))],
        [("requests", (None, payload)), ("requests.0.f", ("a.txt", b"hi", "text/plain"))],
        [("@jsonPayload", (None, "{")), ("x", (None, "1"))],
    ]  # fmt: skip
    for form in forms:
        answers = []
        for client in (sy, oracle):
            r = client.post("/api/batch", files=form)
            plain = _plain(r.json())
            if r.status_code == 200:  # stored names are random: their shape is compared
                plain[0]["body"]["f"] = [n.rsplit(".")[-1] for n in plain[0]["body"]["f"]]
            answers.append((r.status_code, plain))
        assert answers[0] == answers[1], form
    # the settings' checks
    for change in (
        {"maxRequests": -1, "timeout": -1, "maxBodySize": -5},
        {"maxRequests": 0, "timeout": 0},
    ):
        answers = []
        for client, su in ((sy, sy_su), (oracle, pb_su)):
            r = client.patch("/api/settings", json={"batch": change}, headers=su)
            data = r.json()["data"]["batch"]
            answers.append((r.status_code, {k: v["code"] for k, v in data.items()}))
        assert answers[0] == answers[1], change
    # over maxRequests, then off
    for change, n in (({"maxRequests": 2}, 3), ({"enabled": False}, 1)):
        answers = []
        for client, su in ((sy, sy_su), (oracle, pb_su)):
            assert client.patch("/api/settings", json={"batch": change}, headers=su).is_success
            subs = [{"method": "POST", "url": url, "body": {"title": "z"}}] * n
            r = client.post("/api/batch", json={"requests": subs})
            answers.append((r.status_code, r.json()))
        assert answers[0] == answers[1], change
