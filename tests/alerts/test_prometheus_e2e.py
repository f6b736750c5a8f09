"""A real Prometheus (Debian's `prometheus`) scrapes a 2-worker `shipyard serve` and loads
the rules `shipyard alerts export` wrote: the scrape is up, both worker processes are
counted, every exported rule is loaded and evaluates healthily, and a rule forced by 404s
fires in Prometheus as it does in Shipyard. SQLite and PostgreSQL.

Prometheus starts once per session (its targets come from a file it re-reads every second,
which each test points at its own server); the rule file is exported once, with a 1 s
evaluation interval and one extra rule on the 4xx ratio.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.helpers.servers import free_port, start_server, stop_server
from tests.helpers.wait import wait_until

FORCED = {
    "Shipyard4xx": {
        "type": "http_error_ratio",
        "params": {"status": "4", "window": 30, "minRequests": 1},
        "threshold": 0.1,
        "summary": "Many 404s (the e2e test's forced rule).",
    }
}


@dataclass
class Prometheus:
    url: str
    targets: Path
    rules: list[str]


def _api(url: str, path: str, **params: Any) -> Any:
    r = httpx.get(url + path, params=params, timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "success", body
    return body["data"]


@pytest.fixture(scope="session")
def prometheus() -> Iterator[Prometheus]:
    binary = shutil.which("prometheus")
    assert binary, "prometheus is missing: ./run test installs it (Debian package prometheus)"
    work = Path(tempfile.mkdtemp(prefix="shipyard-prom-"))
    env = {
        **os.environ,
        "SHIPYARD_DATA_DIR": str(work / "export-data"),
        "SHIPYARD_DATABASE_URL": "",
        "SHIPYARD_ALERTS_INTERVAL": "1",
        "SHIPYARD_ALERTS_RULES": json.dumps(FORCED),
    }
    rules = work / "shipyard-rules.yml"
    r = subprocess.run(
        [sys.executable, "-m", "shipyard.cli", "alerts", "export", "--rules", str(rules)],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    names = [
        rule["alert"] for g in yaml.safe_load(rules.read_text())["groups"] for rule in g["rules"]
    ]
    targets = work / "targets.json"
    targets.write_text("[]")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {
                "job_name": "shipyard",
                "scrape_timeout": "1s",
                "file_sd_configs": [{"files": [str(targets)], "refresh_interval": "1s"}],
            }
        ],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (work / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [binary, f"--config.file={work / 'prometheus.yml'}",
         f"--storage.tsdb.path={work / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            assert proc.poll() is None, (work / "prometheus.log").read_text()[-4000:]
            try:
                return httpx.get(url + "/-/ready", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, 60.0, 0.1, "Prometheus ready")
        yield Prometheus(url, targets, names)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
        shutil.rmtree(work, ignore_errors=True)


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_prometheus_scrapes_two_workers_and_loads_the_exported_rules(
    prometheus: Prometheus, database_url: str, tmp_path: Path
) -> None:
    srv = start_server(tmp_path / "srv", database_url, {"SHIPYARD_WORKERS": "2"})
    try:
        target = srv.url.removeprefix("http://")
        prometheus.targets.write_text(json.dumps([{"targets": [target]}]))

        def up() -> list[Any]:
            active = _api(prometheus.url, "/api/v1/targets")["activeTargets"]
            return [t for t in active if t["labels"]["instance"] == target and t["health"] == "up"]

        wait_until(up, 60.0, 0.2, "the Shipyard target scraped and up")

        # both worker processes are counted (a process gauge has one series per process;
        # Prometheus keeps its own `instance` and renames Shipyard's to exported_instance)
        def processes() -> int:
            q = f'count(shipyard_process_open_fds{{instance="{target}"}})'
            result = _api(prometheus.url, "/api/v1/query", query=q)["result"]
            return int(float(result[0]["value"][1])) if result else 0

        assert wait_until(lambda: processes() >= 2, 60.0, 0.2, "two processes") is True
        assert processes() == 2

        # every exported rule is loaded, and evaluates without error
        def healthy() -> dict[str, str]:
            groups = _api(prometheus.url, "/api/v1/rules")["groups"]
            rules = {r["name"]: r for g in groups for r in g["rules"]}
            assert set(rules) == set(prometheus.rules)
            ok = all(r["health"] == "ok" and not r.get("lastError") for r in rules.values())
            return {n: r["health"] for n, r in rules.items()} if ok else {}

        states = wait_until(healthy, 60.0, 0.2, "every rule loaded and healthy")
        assert "ShipyardHigh5xxRatio" in states
        assert "Shipyard4xx" in states

        # the forced rule fires in Prometheus from Shipyard's own metrics; misses keep
        # coming while it waits (a counter's first sample is no increase to `rate`)
        def forced() -> list[Any]:
            alerts = _api(prometheus.url, "/api/v1/alerts")["alerts"]
            return [a for a in alerts
                    if a["labels"]["alertname"] == "Shipyard4xx" and a["state"] == "firing"]  # fmt: skip

        # none left over from an earlier test's server (its series went stale with it)
        wait_until(lambda: not forced(), 60.0, 0.2, "no Shipyard4xx firing yet")
        with httpx.Client(base_url=srv.url) as c:

            def firing() -> list[Any]:
                for _ in range(5):
                    assert c.get("/api/no-such-thing").status_code == 404
                return forced()

            wait_until(firing, 60.0, 0.2, "Shipyard4xx firing in Prometheus")
    finally:
        prometheus.targets.write_text("[]")
        stop_server(srv)
