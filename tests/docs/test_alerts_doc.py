"""docs/alerts.md: its rules document (JSON, and the TOML form) is accepted as written and
means what the page says, and its hand-written signature check verifies a notification
signed by Shipyard's sender (and refuses a changed one)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from shipyard.alerts.rules import parse_rules
from shipyard.settings import load_settings
from shipyard.tools import webhooks as wh
from tests.helpers.docblocks import block


def test_the_rules_json_example() -> None:
    doc = json.loads(block("alerts-rules-json").text)
    rules = {r.name: r for r in parse_rules(doc)}
    assert rules["ShipyardDiskFreeLow"].threshold == 5e9
    assert not rules["ShipyardQueueLag"].enabled
    assert rules["ShipyardErrorNewIssue"].severity == "info"
    shop = rules["Checkout5xx"]
    assert (shop.type, shop.for_, shop.group, shop.severity) == (
        "http_error_ratio", 60.0, "shop", "critical",
    )  # fmt: skip
    assert shop.param("status") == "5"  # the type's default
    assert shop.all_labels()["team"] == "shop"


def test_the_rules_toml_example(tmp_path: Path) -> None:
    path = tmp_path / "shipyard.toml"
    path.write_text(block("alerts-rules-toml").text)
    settings = load_settings(env={}, toml_path=path, data_dir=str(tmp_path / "data"))
    rules = {r.name: r for r in parse_rules(settings.alerts_rules)}
    assert rules["ShipyardDiskFreeLow"].threshold == 5e9
    assert not rules["ShipyardQueueLag"].enabled


def test_the_signature_check() -> None:
    scope: dict[str, Any] = {}
    exec(compile(block("alerts-webhook-verify").text, "alerts.md", "exec"), scope)  # noqa: S102  (the page's own code)
    verify = scope["verify"]
    secret = wh.new_secret()
    body = b'{"version": "1", "alerts": []}'
    headers = wh.signed_headers(secret, "alert_1-shipyard", body)
    assert verify(secret, headers, body)
    assert not verify(secret, headers, body + b" ")
    assert not verify(wh.new_secret(), headers, body)
    old = wh.signed_headers(secret, "alert_1-shipyard", body, now=time.time() - 3600)
    assert not verify(secret, old, body)
