"""Realtime's test helpers: an SSE client for `/api/realtime` on a plain socket (so that
closing it really closes the connection), which reads the stream in a thread and keeps
every event, so a test can wait for what it expects without sleeping; and a pair of
`shipyard serve` processes on one database (a subscriber on one, writes on the other)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.helpers.servers import (
    SUPERUSER,
    Server,
    fresh_pg_database,
    start_server,
    stop_server,
)
from tests.helpers.wait import poll_until, wait_until


class Stream:
    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.url = url
        self.events: list[tuple[str, str]] = []
        self.status = 0
        self.headers: dict[str, str] = {}
        self.ended = False
        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port or 80), timeout=30)
        self.sock.settimeout(None)  # a stream may stay quiet for long; close() ends the read
        head = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.sock.sendall(
            f"GET /api/realtime HTTP/1.1\r\nHost: {parts.netloc}\r\n{head}\r\n".encode()
        )
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        wait_until(lambda: self.events or self.ended, what="PB_CONNECT")
        self.client_id = json.loads(self.events[0][1])["clientId"] if self.events else ""

    def _read(self) -> None:
        try:
            buf = self._head()
            chunked = self.headers.get("transfer-encoding") == "chunked"
            text = b""
            while True:
                if chunked:
                    piece, buf = self._chunk(buf)
                    if piece is None:
                        return
                    text += piece
                else:
                    text += buf + self._recv()
                    buf = b""
                while b"\n\n" in text:
                    block, text = text.split(b"\n\n", 1)
                    self._event(block.decode())
        except (OSError, ValueError, EOFError):
            pass
        finally:
            self.ended = True

    def _head(self) -> bytes:
        """Read the status line and headers; what came after them."""
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += self._recv()
        head, buf = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {
            k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])
        }
        return buf

    def _chunk(self, buf: bytes) -> tuple[bytes | None, bytes]:
        """One chunk of a chunked body (None for the last one) and what follows it."""
        while b"\r\n" not in buf:
            buf += self._recv()
        size_line, buf = buf.split(b"\r\n", 1)
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return None, buf
        while len(buf) < size + 2:
            buf += self._recv()
        return buf[:size], buf[size + 2 :]

    def _event(self, block: str) -> None:
        name = data = ""
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:]
            elif line.startswith("data:"):
                data = line[5:]
        self.events.append((name, data))

    def _recv(self) -> bytes:
        got = self.sock.recv(65536)
        if not got:
            raise EOFError
        return got

    def subscribe(self, *topics: str, token: str = "", via: str = "") -> httpx.Response:
        headers = {"Authorization": token} if token else {}
        return httpx.post(
            (via or self.url) + "/api/realtime",
            json={"clientId": self.client_id, "subscriptions": list(topics)},
            headers=headers,
        )

    def records(self, topic: str | None = None) -> list[dict[str, Any]]:
        """The `{action, record}` of every event so far (of one topic, when given)."""
        return [json.loads(d) for n, d in self.events if n != "PB_CONNECT" and (topic in (None, n))]

    def wait(self, n: int, topic: str | None = None, timeout: float = 10.0) -> list[Any]:
        got = wait_until(
            lambda: len(self.records(topic)) >= n and self.records(topic),
            timeout,
            what=f"{n} event(s) on {topic or 'any topic'}",
        )
        return list(got)

    def quiet(self, n: int, topic: str | None = None, settle: float = 0.5) -> list[Any]:
        """The events after a short wait in which no event beyond the first `n` arrives."""
        poll_until(lambda: len(self.records(topic)) > n, settle)
        return self.records(topic)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._thread.join(timeout=5)


# quick to see a closed stream in tests; everything else at its default
SETTINGS = {"SHIPYARD_REALTIME_POLL_INTERVAL": "0.02", "SHIPYARD_ACCESS_LOG": "false"}


BACKENDS = ["sqlite", "postgres"]
ON_BACKENDS = pytest.mark.parametrize("pair", BACKENDS, indirect=True)
ON_SQLITE = pytest.mark.parametrize("pair", BACKENDS[:1], indirect=True)

# the second process is the one the bounds are tested on (test_bounds.py); subscribers of the
# other tests connect to the first
BOUNDED = {
    "SHIPYARD_REALTIME_MAX_CONNECTIONS": "5",
    "SHIPYARD_REALTIME_BUFFER": "16",
    "SHIPYARD_REALTIME_SEND_TIMEOUT": "1",
    "SHIPYARD_REALTIME_IDLE_TIMEOUT": "1.5",
    "SHIPYARD_MAX_IN_FLIGHT": "3",
}


class At:
    """Where one server of a pair answers."""

    def __init__(self, url: str) -> None:
        self.url = url


class Pair:
    def __init__(self, a: str, b: str) -> None:
        self.a, self.b = At(a), At(b)
        r = httpx.post(
            a + "/api/collections/_superusers/auth-with-password",
            json={"identity": SUPERUSER[0], "password": SUPERUSER[1]},
        )
        r.raise_for_status()
        self.token = str(r.json()["token"])
        self.cache: dict[str, Any] = {}  # what a test module made once for this pair

    @property
    def su(self) -> dict[str, str]:
        return {"Authorization": self.token}

    def collection(self, body: dict[str, Any]) -> dict[str, Any]:
        r = httpx.post(self.a.url + "/api/collections", json=body, headers=self.su)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def create(self, collection: str, body: dict[str, Any], token: str = "") -> dict[str, Any]:
        """A record, written through the second process (subscribers are on the first)."""
        headers = {"Authorization": token or self.token}
        r = httpx.post(
            f"{self.b.url}/api/collections/{collection}/records", json=body, headers=headers
        )
        assert r.status_code == 200, r.text
        return dict(r.json())

    def update(self, collection: str, rid: str, body: dict[str, Any]) -> dict[str, Any]:
        r = httpx.patch(
            f"{self.b.url}/api/collections/{collection}/records/{rid}", json=body, headers=self.su
        )
        assert r.status_code == 200, r.text
        return dict(r.json())

    def delete(self, collection: str, rid: str) -> None:
        r = httpx.delete(
            f"{self.b.url}/api/collections/{collection}/records/{rid}", headers=self.su
        )
        assert r.status_code == 204, r.text

    def impersonate(self, collection: str, rid: str) -> str:
        r = httpx.post(
            f"{self.a.url}/api/collections/{collection}/impersonate/{rid}",
            json={"duration": 3600},
            headers=self.su,
        )
        assert r.status_code == 200, r.text
        return str(r.json()["token"])


# the servers this process started: kept referenced (a collected Popen of a running
# process warns) and reaped once stopped, by whichever worker stopped them
_STARTED: list[Server] = []


def _reap() -> None:
    for srv in list(_STARTED):
        if srv.proc.poll() is not None:
            _STARTED.remove(srv)


def _start(kind: str, request: pytest.FixtureRequest) -> tuple[Server, Server]:
    root = Path(tempfile.mkdtemp(prefix=f"shipyard-rt-{kind}-"))
    url = ""
    if kind == "postgres":
        url = fresh_pg_database(request.getfixturevalue("pg_admin_url"))
    else:  # both processes on one SQLite file (and its auxiliary file beside it)
        url = f"sqlite:///{root / 'shared' / 'data.db'}"
    a = start_server(root / "a", url, SETTINGS)
    try:
        b = start_server(root / "b", url, {**SETTINGS, **BOUNDED})
    except BaseException:
        stop_server(a)
        raise
    _STARTED.extend((a, b))
    return a, b


def _stop(pids: list[int]) -> None:
    """Stop servers by process group (the worker that started them may be another)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    for pid in pids:
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    _reap()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (ended, not yet reaped by the worker that started it) is not alive
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    return True


def start_pair(kind: str, request: pytest.FixtureRequest) -> Iterator[Pair]:
    """One pair per backend for the whole run: under xdist the workers share it (the first
    to need it starts it, the last to finish stops it), so the run starts each pair once
    however the tests are spread."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if not run:
        a, b = _start(kind, request)
        try:
            yield Pair(a.url, b.url)
        finally:
            _stop([b.proc.pid, a.proc.pid])
        return
    home = Path(tempfile.gettempdir()) / f"shipyard-rt-{run}-{kind}"
    home.mkdir(exist_ok=True)
    state_path = home / "state.json"
    with (home / "lock").open("a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = json.loads(state_path.read_text()) if state_path.exists() else None
        if state is None:
            a, b = _start(kind, request)
            state = {"a": a.url, "b": b.url, "pids": [b.proc.pid, a.proc.pid], "users": 0}
        state["users"] += 1
        state_path.write_text(json.dumps(state))
    try:
        yield Pair(state["a"], state["b"])
    finally:
        with (home / "lock").open("a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = json.loads(state_path.read_text())
            state["users"] -= 1
            if state["users"] == 0:
                _stop(state["pids"])
                state_path.unlink()
            else:
                state_path.write_text(json.dumps(state))
