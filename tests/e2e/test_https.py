"""HTTPS served by Shipyard itself, started as a user starts it: `shipyard serve
--self-signed --redirect-http PORT` (a local authority's certificate, HSTS, a plain-HTTP
listener redirecting to HTTPS), `--tls-cert/--tls-key` with a minimum TLS version; and MDN
HTTP Observatory's own scanner grading the API (a Starlette route and the read hot path) and
the docs page A+."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from shipyard.tools.certs import local_cert
from tests.helpers.observatory import assert_a_plus, scan
from tests.helpers.servers import SUPERUSER, Server, free_port, start_server, stop_server

pytestmark = pytest.mark.e2e
HSTS = "max-age=31536000; includeSubDomains"


@dataclass
class Site:
    server: Server
    ca: Path
    http_port: int

    @property
    def port(self) -> int:
        return int(self.server.url.rsplit(":", 1)[1])

    def client(self) -> httpx.Client:
        return httpx.Client(verify=ssl.create_default_context(cafile=str(self.ca)), timeout=30)


def _wait_for_redirects(port: int, host: str = "127.0.0.1") -> None:
    """The redirect listener is a process of its own, started next to the server's."""
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"http://{host}:{port}/", timeout=1)
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _serve_tls(
    data: Path, port: int, http_port: int, host: str = "127.0.0.1", http_server: str = "granian"
) -> Site:
    ca = data / "tls" / "ca.pem"  # made by the server as it starts
    srv = start_server(
        data,
        "",
        {"SHIPYARD_HOST": host, "SHIPYARD_PORT": port, "SHIPYARD_HTTP_SERVER": http_server},
        args=("--self-signed", "--redirect-http", str(http_port)),
        ca=ca,
    )
    try:
        _wait_for_redirects(http_port, host)
        site = Site(srv, ca, http_port)
        with site.client() as c:
            su = c.post(
                srv.url + "/api/collections/_superusers/auth-with-password",
                json={"identity": SUPERUSER[0], "password": SUPERUSER[1]},
            ).json()["token"]
            body = {"name": "posts", "listRule": "", "viewRule": "", "fields": []}
            r = c.post(srv.url + "/api/collections", json=body, headers={"Authorization": su})
            assert r.status_code == 200, r.text
    except BaseException:
        stop_server(srv)
        raise
    return site


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    s = _serve_tls(tmp_path_factory.mktemp("https"), free_port(), free_port())
    try:
        yield s
    finally:
        stop_server(s.server)


def test_https_with_hsts_and_a_redirect_from_http(site: Site) -> None:
    with site.client() as c:
        for path in ("/api/health", "/api/collections/posts/records", "/api/docs"):
            r = c.get(site.server.url + path)
            assert r.status_code == 200, path
            assert r.headers["strict-transport-security"] == HSTS, path
        r = c.get(f"http://127.0.0.1:{site.http_port}/api/collections/posts/records?page=1")
        assert r.status_code == 308
        target = f"https://127.0.0.1:{site.port}/api/collections/posts/records?page=1"
        assert r.headers["location"] == target
        assert "strict-transport-security" not in r.headers  # meaningless over plain HTTP
        r = c.get(f"http://localhost:{site.http_port}/api/health", follow_redirects=True)
        assert r.status_code == 200
        assert str(r.url) == f"https://localhost:{site.port}/api/health"
    with pytest.raises(httpx.ConnectError):  # nobody else's authority vouches for it
        httpx.get(site.server.url + "/api/health")


@pytest.mark.parametrize("path", ["/api/health", "/api/collections/posts/records", "/api/docs"])
def test_observatory_grades_a_plus(site: Site, path: str) -> None:
    result = scan(f"localhost:{site.port}{path}", site.ca)
    assert_a_plus(result)
    assert result["scan"]["statusCode"] == 200


def _privileged_loopback() -> str | None:
    """A loopback address of its own (127.x.y.z: no clash with other tests) on which ports
    80 and 443 can be bound, or None where this process may not bind them."""
    host = str(ipaddress.IPv4Address(0x7F000000 + random.randrange(0x100, 0xFFFFFE)))
    for port in (80, 443):
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                return None
    return host


def test_observatory_follows_http_to_https_on_the_standard_ports(
    tmp_path: Path,
) -> None:
    """The scanner's redirection check runs only on ports 80 and 443 (its CLI takes a host);
    binding them needs root or CAP_NET_BIND_SERVICE."""
    host = _privileged_loopback()
    if host is None:
        pytest.skip("binding ports 80 and 443 needs root or CAP_NET_BIND_SERVICE")
    s = _serve_tls(tmp_path / "std", 443, 80, host)
    try:
        result = scan(f"{host}/api/health", s.ca)
        assert_a_plus(result)
        assert result["tests"]["redirection"]["result"] == "redirection-to-https"
        assert result["tests"]["redirection"]["route"] == [
            f"http://{host}/api/health",
            f"https://{host}/api/health",
        ]
    finally:
        stop_server(s.server)


def test_uvicorn_serves_https_and_redirects_with_raw_quotes(tmp_path: Path) -> None:
    """SHIPYARD_HTTP_SERVER=uvicorn: `--self-signed --redirect-http` as on granian, and both
    listeners take a raw `"` in the query (docs/limits.md#characters-in-the-query)."""
    site = _serve_tls(tmp_path, free_port(), free_port(), http_server="uvicorn")
    query = b'/api/collections/posts/records?filter=id!="x"'
    try:
        with site.client() as c:
            r = c.get(site.server.url + "/api/health")
            assert r.status_code == 200
            assert r.headers["strict-transport-security"] == HSTS
        with socket.create_connection(("127.0.0.1", site.http_port), timeout=30) as sock:
            sock.sendall(
                b"GET " + query + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
            )
            got = b""
            while chunk := sock.recv(65536):
                got += chunk
        assert got.startswith(b"HTTP/1.1 308"), got
        assert f"location: https://127.0.0.1:{site.port}".encode() + query in got.lower(), got
        host = site.server.url.removeprefix("https://")
        ctx = ssl.create_default_context(cafile=str(site.ca))
        with (
            socket.create_connection(("127.0.0.1", site.port), timeout=30) as raw,
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
        ):
            sock.sendall(
                b"GET " + query + b" HTTP/1.1\r\nHost: " + host.encode()
                + b"\r\nConnection: close\r\n\r\n"
            )  # fmt: skip
            got = b""
            while chunk := sock.recv(65536):
                got += chunk
        assert got.startswith(b"HTTP/1.1 200"), got
        assert b'"items":[]' in got
    finally:
        stop_server(site.server)


@pytest.mark.parametrize("http_server", ["granian", "uvicorn"])
def test_certificate_files_and_a_minimum_tls_version(tmp_path: Path, http_server: str) -> None:
    made = local_cert(tmp_path / "certs", ["127.0.0.1"])  # any PEM pair: a CA's, certbot's…
    srv = start_server(
        tmp_path / "srv",
        "",
        {"SHIPYARD_TLS_MIN_VERSION": "1.3", "SHIPYARD_HTTP_SERVER": http_server},
        args=("--tls-cert", str(made.cert), "--tls-key", str(made.key)),
        ca=made.ca,
    )
    try:
        ctx = ssl.create_default_context(cafile=str(made.ca))
        r = httpx.get(srv.url + "/api/health", verify=ctx)
        assert r.status_code == 200
        assert r.headers["strict-transport-security"] == HSTS
        old = ssl.create_default_context(cafile=str(made.ca))
        old.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises(httpx.ConnectError), contextlib.closing(httpx.Client(verify=old)) as c:
            c.get(srv.url + "/api/health")
    finally:
        stop_server(srv)


def test_missing_certificate_files_stop_serve_with_the_setting_named(tmp_path: Path) -> None:
    env = {**os.environ, "SHIPYARD_DATA_DIR": str(tmp_path)}
    missing = str(tmp_path / "nope.pem")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "shipyard.cli",
            "serve",
            "--tls-cert",
            missing,
            "--tls-key",
            missing,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 2
    assert f"shipyard: bad setting: SHIPYARD_TLS_CERT: {missing} is not a file" in r.stderr
