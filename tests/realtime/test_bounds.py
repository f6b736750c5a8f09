"""Bounded: a client that stops reading never delays anyone else, and one that falls more
than its buffer behind or whose write blocks is cut off; the connections of a process are
capped; idle streams end (PocketBase's idle timeout); open streams do not hold the
gateway's in-flight bound. Runs on the second process of the pair,
which has small limits (conftest.BOUNDED)."""

from __future__ import annotations

import socket
import uuid
from urllib.parse import urlsplit

import httpx

from tests.helpers.realtime import ON_BACKENDS, Pair, Stream
from tests.helpers.wait import wait_until

pytestmark = ON_BACKENDS


def _realtime_health(pair: Pair) -> dict[str, int]:
    r = httpx.get(pair.b.url + "/api/health", headers=pair.su)
    return dict(r.json()["data"]["realtime"])


def test_a_client_that_never_reads_does_not_delay_the_others(pair: Pair) -> None:
    """6 MB of events to a subscriber that never reads while another gets every one.
    (Cutting the silent one off needs the HTTP server to say its writes block: granian
    buffers them instead; docs/realtime.md, and test_transport.py for the cut-off.)"""
    name = "p" + uuid.uuid4().hex[:8]
    pair.collection(
        {
            "name": name,
            "type": "base",
            "listRule": "",
            "createRule": "",
            "fields": [{"name": "body", "type": "text", "max": 200000}],
        }
    )
    # a client that reads its PB_CONNECT, subscribes, then never reads again
    host = urlsplit(pair.b.url)
    silent = socket.socket()
    silent.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    silent.connect((host.hostname, host.port))
    silent.sendall(f"GET /api/realtime HTTP/1.1\r\nHost: {host.netloc}\r\n\r\n".encode())
    head = b""
    while b"clientId" not in head:
        head += silent.recv(4096)
    cid = head.split(b'"clientId":"')[1].split(b'"')[0].decode()
    body = {"clientId": cid, "subscriptions": [f"{name}/*"]}
    assert httpx.post(pair.b.url + "/api/realtime", json=body).status_code == 204
    healthy = Stream(pair.b.url)
    try:
        assert healthy.subscribe(f"{name}/*").status_code == 204
        text = "x" * 100_000
        n = 60
        with httpx.Client() as http:
            for _ in range(n):
                r = http.post(f"{pair.a.url}/api/collections/{name}/records", json={"body": text})
                assert r.status_code == 200
        assert len(healthy.wait(n, timeout=30)) == n
    finally:
        healthy.close()
        silent.close()


def test_connections_are_capped_and_do_not_count_as_in_flight(pair: Pair) -> None:
    open_now = _realtime_health(pair)["connections"]
    streams = [Stream(pair.b.url) for _ in range(5 - open_now)]
    try:
        assert all(s.status == 200 for s in streams)
        # the gateway admits 3 requests in flight; five open streams hold none of them
        r = httpx.get(pair.b.url + "/api/collections/_superusers/records", headers=pair.su)
        assert r.status_code == 200
        r = httpx.get(pair.b.url + "/api/realtime")
        assert r.status_code == 503
        assert r.json()["message"].startswith("Too many realtime connections")
        assert r.headers["retry-after"]
    finally:
        for s in streams:
            s.close()
    wait_until(lambda: _realtime_health(pair)["connections"] == 0, what="streams closed")
    again = Stream(pair.b.url)
    assert again.status == 200
    again.close()


def test_an_idle_stream_ends(pair: Pair) -> None:
    s = Stream(pair.b.url)
    try:
        assert s.subscribe("nothing/*").status_code == 204
        wait_until(lambda: s.ended, timeout=10, what="the idle stream's end")
        r = httpx.post(pair.b.url + "/api/realtime", json={"clientId": s.client_id})
        assert r.status_code == 404
    finally:
        s.close()
