"""docs/settings-api.md: its shell examples run with bash against a real `shipyard serve`
(SHIPYARD_SMTP_HOST set, as in the documented answer), its JSON answers compared with the
real ones, and its Python example declared on a real registry; SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from shipyard.app import create_app
from shipyard.auth import superusers
from shipyard.settings import load_settings
from tests.helpers.docblocks import DOCS, block, replace
from tests.helpers.docsapp import same_shape
from tests.helpers.servers import SUPERUSER, start_server, stop_server
from tests.helpers.smtp import smtp_server

BASE = "http://127.0.0.1:8090"


def _sh(script: str, url: str, token: str) -> list[Any]:
    """Run `script` with bash against `url`; the JSON of each line it printed."""
    r = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + replace(script, BASE, url)],
        env={**os.environ, "TOKEN": token},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, (script, r.stdout, r.stderr)
    return [json.loads(line) for line in r.stdout.replace("}{", "}\n{").splitlines() if line]


def test_settings_api_examples(tmp_path: Path, database_url: str) -> None:
    # as documented: only SMTP set at start-up (rate limits on, by default)
    extra = {"SHIPYARD_SMTP_HOST": "127.0.0.1", "SHIPYARD_RATELIMIT_ENABLED": None}
    srv = start_server(tmp_path / "srv", database_url, extra)
    try:
        token = srv.superuser_token()
        su = {"Authorization": token}
        with smtp_server() as inbox:
            smtp = {"port": inbox.port, "tls": "off"}
            r = httpx.patch(srv.url + "/api/settings", headers=su, json={"smtp": smtp})
            assert r.status_code == 200, r.text

            (got,) = _sh(block("settings-api-get").text, srv.url, token)
            same_shape(json.loads(block("settings-api-get-answer").text), got)
            assert got["readOnly"] == {
                "smtp.enabled": "SHIPYARD_SMTP_HOST",
                "smtp.host": "SHIPYARD_SMTP_HOST",
            }

            r = httpx.patch(
                srv.url + "/api/settings",
                headers=su,
                json={"meta": {"appName": ""}, "smtp": {"host": "smtp.acme.example.com"}},
            )
            assert r.json() == json.loads(block("settings-api-errors").text)

            assert _sh(block("settings-api-test-email").text, srv.url, token) == []  # 204
            (mail,) = inbox.handler.received
            assert mail.rcpt_tos == ["you@example.com"]
            assert mail.message["Subject"] == "Verify your Shipyard email"

        changed, reset = _sh(block("settings-api-patch").text, srv.url, token)
        assert (changed["meta"]["appName"], changed["meta"]["senderName"]) == (
            "Acme",
            "Acme Support",
        )
        assert (changed["smtp"]["port"], reset["smtp"]["port"]) == (2525, 587)
        assert reset["meta"]["appName"] == "Acme"
    finally:
        stop_server(srv)


def test_a_team_extension_declares_a_section(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The documented extension, loaded by SHIPYARD_EXTENSIONS into a real app."""
    (tmp_path / "team_reports.py").write_text(block("settings-api-declare").text)
    monkeypatch.syspath_prepend(str(tmp_path))
    settings = load_settings(
        env={"SHIPYARD_EXTENSIONS": "team_reports:extension"},
        data_dir=str(tmp_path / "data"),
        database_url=database_url,
    )
    with TestClient(create_app(settings)) as c:
        svc = c.app.state.services  # type: ignore[attr-defined]
        c.portal.call(superusers.upsert, svc, *SUPERUSER)  # type: ignore[union-attr]
        r = c.post(
            "/api/collections/_superusers/auth-with-password",
            json={"identity": SUPERUSER[0], "password": SUPERUSER[1]},
        )
        su = {"Authorization": r.json()["token"]}
        got = c.get("/api/settings", headers=su).json()
        assert got["reports"] == {"title": "Weekly report", "maxRows": 1000}
        reports = svc.extension("reports")  # type: ignore[union-attr]
        r = c.patch("/api/settings", headers=su, json={"reports": {"maxRows": 500}})
        assert r.status_code == 200
        assert r.json()["reports"]["maxRows"] == 500
        assert c.portal.call(reports.max_rows) == 500  # type: ignore[union-attr]
        r = c.patch("/api/settings", headers=su, json={"reports": {"maxRows": 0, "title": ""}})
        assert set(r.json()["data"]["reports"]) == {"maxRows", "title"}


def _codes(text: str, pattern: str) -> set[str]:
    return set(re.findall(pattern, text))


def test_error_codes_are_all_documented() -> None:
    src = Path(__file__).resolve().parents[2] / "src" / "shipyard"
    doc = (DOCS / "settings-api.md").read_text()
    raised = r'"(validation_[a-z_]+)"'
    listed = r"`(validation_[a-z_]+)`"
    settings_codes = set().union(
        *(
            _codes((src / p).read_text(), raised)
            for p in ("kernel/runtime.py", "auth/mail_settings.py")
        )
    )
    section = doc[doc.index("## Errors") : doc.index("## Secrets")]
    assert settings_codes == _codes(section, listed)
    section = doc[doc.index("## Test mail") : doc.index("## Across processes")]
    assert _codes((src / "http/settings_api.py").read_text(), raised) == _codes(section, listed)
