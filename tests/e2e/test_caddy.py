"""deploy/Caddyfile as documented, run by Debian's `caddy` in front of a real `shipyard
serve` that trusts it (`SHIPYARD_TRUSTED_PROXIES=127.0.0.1/32`). Caddy issues the
certificate from its own local authority (`local_certs`, the file's documented try-out)
on local ports; the client connects from another loopback address, 127.0.0.2, so the
address Shipyard logs shows whether it believed the proxy about the client."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.helpers.servers import Server, free_port, start_server, stop_server

pytestmark = pytest.mark.e2e
CADDYFILE = Path(__file__).parents[2] / "deploy" / "Caddyfile"
CLIENT_IP = "127.0.0.2"


@dataclass
class Proxied:
    shipyard: Server
    root: Path  # Caddy's local authority
    http_port: int
    https_port: int

    @property
    def url(self) -> str:
        return f"https://localhost:{self.https_port}"

    def client(self) -> httpx.Client:
        """A client on 127.0.0.2 that trusts Caddy's authority."""
        ctx = ssl.create_default_context(cafile=str(self.root))
        transport = httpx.HTTPTransport(local_address=CLIENT_IP, verify=ctx)
        return httpx.Client(transport=transport, verify=ctx, timeout=30)

    def logged_ip(self, request_id: str) -> str:
        """The client address of Shipyard's access-log line of that request."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for line in self.shipyard.log_path.read_text(errors="replace").splitlines():
                if request_id in line and line.startswith("{"):
                    entry = json.loads(line)
                    if entry.get("requestId") == request_id:
                        return str(entry["userIP"])
            time.sleep(0.1)
        raise AssertionError(f"no access-log line of request {request_id}")


def _caddy() -> str:
    found = shutil.which("caddy")
    if found is None:
        pytest.fail("no `caddy` binary: apt-get install caddy (./run test does)")
    return found


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    caddy = _caddy()
    data = tmp_path_factory.mktemp("caddy")
    srv = start_server(
        data / "shipyard",
        "",
        {"SHIPYARD_TRUSTED_PROXIES": "127.0.0.1/32", "SHIPYARD_LOG_LEVEL": "info"},
    )
    http_port, https_port = free_port(), free_port()
    options = [
        "local_certs",
        "skip_install_trust",  # never touches the machine's trust store
        "admin off",
        "default_bind 127.0.0.1",
        f"http_port {http_port}",  # the redirects; HTTPS on the port the site address names
    ]
    env = {
        **os.environ,
        "HOME": str(data),
        "XDG_DATA_HOME": str(data / "caddy-data"),  # its authority and certificates
        "XDG_CONFIG_HOME": str(data / "caddy-config"),
        "SHIPYARD_DOMAIN": f"localhost:{https_port}",
        "SHIPYARD_UPSTREAM": srv.url.removeprefix("http://"),
        "CADDY_OPTIONS": "\n".join(options),
    }
    log = (data / "caddy.log").open("wb")
    proc = subprocess.Popen(
        [caddy, "run", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    site = Proxied(
        srv, data / "caddy-data/caddy/pki/authorities/local/root.crt", http_port, https_port
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail("caddy exited:\n" + (data / "caddy.log").read_text())
            try:
                with site.client() as c:
                    if c.get(site.url + "/api/health").status_code == 200:
                        break
            except (httpx.HTTPError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail("caddy did not serve:\n" + (data / "caddy.log").read_text())
            time.sleep(0.2)
        yield site
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        stop_server(srv)


def test_the_client_address_comes_through_the_trusted_proxy(proxied: Proxied) -> None:
    with proxied.client() as c:
        rid = uuid.uuid4().hex
        r = c.get(
            proxied.url + "/api/health",
            # what a client writes itself is not believed: Caddy replaces it
            headers={"X-Request-Id": rid, "X-Forwarded-For": "203.0.113.66"},
        )
        assert r.status_code == 200
        assert r.headers["x-request-id"] == rid
        assert proxied.logged_ip(rid) == CLIENT_IP
        # straight to Shipyard from 127.0.0.2, which is no trusted proxy: not believed either
        rid = uuid.uuid4().hex
        r = c.get(
            proxied.shipyard.url + "/api/health",
            headers={"X-Request-Id": rid, "X-Forwarded-For": "203.0.113.66"},
        )
        assert r.status_code == 200
        assert proxied.logged_ip(rid) == CLIENT_IP


def test_hsts_over_https_and_the_redirect_from_http(proxied: Proxied) -> None:
    with proxied.client() as c:
        r = c.get(proxied.url + "/api/collections/nosuch/records")  # the read hot path
        assert r.status_code == 404
        assert r.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
        assert r.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
        # Shipyard reached over plain HTTP (not through the proxy): no HSTS
        assert (
            "strict-transport-security" not in c.get(proxied.shipyard.url + "/api/health").headers
        )
        r = c.get(f"http://localhost:{proxied.http_port}/api/health?x=1")
        assert r.status_code in (301, 308)
        assert r.headers["location"] == f"{proxied.url}/api/health?x=1"
