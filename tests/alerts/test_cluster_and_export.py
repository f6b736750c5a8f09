"""Alerting across processes and for Prometheus, on SQLite and PostgreSQL:

- a real `shipyard serve --workers 2` evaluates every second: each tick is evaluated by
  exactly one of its processes (the evaluation log has no tick twice);
- `shipyard alerts export` writes a rule file that `promtool check rules` accepts and an
  Alertmanager configuration that `amtool check-config` accepts (Debian's `prometheus` and
  `prometheus-alertmanager`), with the rules and channels in effect and no secret inline.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.helpers.servers import Server, start_server, stop_server
from tests.helpers.wait import wait_until

SLACK = "https://hooks.slack.com/services/T000/B000/slacksecrettoken"
ROUTING_KEY = "pagerdutyroutingkeysecret0123456"


@pytest.fixture
def cluster(database_url: str, tmp_path: Path) -> Iterator[Server]:
    srv = start_server(
        tmp_path / "srv",
        database_url,
        {"SHIPYARD_WORKERS": "2", "SHIPYARD_ALERTS_INTERVAL": "1"},
    )
    try:
        yield srv
    finally:
        stop_server(srv)


@pytest.mark.e2e
def test_two_processes_evaluate_each_tick_once(cluster: Server) -> None:
    su = {"Authorization": cluster.superuser_token()}

    def evaluations() -> list[dict[str, Any]]:
        r = httpx.get(cluster.url + "/api/alerts", headers=su, timeout=10)
        assert r.status_code == 200, r.text
        got: list[dict[str, Any]] = r.json()["evaluations"]
        return got if len(got) >= 6 else []

    got = wait_until(evaluations, 60.0, 0.2, "six evaluations")
    ticks = [e["at"] for e in got]
    assert len(ticks) == len(set(ticks)), ticks  # no tick evaluated twice
    assert all(e["error"] == "" for e in got), got
    assert ticks == sorted(ticks, reverse=True)


def _need(tool: str) -> str:
    path = shutil.which(tool)
    assert path, f"{tool} is missing: ./run test installs it (Debian prometheus packages)"
    return path


def test_export_validates_with_promtool_and_amtool(database_url: str, tmp_path: Path) -> None:
    promtool, amtool = _need("promtool"), _need("amtool")
    rules = {
        "ShipyardQueueLag": {"enabled": False},
        "Checkout4xx": {
            "type": "http_error_ratio",
            "params": {"status": "4", "route": "/api/collections/{collection}/records"},
            "threshold": 0.2,
            "for": 120,
            "labels": {"team": "shop"},
        },
    }
    env = {
        **os.environ,
        "SHIPYARD_DATA_DIR": str(tmp_path / "data"),
        "SHIPYARD_DATABASE_URL": database_url,
        "SHIPYARD_ALERTS_RULES": json.dumps(rules),
        "SHIPYARD_SMTP_HOST": "smtp.example.com",
        "SHIPYARD_SMTP_USERNAME": "mailer",
        "SHIPYARD_SMTP_PASSWORD": "smtp-password-secret",
        "SHIPYARD_ALERTS_EMAIL_TO": "oncall@example.com",
        "SHIPYARD_ALERTS_SLACK_WEBHOOK_URL": SLACK,
        "SHIPYARD_ALERTS_PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
        "SHIPYARD_ALERTS_WEBHOOK_URL": "https://ops.example.com/hook",
        "SHIPYARD_ALERTS_WEBHOOK_SECRET": "whsec_c2lnbmluZ3NlY3JldGZvcnRoZWhvb2s=",
    }
    out = tmp_path / "out"
    out.mkdir()
    r = subprocess.run(
        [sys.executable, "-m", "shipyard.cli", "alerts", "export",
         "--rules", str(out / "rules.yml"), "--alertmanager", str(out / "alertmanager.yml")],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    check = subprocess.run(
        [promtool, "check", "rules", str(out / "rules.yml")], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert (
        "SUCCESS: 8 rules found" in check.stdout
    )  # the defaults with PromQL (ShipyardBackupMissing, ShipyardBackupDrillFailed)
    check = subprocess.run(
        [amtool, "check-config", str(out / "alertmanager.yml")], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr

    doc = yaml.safe_load((out / "rules.yml").read_text())
    by = {rule["alert"]: rule for g in doc["groups"] for rule in g["rules"]}
    assert "ShipyardQueueLag" not in by  # disabled
    assert "ShipyardErrorNewIssue" not in by  # no metric behind it: Shipyard only
    shop = by["Checkout4xx"]
    assert shop["for"] == "120s"
    assert shop["labels"] == {"team": "shop", "severity": "warning", "group": "shipyard"}
    assert 'route="/api/collections/{collection}/records"' in shop["expr"]
    assert by["ShipyardHigh5xxRatio"]["annotations"]["runbook_url"].endswith(
        "#shipyardhigh5xxratio"
    )

    text = (out / "alertmanager.yml").read_text()
    for secret in ("slacksecrettoken", ROUTING_KEY, "smtp-password-secret", "c2lnbmluZ3Nl"):
        assert secret not in text
        assert secret not in r.stdout + r.stderr
    am = yaml.safe_load(text)
    [receiver] = am["receivers"]
    assert receiver["email_configs"][0]["to"] == "oncall@example.com"
    assert receiver["webhook_configs"][0]["url"] == "https://ops.example.com/hook"
    slack_file = Path(receiver["slack_configs"][0]["api_url_file"])
    assert slack_file.read_text() == SLACK
    assert Path(receiver["pagerduty_configs"][0]["routing_key_file"]).read_text() == ROUTING_KEY
    assert stat.S_IMODE(slack_file.stat().st_mode) == 0o600
    assert am["route"]["group_by"] == ["group"]

    # without options: the rule file on stdout
    r = subprocess.run(
        [sys.executable, "-m", "shipyard.cli", "alerts", "export"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "Checkout4xx" in r.stdout


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        ({"SHIPYARD_ALERTS_RULES": '{"X": {"type": "nope"}}'}, ["SHIPYARD_ALERTS_RULES", "X.type"]),
        (
            {"SHIPYARD_ALERTS_WEBHOOK_URL": "https://ops.example.com/hook"},
            ["SHIPYARD_ALERTS_WEBHOOK_SECRET"],
        ),
    ],
)
def test_bad_alert_settings_stop_start_up(
    database_url: str, tmp_path: Path, extra: dict[str, str], needles: list[str]
) -> None:
    env = {
        **os.environ,
        "SHIPYARD_DATA_DIR": str(tmp_path / "data"),
        "SHIPYARD_DATABASE_URL": database_url,
        **extra,
    }
    r = subprocess.run(
        [sys.executable, "-m", "shipyard.cli", "alerts", "export"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("shipyard: bad setting: ")
    for needle in needles:
        assert needle in r.stderr
