"""The `shipyard` command on real processes: bad settings, migrate with a declarative file,
superuser management, and serve with two worker processes sharing one database."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.helpers.servers import start_server, stop_server

CLI = [sys.executable, "-m", "shipyard.cli"]


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=120
    )


def test_bad_setting_stops_startup(tmp_path: Path) -> None:
    r = run(["serve"], {"SHIPYARD_PORT": "nope", "SHIPYARD_DATA_DIR": str(tmp_path)})
    assert r.returncode == 2
    assert "SHIPYARD_PORT" in r.stderr


def test_migrate_and_superusers(tmp_path: Path, database_url: str) -> None:
    env = {"SHIPYARD_DATA_DIR": str(tmp_path / "d"), "SHIPYARD_DATABASE_URL": database_url}
    schema = tmp_path / "collections.json"
    schema.write_bytes(
        orjson.dumps(
            {
                "collections": [
                    {
                        "name": "tasks",
                        "listRule": "",
                        "fields": [
                            {"name": "title", "type": "text", "required": True},
                            {"name": "done", "type": "bool"},
                        ],
                    }
                ]
            }
        )
    )
    r = run(["migrate", "--schema-file", str(schema)], env)
    assert r.returncode == 0, r.stderr
    assert "1 collection" in r.stdout
    # dropping a field from the file refuses without --confirm-data-loss
    schema.write_bytes(
        orjson.dumps([{"name": "tasks", "fields": [{"name": "title", "type": "text"}]}])
    )
    r = run(["migrate", "--schema-file", str(schema)], env)
    assert r.returncode == 1
    assert "confirm" in r.stderr.lower()
    assert (
        run(["migrate", "--schema-file", str(schema), "--confirm-data-loss"], env).returncode == 0
    )
    assert run(["superuser", "create", "a@example.com", "password123"], env).returncode == 0
    assert run(["superuser", "create", "a@example.com", "password123"], env).returncode == 1
    assert run(["superuser", "update", "a@example.com", "password456"], env).returncode == 0
    assert run(["superuser", "create", "b@example.com", "password123"], env).returncode == 0
    assert run(["superuser", "delete", "b@example.com"], env).returncode == 0
    assert run(["superuser", "delete", "nobody@example.com"], env).returncode == 1


# a before_commit handler runs in the server process that handles the write: it notes which
# process that was, for each written `n`
SERVED_BY = """
import os

from shipyard.functions import Functions

functions = Functions()


@functions.on_record("shared", "create", "update", when="before_commit")
async def served_by(ctx, event):
    with open({log!r}, "a") as f:
        f.write(f"{{event['record']['n']}} {{os.getpid()}}\\n")
"""


class Conn:
    """One kept-alive connection: every request on it is served by the same process. Notes
    the local port of every answer (one port: it never reconnected) and the `n` it wrote."""

    def __init__(self, url: str, h: dict[str, str]) -> None:
        self.http = httpx.Client(
            base_url=url, headers=h, timeout=30, limits=httpx.Limits(max_connections=1)
        )
        self.ports: set[int] = set()
        self.wrote: list[int] = []

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        r = self.http.request(method, path, **kw)
        self.ports.add(r.extensions["network_stream"].get_extra_info("client_addr")[1])
        return r

    def write(self, n: int, **fields: Any) -> dict[str, Any]:
        r = self.request("POST", "/api/collections/shared/records", json={"n": n, **fields})
        assert r.status_code == 200, r.text
        self.wrote.append(n)
        return dict(r.json())


def _served(log: Path) -> dict[int, int]:
    """n → the pid of the process that handled its write."""
    lines = log.read_text().splitlines()
    return {int(float(n)): int(pid) for n, pid in (line.split() for line in lines)}


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_two_workers_share_schema_and_data(tmp_path: Path, database_url: str) -> None:
    """Two server processes (SHIPYARD_WORKERS=2) on one database: a write or a schema change
    made through one process is seen at once through the other, in both directions."""
    log = tmp_path / "served.log"
    hooks = tmp_path / "hooks.py"
    hooks.write_text(SERVED_BY.format(log=str(log)))
    extra = {"SHIPYARD_WORKERS": "2", "SHIPYARD_HOOKS": str(hooks)}
    srv = start_server(tmp_path / "two", database_url, extra)
    conns: list[Conn] = []
    try:
        h = {"Authorization": srv.superuser_token()}
        r = httpx.post(
            srv.url + "/api/collections",
            json={
                "name": "shared",
                "listRule": "",
                "viewRule": "",
                "fields": [{"name": "n", "type": "number"}],
            },
            headers=h,
        )
        assert r.status_code == 200, r.text
        fields = r.json()["fields"]
        # new connections, 8 at a time, until each process holds one (the kernel hands each
        # connection to whichever process accepts it first)
        by_pid: dict[int, Conn] = {}
        deadline = time.monotonic() + 30
        while len(by_pid) < 2 and time.monotonic() < deadline:
            batch = [Conn(srv.url, h) for _ in range(8)]
            base = len(conns)
            conns += batch
            with ThreadPoolExecutor(len(batch)) as pool:
                list(pool.map(Conn.write, batch, range(base, base + len(batch))))
            served = _served(log)
            for conn in batch:
                by_pid.setdefault(served[conn.wrote[0]], conn)
        assert len(by_pid) == 2, f"one process took all {len(conns)} connections"
        (pid_a, a), (pid_b, b) = sorted(by_pid.items())
        # both are worker processes of this server
        assert _parent(pid_a) == _parent(pid_b) == srv.proc.pid

        total, n = len(conns), len(conns)
        for i in range(40):  # each write is read at once through the other process
            writer, reader = (a, b) if i % 2 == 0 else (b, a)
            rec = writer.write(n)
            n, total = n + 1, total + 1
            got = reader.request("GET", "/api/collections/shared/records", params={"perPage": 1})
            assert got.status_code == 200, got.text
            assert got.json()["totalItems"] == total, got.text
            got = reader.request("GET", f"/api/collections/shared/records/{rec['id']}")
            assert got.status_code == 200, got.text
            assert got.json()["n"] == rec["n"], got.text

        # a schema change through one process is in force at once in the other
        for name, changer, other in (("extra_a", a, b), ("extra_b", b, a)):
            fields = [*fields, {"name": name, "type": "text"}]
            r = changer.request("PATCH", "/api/collections/shared", json={"fields": fields})
            assert r.status_code == 200, r.text
            fields = r.json()["fields"]
            got = other.request("GET", "/api/collections/shared/records", params={"perPage": 1})
            assert got.status_code == 200, got.text
            item = got.json()["items"][0]
            assert item.get(name) == "", f"answered with the schema before the change: {item}"
            value = f"{name}, written through the other process"
            rec = other.write(n, **{name: value})
            n += 1
            assert rec[name] == value
            got = changer.request("GET", f"/api/collections/shared/records/{rec['id']}")
            assert got.status_code == 200, got.text
            assert got.json()[name] == value, got.text
    finally:
        for conn in conns:
            conn.http.close()
        stop_server(srv)
    # every request of a connection went over that one connection, to its process
    served = _served(log)
    for pid, conn in ((pid_a, a), (pid_b, b)):
        assert len(conn.ports) == 1, conn.ports
        assert {served[k] for k in conn.wrote} == {pid}
    assert len(a.wrote) > 20
    assert len(b.wrote) > 20  # the loop's writes, half through each


def test_demo_loads(tmp_path: Path) -> None:
    env = {"SHIPYARD_DATA_DIR": str(tmp_path / "demo")}
    r = run(["demo"], env)
    assert r.returncode == 0, r.stderr
    assert "2000 posts (12 with a cover image)" in r.stdout, r.stderr
    assert "already loaded" in run(["demo"], env).stdout


def test_settings_file_errors_stop_serve_naming_the_file(tmp_path: Path) -> None:
    """A missing SHIPYARD_CONFIG file or a bad value in it: one line naming the file, exit 2."""
    missing = tmp_path / "prod.toml"
    r = run(["serve"], {"SHIPYARD_CONFIG": str(missing), "SHIPYARD_DATA_DIR": str(tmp_path)})
    assert r.returncode == 2
    assert r.stderr == (
        f"shipyard: bad setting: SHIPYARD_CONFIG: the settings file {missing} does not exist\n"
    )
    missing.write_text("port = 0\n")
    r = run(["serve"], {"SHIPYARD_CONFIG": str(missing), "SHIPYARD_DATA_DIR": str(tmp_path)})
    assert r.returncode == 2
    assert r.stderr == f"shipyard: bad setting: port in {missing}: must be greater than 0\n"
