"""Keyset (cursor) pagination, a Shipyard extension: walking every page by `nextCursor`
yields exactly the OFFSET listing, in the same order — on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

H = dict[str, str]
URL = "/api/collections/items/records"


@pytest.fixture
def items(client: TestClient, su: H) -> list[str]:
    r = client.post(
        "/api/collections",
        json={
            "name": "items",
            "listRule": "",
            "fields": [
                {"name": "n", "type": "number"},
                {"name": "title", "type": "text"},
                {"name": "flag", "type": "bool"},
                {"name": "secret", "type": "text", "hidden": True},
            ],
        },
        headers=su,
    )
    assert r.status_code == 200, r.text
    ids = []
    for i in range(25):
        body = {"n": i % 4, "title": f"t{(i * 7) % 5}", "flag": i % 3 == 0, "secret": "s"}
        r = client.post(URL, json=body, headers=su)
        assert r.status_code == 200, r.text
        ids.append(r.json()["id"])
    return ids


def _walk(client: TestClient, query: str, per_page: int) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    cursor = ""
    for _ in range(100):
        r = client.get(f"{URL}?perPage={per_page}&cursor={cursor}&{query}")
        assert r.status_code == 200, r.text
        page = r.json()
        assert page["totalItems"] == -1
        assert len(page["items"]) <= per_page
        seen += page["items"]
        if page["nextCursor"] is None:
            return seen
        cursor = page["nextCursor"]
    raise AssertionError("cursor pagination did not end")


@pytest.mark.parametrize(
    "query",
    ["", "sort=-n", "sort=n,-title", "sort=flag,title", "sort=-created", "filter=n%3E1&sort=title"],
)
def test_cursor_walk_matches_offset_listing(
    client: TestClient, items: list[str], query: str
) -> None:
    full = client.get(f"{URL}?perPage=100&{query}").json()["items"]
    assert [i["id"] for i in _walk(client, query, 7)] == [i["id"] for i in full]
    assert [i["id"] for i in _walk(client, query, 100)] == [i["id"] for i in full]


def test_cursor_sees_rows_added_behind_it(client: TestClient, items: list[str], su: H) -> None:
    first = client.get(f"{URL}?perPage=10&cursor=").json()
    client.post(URL, json={"n": 9, "title": "late"}, headers=su)
    rest = client.get(f"{URL}?perPage=100&cursor={first['nextCursor']}").json()
    got = [i["id"] for i in first["items"] + rest["items"]]
    assert got[:25] == items
    assert len(got) == 26  # nothing skipped, nothing twice


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("cursor=%25%25%25", "Invalid cursor"),
        ("cursor=" + base64.urlsafe_b64encode(b'["-n",[1]]').decode(), "Invalid cursor"),
        ("cursor=" + base64.urlsafe_b64encode(b'["",[{"a":1}]]').decode(), "Invalid cursor"),
        ("cursor=&sort=secret", "only the collection's own visible fields"),
        ("cursor=&sort=nope", "only the collection's own visible fields"),
        ("cursor=&sort=@random", "only the collection's own visible fields"),
        ("cursor=&sort=n:lower", "only the collection's own visible fields"),
    ],
)
def test_bad_cursors_are_400(
    client: TestClient, items: list[str], query: str, message: str
) -> None:
    r = client.get(f"{URL}?{query}")
    assert r.status_code == 400, r.text
    assert message in r.json()["message"]


def test_cursor_from_another_sort_is_refused(client: TestClient, items: list[str]) -> None:
    page = client.get(f"{URL}?perPage=5&cursor=&sort=-n").json()
    r = client.get(f"{URL}?perPage=5&cursor={page['nextCursor']}&sort=n")
    assert r.status_code == 400
    decoded = orjson.loads(base64.urlsafe_b64decode(page["nextCursor"] + "=="))
    assert decoded[0] == "-n"
