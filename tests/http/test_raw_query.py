"""Raw `"`, `<` and `>` in a query, as curl and hand-written clients send them (issue 13):
PocketBase answers them; with SHIPYARD_HTTP_SERVER=uvicorn Shipyard answers the same,
while granian refuses them with an empty 400 before Shipyard sees the request; raw UTF-8
reaches Shipyard on both (docs/limits.md#characters-in-the-query). Real servers, raw bytes
on a socket."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import httpx
import pytest

from tests.helpers.servers import SUPERUSER, pocketbase_server, start_server, stop_server

COLLECTION = {
    "name": "items",
    "type": "base",
    "listRule": "",
    "viewRule": "",
    "fields": [{"name": "name", "type": "text"}, {"name": "n", "type": "number"}],
}
ITEMS = [("a", 1), ("b", 2), ("c", 3), ("d", 4), ("b", 5)]
# the request targets as curl sends them when typed inside double quotes: nothing encoded
# but `&` and space inside a filter (which no server could tell from the query's own)
RAW = [
    b'/api/collections/items/records?filter=name="b"&sort=n&fields=name,n',
    b"/api/collections/items/records?filter=n<3&sort=n&fields=name,n",
    b'/api/collections/items/records?filter=n>2%26%26name!="d"&sort=n&fields=name,n',
    b"/api/collections/items/records?filter=(n>=2%20%26%26%20n<=4)&sort=-n&fields=name,n",
    b'/api/collections/items/records?filter=name~"<b>"&fields=name,n',
]


def _fill(url: str) -> str:
    """The collection and its records on a PocketBase-compatible server; its URL."""
    token = httpx.post(
        url + "/api/collections/_superusers/auth-with-password",
        json={"identity": SUPERUSER[0], "password": SUPERUSER[1]},
    ).json()["token"]
    auth = {"Authorization": token}
    r = httpx.post(url + "/api/collections", json=COLLECTION, headers=auth)
    assert r.status_code == 200, r.text
    for name, n in ITEMS:
        r = httpx.post(url + "/api/collections/items/records", json={"name": name, "n": n},
                       headers=auth)  # fmt: skip
        assert r.status_code == 200, r.text
    return url


def get_raw(url: str, target: bytes) -> tuple[int, bytes]:
    """GET `target` exactly as given (no client encoding); the status and the body."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        got = b""
        while chunk := sock.recv(65536):
            got += chunk
    head, _, body = got.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@pytest.fixture(scope="module")
def pocketbase(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with pocketbase_server(tmp_path_factory.mktemp("pb")) as url:
        yield _fill(url)


@pytest.fixture(scope="module", params=["uvicorn", "granian"])
def shipyard(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[tuple[str, str]]:  # fmt: skip
    """(server name, URL) of a `shipyard serve` on that HTTP server."""
    srv = start_server(
        tmp_path_factory.mktemp(request.param) / "srv", "",
        {"SHIPYARD_HTTP_SERVER": request.param},
    )  # fmt: skip
    try:
        yield request.param, _fill(srv.url)
    finally:
        stop_server(srv)


@pytest.mark.parametrize("target", RAW, ids=[t.split(b"filter=")[1].decode() for t in RAW])
def test_raw_quotes_and_angle_brackets_in_the_query(
    target: bytes, pocketbase: str, shipyard: tuple[str, str]
) -> None:
    status, body = get_raw(pocketbase, target)
    assert status == 200, body
    expected = json.loads(body)
    server, url = shipyard
    status, body = get_raw(url, target)
    if server == "granian":  # refused by the server itself, before Shipyard (not PocketBase's)
        assert (status, body) == (400, b"")
        return
    assert status == 200, body
    got = json.loads(body)
    assert [(i["name"], i["n"]) for i in got["items"]] == [
        (i["name"], i["n"]) for i in expected["items"]
    ]
    assert got["totalItems"] == expected["totalItems"]


def test_the_filters_select_what_they_say(pocketbase: str) -> None:
    """The expected answers above are not vacuous: each filter picks a proper subset."""
    names = [
        [(i["name"], i["n"]) for i in json.loads(get_raw(pocketbase, t)[1])["items"]] for t in RAW
    ]
    assert names == [
        [("b", 2), ("b", 5)],
        [("a", 1), ("b", 2)],
        [("c", 3), ("b", 5)],
        [("d", 4), ("c", 3), ("b", 2)],
        [],
    ]


@pytest.mark.parametrize(
    "encoded",
    [
        b"/api/collections/items/records?filter=name='b'&sort=n&fields=name,n",
        b"/api/collections/items/records?filter=name%3D%22b%22&sort=n&fields=name,n",
    ],
)
def test_single_quotes_and_percent_encoding_work_on_every_server(
    encoded: bytes, shipyard: tuple[str, str]
) -> None:
    status, body = get_raw(shipyard[1], encoded)
    assert status == 200, body
    assert [i["n"] for i in json.loads(body)["items"]] == [2, 5]


def test_raw_utf8_in_the_query_is_taken_on_every_server(
    pocketbase: str, shipyard: tuple[str, str]
) -> None:
    """Raw (unencoded) UTF-8 in a query, as curl sends `é` typed in a filter: PocketBase and
    granian take it; uvicorn's parser (llhttp) refuses any byte over 0x7F, so Shipyard's
    protocol percent-encodes those of the request line before it (http/server_uvicorn.py)."""
    target = "/api/collections/items/records?filter=name!='é'&sort=n&fields=name,n".encode()
    status, body = get_raw(pocketbase, target)
    assert status == 200, body
    assert json.loads(body)["totalItems"] == len(ITEMS)
    status, body = get_raw(shipyard[1], target)
    assert status == 200, body
    assert json.loads(body)["totalItems"] == len(ITEMS)


def _exchange(url: str, data: bytes, answers: int) -> list[tuple[int, bytes]]:
    """Send `data` on one connection, read `answers` responses (content-length framed)."""
    host, port = url.removeprefix("http://").split(":")
    out: list[tuple[int, bytes]] = []
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(data)
        buf = b""
        while len(out) < answers:
            while b"\r\n\r\n" not in buf:
                buf += sock.recv(65536)
            head, _, buf = buf.partition(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            while len(buf) < length:
                buf += sock.recv(65536)
            out.append((int(head.split(b" ", 2)[1]), buf[:length]))
            buf = buf[length:]
    return out


def test_utf8_in_bodies_and_keep_alive_requests_arrives_unchanged(
    shipyard: tuple[str, str],
) -> None:
    """The line encoding touches request lines only: a UTF-8 JSON body sent in the same
    chunk as the request before it (pipelined) is stored byte for byte, and the next
    request on the kept-alive connection, with raw UTF-8 in its query, finds it."""
    server, url = shipyard
    token = httpx.post(
        url + "/api/collections/_superusers/auth-with-password",
        json={"identity": SUPERUSER[0], "password": SUPERUSER[1]},
    ).json()["token"]
    name = f"notes_{server}"
    r = httpx.post(url + "/api/collections", headers={"Authorization": token},
                   json={**COLLECTION, "name": name})  # fmt: skip
    assert r.status_code == 200, r.text
    body = json.dumps({"name": "é ü 日本 \u00ff", "n": 7}, ensure_ascii=False).encode()
    post = (
        f"POST /api/collections/{name}/records HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: {token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    ping = b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n"
    find = (
        f"GET /api/collections/{name}/records?filter=name~'日本'&fields=name,n HTTP/1.1\r\n"
        "Host: x\r\nConnection: close\r\n\r\n"
    ).encode()
    (s1, b1), (s2, _) = _exchange(url, ping + post, 2)  # the POST begins inside the chunk
    assert (s1, s2) == (200, 200), b1
    [(s3, b3)] = _exchange(url, find, 1)
    assert s3 == 200, b3
    assert [(i["name"], i["n"]) for i in json.loads(b3)["items"]] == [("é ü 日本 \u00ff", 7)]
