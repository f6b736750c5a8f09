"""PocketBase's realtime protocol, with the PocketBase binary as the oracle: the stream's
first event and headers, and the statuses and error shapes of `POST /api/realtime`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.helpers.realtime import ON_SQLITE, Pair, Stream
from tests.helpers.servers import SUPERUSER, pocketbase_server

pytestmark = ON_SQLITE


@pytest.fixture(scope="module")
def pocketbase(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with pocketbase_server(tmp_path_factory.mktemp("pb")) as url:
        yield url


def _token(url: str) -> str:
    r = httpx.post(
        url + "/api/collections/_superusers/auth-with-password",
        json={"identity": SUPERUSER[0], "password": SUPERUSER[1]},
    )
    return str(r.json()["token"])


def _answers(url: str) -> list[Any]:
    """What one server answers to the same sequence of realtime requests."""
    s = Stream(url)
    out: list[Any] = [
        s.status,
        s.headers.get("content-type"),
        s.headers.get("cache-control"),
        s.headers.get("x-accel-buffering"),
        s.events[0][0],
        sorted(json.loads(s.events[0][1])),
        len(s.client_id),
    ]
    cid = s.client_id
    bodies: list[Any] = [
        {},
        {"clientId": ""},
        {"clientId": 5},
        {"clientId": "x" * 256},
        {"clientId": cid, "subscriptions": "posts/*"},
        {"clientId": cid, "subscriptions": [1]},
        {"clientId": cid, "subscriptions": ["a" * 2501, "b"]},
        {"clientId": cid, "subscriptions": ["a"] * 1001},
        {"clientId": "nope"},
        {"clientId": cid, "subscriptions": None},
        {"clientId": cid},
    ]
    for body in bodies:
        r = httpx.post(url + "/api/realtime", json=body)
        out.append((r.status_code, r.json() if r.content else None))
    su = {"Authorization": _token(url)}
    for headers in (su, su, {}, {"Authorization": "garbage"}):
        r = httpx.post(
            url + "/api/realtime", json={"clientId": cid, "subscriptions": ["x/*"]}, headers=headers
        )
        out.append((r.status_code, r.json() if r.content else None))
    r = httpx.post(
        url + "/api/realtime", content=b"{", headers={"content-type": "application/json"}
    )
    out.append(r.status_code)
    s.close()
    return out


def test_protocol_matches_pocketbase(pair: Pair, pocketbase: str) -> None:
    assert _answers(pair.a.url) == _answers(pocketbase)


def test_a_closed_stream_forgets_its_client(pair: Pair) -> None:
    s = Stream(pair.a.url)
    assert s.subscribe("x/*").status_code == 204
    s.close()
    r = httpx.post(pair.a.url + "/api/realtime", json={"clientId": s.client_id})
    # the stream's end is noticed when the server next writes or reads: at once here
    for _ in range(50):
        if r.status_code == 404:
            break
        r = httpx.post(pair.a.url + "/api/realtime", json={"clientId": s.client_id})
    assert r.status_code == 404
    assert r.json()["message"] == "Missing or invalid client id."
