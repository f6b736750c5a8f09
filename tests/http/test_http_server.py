"""What Shipyard relies on from its HTTP server, on uvicorn (SHIPYARD_HTTP_SERVER) as on
granian: the setting, a bound on the request head, open realtime streams ended on a stop
(on both servers),
file downloads (granian sends small files itself; uvicorn has no `pathsend`, so Shipyard
reads them in chunks), several worker processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from shipyard.settings import SettingsError, load_settings
from tests.helpers.files import make_collection, upload
from tests.helpers.servers import start_server, stop_server


def test_the_http_server_setting() -> None:
    assert load_settings(env={}).http_server == "granian"
    assert load_settings(env={"SHIPYARD_HTTP_SERVER": "uvicorn"}).http_server == "uvicorn"
    with pytest.raises(SettingsError) as exc:
        load_settings(env={"SHIPYARD_HTTP_SERVER": "hypercorn"})
    assert str(exc.value) == "SHIPYARD_HTTP_SERVER: must be one of granian, uvicorn"


def test_the_head_bound_under_uvicorn(tmp_path: Path) -> None:
    """uvicorn has no bound of its own on a request head: Shipyard's protocol adds one, an
    empty 431 past the URL and header limits plus slack, as granian refuses a huge head."""
    srv = start_server(tmp_path / "srv", "", {"SHIPYARD_HTTP_SERVER": "uvicorn"})
    try:
        host, port = srv.url.removeprefix("http://").split(":")
        got = b""
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n")
            try:
                for i in range(2000):  # 2 MB of headers, far past 16 KiB + 32 KiB + slack
                    sock.sendall(b"X-Pad-%d: " % i + b"a" * 1000 + b"\r\n")
            except OSError:
                pass  # closed by the server
            try:
                while chunk := sock.recv(65536):
                    got += chunk
            except OSError:
                pass
        assert got.startswith(b"HTTP/1.1 431 "), got
        # within the bound, Shipyard's own exact limit answers in the error shape
        r = httpx.get(srv.url + "/api/health", headers={"X-Big": "a" * 40_000})
        assert r.status_code == 431
        assert r.json()["status"] == 431
    finally:
        stop_server(srv)


@pytest.mark.parametrize(
    ("http_server", "group"),
    [("granian", False), ("granian", True), ("uvicorn", False), ("uvicorn", True)],
)
def test_a_stop_ends_open_realtime_streams(tmp_path: Path, http_server: str, group: bool) -> None:
    """A subscriber's stream never ends by itself (idle timeout 300 s): SIGTERM must end
    it, and the server exit, without waiting for it; to `shipyard serve` alone, or to its
    whole process group as systemd stops a service. uvicorn's signal handlers are not the
    loop's, so its connections' shutdown ends the streams (http/server_uvicorn.py); granian's
    workers have their signal set-up wrapped (realtime/shutdown.py: under uvloop the loop's
    handlers cannot be read)."""
    srv = start_server(tmp_path / "srv", "", {"SHIPYARD_HTTP_SERVER": http_server})
    try:
        with (
            httpx.Client(timeout=30) as c,
            c.stream("GET", srv.url + "/api/realtime") as stream,
        ):
            lines = stream.iter_lines()
            first = next(lines)
            assert first.startswith("id:"), first
            if group:  # the server runs in its own session (tests/helpers/servers.py)
                os.killpg(srv.proc.pid, signal.SIGTERM)
            else:
                srv.proc.terminate()  # SIGTERM to `shipyard serve`, as stop_server sends
            rest = list(lines)  # ends when the server closes the stream
            # stopped (by the signal it re-raises after its graceful shutdown, or with 0)
            assert srv.proc.wait(timeout=30) in (0, -signal.SIGTERM)
        assert "event:PB_CONNECT" in rest
    finally:
        stop_server(srv)


@pytest.mark.parametrize("http_server", ["granian", "uvicorn"])
def test_downloads_with_two_workers(tmp_path: Path, http_server: str) -> None:
    """Files small (granian: sent by the server) and large (read in chunks), and ranges, from
    two worker processes."""
    srv = start_server(
        tmp_path / "srv", "", {"SHIPYARD_HTTP_SERVER": http_server, "SHIPYARD_WORKERS": "2"}
    )
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            su = {"Authorization": srv.superuser_token()}
            make_collection(c, su)  # type: ignore[arg-type]
            small, large = os.urandom(50_000), os.urandom(3_000_000)
            for data in (small, large):
                rec = upload(c, data, "blob.bin").json()  # type: ignore[arg-type]
                url = f"/api/files/posts/{rec['id']}/{rec['doc']}"
                r = c.get(url)
                assert r.status_code == 200
                assert r.content == data
                r = c.get(url, headers={"Range": "bytes=100-199"})
                assert r.status_code == 206
                assert r.content == data[100:200]
        pids = subprocess.run(
            ["pgrep", "-g", str(srv.proc.pid)], capture_output=True, text=True, check=True
        ).stdout.split()
        assert len(pids) >= 3  # `shipyard serve` and its two workers
    finally:
        stop_server(srv)
