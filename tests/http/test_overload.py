"""Overload and slow clients against a real `shipyard serve`: past the in-flight bound a
request is answered 503 at once (while the admitted ones are still running), health and
metrics stay reachable, and clients that dribble their headers or stall their body are cut
off by the header and body timeouts."""

from __future__ import annotations

import concurrent.futures
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from shipyard.app import create_app
from shipyard.settings import load_settings
from tests.helpers.servers import Server, start_server, stop_server
from tests.helpers.wait import wait_until

HOLD = {"SHIPYARD_EXTENSIONS": "tests.helpers.hold_ext:extension"}


@pytest.fixture
def bounded(database_url: str, tmp_path: Path) -> Iterator[Server]:
    """A server that works on at most two requests at once."""
    srv = start_server(tmp_path / "srv", database_url, {**HOLD, "SHIPYARD_MAX_IN_FLIGHT": "2"})
    try:
        yield srv
    finally:
        stop_server(srv)


def test_past_the_bound_a_fast_503_while_admitted_requests_succeed(bounded: Server) -> None:
    data = Path(bounded.env["SHIPYARD_DATA_DIR"])
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        held = [
            pool.submit(httpx.get, f"{bounded.url}/api/test-hold/{name}", timeout=60)
            for name in ("a", "b")
        ]
        wait_until(
            lambda: (data / "held-a").exists() and (data / "held-b").exists(),
            timeout=30,
            what="two requests in flight",
        )
        # the bound is reached: anything else is refused at once, while both still run
        r = httpx.get(
            f"{bounded.url}/api/collections/posts/records",
            headers={"Origin": "http://localhost:5173"},
            timeout=30,
        )
        assert r.status_code == 503
        assert r.json() == {
            "status": 503,
            "message": "The server is too busy to process the request; try again shortly.",
            "data": {},
        }
        assert r.headers["retry-after"] == "1"
        assert r.headers["access-control-allow-origin"] == "*"  # browsers can read it
        assert r.headers["x-request-id"]
        third = httpx.get(f"{bounded.url}/api/test-hold/c", timeout=30)
        assert third.status_code == 503
        assert not (data / "held-c").exists()  # refused before it ran
        assert not any(f.done() for f in held)
        # an overloaded process still says how it is
        assert httpx.get(f"{bounded.url}/api/health", timeout=30).status_code == 200
        assert httpx.get(f"{bounded.url}/metrics", timeout=30).status_code == 200
        (data / "release").touch()
        assert [f.result(timeout=60).status_code for f in held] == [200, 200]
    # the slots are free again
    r = httpx.get(f"{bounded.url}/api/collections/posts/records", timeout=30)
    assert r.status_code == 404, r.text  # admitted: no such collection


def test_requests_that_waited_behind_one_stall_are_served(bounded: Server) -> None:
    """One request that runs without yielding (a slow SQLite statement) holds the others in
    the event loop's queue; once it ends they drain in microseconds, so they are served,
    late, rather than refused: one stall is not an overload."""
    data = Path(bounded.env["SHIPYARD_DATA_DIR"])
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        blocker = pool.submit(httpx.get, f"{bounded.url}/api/test-block", timeout=60)
        wait_until(lambda: (data / "blocking").exists(), timeout=30, what="the loop blocked")
        with _connect(bounded) as sock:  # sent while the loop is held
            sock.sendall(b"GET /api/collections/posts/records HTTP/1.1\r\nHost: x\r\n\r\n")
            (data / "unblock").touch()
            assert blocker.result(timeout=60).status_code == 200
            answer = _read_response(sock)
    assert answer.startswith(b"HTTP/1.1 404"), answer  # admitted (no such collection)


def test_a_loop_that_stays_behind_refuses_with_503(bounded: Server) -> None:
    """Work that keeps the loop busy (many requests of CPU that cannot interleave) leaves the
    heartbeat late beat after beat: requests that wait in that queue get a fast 503 with
    Retry-After; once the load is gone they are admitted again."""
    url = f"{bounded.url}/api/test-busy"
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: httpx.get(url, timeout=60), range(160)))
    statuses = [r.status_code for r in answers]
    assert set(statuses) <= {200, 503}, statuses
    refused = [r for r in answers if r.status_code == 503]
    assert refused, "16 clients each keeping 30 ms of CPU in the queue never got a 503"
    assert refused[0].headers["retry-after"] == "1"
    assert refused[0].json()["status"] == 503
    assert 200 in statuses  # admitted requests were served meanwhile
    # the loop has caught up: admitted again
    r = httpx.get(f"{bounded.url}/api/collections/posts/records", timeout=30)
    assert r.status_code == 404


def _read_response(sock: socket.socket) -> bytes:
    """One response with a JSON body, read until the body's closing brace."""
    got = b""
    while b"\r\n\r\n" not in got or not got.rstrip().endswith(b"}"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


@pytest.fixture(params=["granian", "uvicorn"])
def impatient(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    """A server with one-second header and body timeouts (not backend-specific: SQLite), on
    each HTTP server (SHIPYARD_HTTP_SERVER): uvicorn's header clock is Shipyard's own."""
    srv = start_server(
        tmp_path / "srv",
        "",
        {
            "SHIPYARD_HEADER_TIMEOUT": "1",
            "SHIPYARD_BODY_TIMEOUT": "1",
            "SHIPYARD_HTTP_SERVER": request.param,
        },
    )
    try:
        yield srv
    finally:
        stop_server(srv)


def _connect(server: Server) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def _closed(sock: socket.socket) -> bool:
    """True once the server has closed the connection (reads end, or writes fail)."""
    try:
        return sock.recv(65536) == b""
    except OSError:
        return True


def test_headers_sent_too_slowly_get_the_connection_closed(impatient: Server) -> None:
    """Slowloris: one byte of headers at a time keeps a connection open for ever unless the
    whole head must arrive within the header timeout."""
    sock = _connect(impatient)
    head = b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100_000
    sent = 0
    sock.settimeout(0.2)
    with sock:
        while sent < len(head):
            try:
                sock.sendall(head[sent : sent + 1])
            except OSError:
                break  # closed by the server
            sent += 1
            try:
                if sock.recv(65536) == b"":
                    break
            except TimeoutError:
                continue  # nothing yet: keep dribbling
            except OSError:
                break
        assert sent < len(head), "the server waited for the whole dribbled head"


def test_an_idle_keep_alive_connection_is_closed(impatient: Server) -> None:
    sock = _connect(impatient)
    with sock:
        sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
        # the whole response (uvicorn sends its head and body apart: a first read may get
        # only the head, and the body was then taken for "not closed")
        assert _read_response(sock).startswith(b"HTTP/1.1 200")
        sock.settimeout(30)
        assert _closed(sock)  # the server ends it, long before our 30 s


def test_a_stalled_body_gets_408(impatient: Server) -> None:
    sock = _connect(impatient)
    with sock:
        sock.sendall(
            b"POST /api/collections/_superusers/auth-with-password HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
            b'{"identity": '
        )
        got = _read_response(sock)
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), got
    assert body.startswith(b'{"status":408,"message":"The request body did not arrive in time')


def test_a_request_after_a_slow_one_is_not_refused(tmp_path: Path) -> None:
    """The heartbeat judges requests that waited, not the next one: a client that sends its
    next request after a slow answer is served."""
    settings = load_settings(
        env={}, data_dir=str(tmp_path / "data"), extensions=HOLD["SHIPYARD_EXTENSIONS"]
    )
    with TestClient(create_app(settings)) as c:
        (tmp_path / "data" / "unblock").touch()
        assert c.get("/api/test-block").status_code == 200  # held the loop for a second
        r = c.get("/api/collections/posts/records")
        assert r.status_code == 404, r.text  # admitted
