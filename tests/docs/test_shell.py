"""The docs' shell examples, run with bash against real `shipyard` processes (the base URL,
tokens and the ids of jobs made for the test put in), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from tests.helpers.docblocks import DOCS, block, replace
from tests.helpers.docsapp import Inbox, app, inbox_running, ok
from tests.helpers.servers import (
    SUPERUSER,
    Server,
    free_port,
    fresh_pg_database,
    start_server,
    stop_server,
)
from tests.helpers.webhook_receiver import Receiver

BIN = str(Path(sys.executable).parent)
BASE = "http://127.0.0.1:8090"
PRELUDE = 'set -euo pipefail\ncurl() { command curl -sS --fail-with-body "$@"; echo; }\n'


def sh(script: str, cwd: Path, env: dict[str, str]) -> str:
    """Run `script` with bash (stopping at the first failing command or HTTP error); stdout."""
    r = subprocess.run(
        ["bash", "-c", PRELUDE + script],
        cwd=cwd,
        env={**os.environ, "PATH": BIN + os.pathsep + os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, (
        f"exit {r.returncode}\n{script}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    )
    return r.stdout


def outputs(stdout: str) -> list[Any]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    with inbox_running() as box:
        yield box


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.start()
    try:
        yield r
    finally:
        r.stop()


def test_settings_errors(tmp_path: Path) -> None:
    lines = block("settings-errors").text.splitlines()
    conf = tmp_path / "prod.toml"
    cases = [
        ({"SHIPYARD_PORT": "abc"}, lines[0]),
        ({"SHIPYARD_CONFIG": str(conf)}, replace(lines[1], "/etc/shipyard/prod.toml", str(conf))),
        ({"SHIPYARD_CONFIG": str(conf)}, replace(lines[2], "/etc/shipyard/prod.toml", str(conf))),
    ]
    for i, (env, line) in enumerate(cases):
        if i == 1:
            conf.write_text("port = 0\n")
        if i == 2:
            conf.unlink()
        r = subprocess.run(
            [f"{BIN}/shipyard", "serve"],
            env={**os.environ, "SHIPYARD_DATA_DIR": str(tmp_path / "d"), **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert (r.returncode, r.stderr) == (2, line + "\n")


def _cli_env(tmp_path: Path, database_url: str) -> dict[str, str]:
    return {"SHIPYARD_DATA_DIR": str(tmp_path / "data"), "SHIPYARD_DATABASE_URL": database_url}


def test_collections_file(tmp_path: Path, database_url: str, inbox: Inbox) -> None:
    command = "shipyard migrate --schema-file collections.json"
    assert f"`{command}`" in (DOCS / "collections.md").read_text()
    (tmp_path / "collections.json").write_text(block("collections-file").text)
    env = _cli_env(tmp_path, database_url)
    sh(command, tmp_path, env)
    with app(tmp_path, database_url, inbox) as (c, su):
        first = ok(c.get("/api/collections/posts", headers=su))
    sh(command, tmp_path, env)  # applying the same file twice changes nothing
    with app(tmp_path, database_url, inbox) as (c, su):
        again = ok(c.get("/api/collections/posts", headers=su))
        assert {**again, "updated": ""} == {**first, "updated": ""}
        authors = ok(c.get("/api/collections/authors", headers=su))
        author_field = next(f for f in again["fields"] if f["name"] == "author")
        assert author_field["collectionId"] == authors["id"]
        assert again["indexes"] == ["CREATE INDEX `idx_posts_author` ON `posts` (`author`)"]
        ann = ok(c.post("/api/collections/authors/records", json={"name": "Ann"}, headers=su))
        ok(
            c.post(
                "/api/collections/posts/records",
                json={"title": "t", "author": ann["id"]},
                headers=su,
            )
        )
        listed = ok(c.get("/api/collections/posts/records?expand=author"))  # listRule ""
        assert listed["items"][0]["expand"]["author"]["name"] == "Ann"


def test_db_advise(tmp_path: Path, database_url: str) -> None:
    env = _cli_env(tmp_path, database_url)
    for line in block("db-advise").text.splitlines():
        sh(line, tmp_path, env)


def test_webhooks_in_the_declarative_file(
    tmp_path: Path, database_url: str, inbox: Inbox, receiver: Receiver
) -> None:
    schema = replace(block("webhook-file").text, "https://billing.example.com", receiver.url)
    (tmp_path / "schema.json").write_text(schema)
    env = {**_cli_env(tmp_path, database_url), "SHIPYARD_WEBHOOK_ALLOW_PRIVATE": "127.0.0.1"}
    out = sh(block("webhook-migrate").text + 'echo "$BILLING_WEBHOOK_SECRET"\n', tmp_path, env)
    secret = out.splitlines()[-1]
    assert secret.startswith("whsec_")
    with app(tmp_path, database_url, inbox) as (c, su):
        (hook,) = ok(c.get("/api/webhooks", headers=su))["items"]
        assert (hook["name"], hook["secretHint"]) == ("orders-to-billing", "whsec_…" + secret[-4:])
        ok(c.post("/api/collections/orders/records", json={"total": 42}, headers=su))
        (got,) = receiver.wait_for(lambda got: len(got) >= 1, 30)
        event = Webhook(secret).verify(got.body, got.headers)
        assert event["type"] == "record.create"
        assert event["data"]["record"]["total"] == 42


def test_hooks_serve(tmp_path: Path, database_url: str) -> None:
    """`SHIPYARD_HOOKS=hooks.py shipyard serve` with the hooks module of jobs.md."""
    (tmp_path / "hooks.py").write_text(block("hooks-module").text)
    port = free_port()
    env = {
        **os.environ,
        "PATH": BIN + os.pathsep + os.environ["PATH"],
        **_cli_env(tmp_path, database_url),
        "SHIPYARD_PORT": str(port),
    }
    subprocess.run(
        [f"{BIN}/shipyard", "superuser", "upsert", *SUPERUSER], env=env, check=True, cwd=tmp_path
    )
    proc = subprocess.Popen(
        ["bash", "-c", block("hooks-serve").text],
        cwd=tmp_path,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90  # a cold start on a loaded CI machine can be slow
        while True:
            assert proc.poll() is None, "shipyard serve exited"
            try:
                if httpx.get(url + "/api/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "shipyard serve did not become healthy"
            time.sleep(0.1)
        token = httpx.post(
            url + "/api/collections/_superusers/auth-with-password",
            json={"identity": SUPERUSER[0], "password": SUPERUSER[1]},
        ).json()["token"]
        r = httpx.post(
            url + "/api/jobs",
            json={"kind": "welcome_email", "args": {"user": "x"}, "delay": 600},
            headers={"Authorization": token},
        )
        assert r.status_code == 200, r.text  # a kind only the hooks module registers
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# ------------------------------------------------- curl against a real server (jobs.md)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Inbox, Receiver]]:
    """`shipyard serve` with the hooks module of jobs.md and the collections it needs."""
    tmp = tmp_path_factory.mktemp("served")
    url = (
        ""
        if request.param == "sqlite"
        else fresh_pg_database(request.getfixturevalue("pg_admin_url"))
    )
    (tmp / "hooks.py").write_text(block("hooks-module").text)
    with inbox_running() as box:
        rec = Receiver()
        rec.start()
        extra = {
            "SHIPYARD_HOOKS": str(tmp / "hooks.py"),
            "SHIPYARD_SMTP_HOST": "127.0.0.1",
            "SHIPYARD_SMTP_PORT": str(box.port),
            "SHIPYARD_SMTP_TLS": "off",
            "SHIPYARD_WEBHOOK_ALLOW_PRIVATE": "127.0.0.1",
        }
        srv = start_server(tmp / "srv", url, extra)
        try:
            su = {"Authorization": srv.superuser_token()}
            for body in (
                {"name": "users", "type": "auth", "fields": [{"name": "name", "type": "text"}]},
                {
                    "name": "orders",
                    "fields": [
                        {"name": "quantity", "type": "number"},
                        {"name": "status", "type": "text"},
                        {"name": "total", "type": "number"},
                    ],
                },
                {
                    "name": "counters",
                    "fields": [
                        {"name": "name", "type": "text"},
                        {"name": "value", "type": "number"},
                    ],
                },
            ):
                ok(httpx.post(srv.url + "/api/collections", json=body, headers=su))
            ok(
                httpx.post(
                    srv.url + "/api/collections/counters/records",
                    json={"name": "orders"},
                    headers=su,
                )
            )
            yield srv, box, rec
        finally:
            stop_server(srv)
            rec.stop()


def _wait_job(srv: Server, su: dict[str, str], job_id: int, state: str = "completed") -> Any:
    deadline = time.monotonic() + 30
    while True:
        job = ok(httpx.get(f"{srv.url}/api/jobs/{job_id}", headers=su))
        if job["state"] == state:
            return job
        assert time.monotonic() < deadline, job
        assert job["state"] != "discarded", job
        time.sleep(0.05)


def _no_failed_attempts(srv: Server) -> None:
    """The jobs the example made (and the hooks module's) never failed an attempt."""
    su = {"Authorization": srv.superuser_token()}
    jobs = ok(httpx.get(f"{srv.url}/api/jobs?perPage=500", headers=su))["items"]
    assert not [j for j in jobs if j["errors"]]


def _env(srv: Server) -> dict[str, str]:
    token = srv.superuser_token()
    return {"TOKEN": token, "SUPERUSER_TOKEN": token}


def test_export_curl(served: tuple[Server, Inbox, Receiver], tmp_path: Path) -> None:
    srv, _, _ = served
    su = {"Authorization": srv.superuser_token()}
    ok(
        httpx.post(
            f"{srv.url}/api/collections/orders/records",
            json={"status": "paid", "total": 7},
            headers=su,
        )
    )
    ok(httpx.post(f"{srv.url}/api/collections/orders/records", json={"status": "open"}, headers=su))
    text = replace(block("export-curl").text, BASE, srv.url)
    enqueue, sep, download = text.partition('# … once GET /api/jobs/<id> says "completed":\n')
    assert sep
    (job,) = outputs(sh(enqueue, tmp_path, _env(srv)))
    _wait_job(srv, su, job["id"])
    sh(replace(download, "42-orders.csv", f"{job['id']}-orders.csv"), tmp_path, _env(srv))
    rows = (tmp_path / f"{job['id']}-orders.csv").read_text().splitlines()
    assert len(rows) == 2
    assert "status" in rows[0].split(",")
    assert ",paid," in f",{rows[1]},"
    _no_failed_attempts(srv)


def test_jobs_curl(served: tuple[Server, Inbox, Receiver], tmp_path: Path) -> None:
    srv, _, _ = served
    su = {"Authorization": srv.superuser_token()}
    done = ok(
        httpx.post(
            f"{srv.url}/api/jobs",
            json={
                "kind": "send_email",
                "args": {"to": "ann@example.com", "subject": "Hi", "text": "x"},
            },
            headers=su,
        )
    )
    _wait_job(srv, su, done["id"])
    waiting = ok(
        httpx.post(f"{srv.url}/api/jobs", json={"kind": "send_email", "delay": 600}, headers=su)
    )
    text = replace(block("jobs-curl").text, BASE, srv.url)
    text = replace(text, '"password": "…"', json.dumps({"password": SUPERUSER[1]})[1:-1])
    text = replace(text, "/api/jobs/42/retry", f"/api/jobs/{done['id']}/retry")
    text = replace(text, "/api/jobs/43/cancel", f"/api/jobs/{waiting['id']}/cancel")
    created, discarded, retried, cancelled, stats = outputs(sh(text, tmp_path, {}))
    assert (created["kind"], created["state"], created["duplicate"]) == (
        "welcome_email",
        "scheduled",
        False,
    )
    assert created["uniqueKey"] == "welcome:u53r1d000000001"
    assert discarded["items"] == []
    assert retried["id"] == done["id"]
    # back in the queue: the running worker may already have claimed it again
    assert retried["state"] in ("available", "running", "completed")
    assert (cancelled["id"], cancelled["state"]) == (waiting["id"], "cancelled")
    assert "send_email" in stats["kinds"]
    _no_failed_attempts(srv)


def test_webhook_curl(served: tuple[Server, Inbox, Receiver], tmp_path: Path) -> None:
    srv, _, receiver = served
    text = replace(block("webhook-curl").text, BASE, srv.url)
    text = replace(text, "https://billing.example.com", receiver.url)
    (created,) = outputs(sh(text, tmp_path, _env(srv)))
    assert created["name"] == "orders-to-billing"
    assert created["secret"].startswith("whsec_")
    su = {"Authorization": srv.superuser_token()}
    ok(httpx.post(f"{srv.url}/api/collections/orders/records", json={"quantity": 1}, headers=su))
    got = receiver.wait_for(lambda got: any(r.answered == 200 for r in got), 30)
    delivered = next(r for r in got if r.answered == 200)
    assert Webhook(created["secret"]).verify(delivered.body, delivered.headers)["type"] == (
        "record.create"
    )
    _no_failed_attempts(srv)
