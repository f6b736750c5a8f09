"""Runtime settings across processes: two `shipyard serve` processes on one database
(PostgreSQL, and one SQLite file); a PATCH acknowledged by one is what the very next
request to the other sees, and the other sends mail with it, without a restart."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.helpers.servers import SUPERUSER, start_server, stop_server
from tests.helpers.smtp import smtp_server
from tests.helpers.wait import wait_until


def test_a_patch_on_one_process_is_seen_by_the_next_request_to_another(
    tmp_path: Path, database_url: str
) -> None:
    url = database_url or f"sqlite:///{tmp_path / 'shared.db'}"
    a = start_server(tmp_path / "a", url)
    try:
        b = start_server(tmp_path / "b", url)
        try:
            # both start-ups upserted the superuser: tokens taken after both
            ha = {"Authorization": a.superuser_token()}
            hb = {"Authorization": b.superuser_token()}
            for i in range(5):
                name = f"App {i}"
                r = httpx.patch(
                    a.url + "/api/settings", headers=ha, json={"meta": {"appName": name}}
                )
                assert r.status_code == 200, r.text
                got = httpx.get(b.url + "/api/settings", headers=hb).json()
                assert got["meta"]["appName"] == name
                assert f"<title>{name}</title>" in httpx.get(b.url + "/_/").text
            with smtp_server() as inbox:
                smtp = {"enabled": True, "host": "127.0.0.1", "port": inbox.port, "tls": "off"}
                r = httpx.patch(
                    b.url + "/api/settings",
                    headers=hb,
                    json={"smtp": smtp, "meta": {"senderName": "Two Processes"}},
                )
                assert r.status_code == 200, r.text
                body = {"email": "check@example.com", "template": "verification"}
                r = httpx.post(a.url + "/api/settings/test/email", headers=ha, json=body)
                assert r.status_code == 204, r.text
                r = httpx.post(
                    a.url + "/api/collections/_superusers/request-password-reset",
                    json={"email": SUPERUSER[0]},
                )
                assert r.status_code == 204, r.text
                got = wait_until(
                    lambda: inbox.handler.received if len(inbox.handler.received) >= 2 else [],
                    60,
                    what="the test mail and the reset mail",
                )
                subjects = sorted(m.message["Subject"] for m in got)
                assert subjects == ["Reset your App 4 password", "Verify your App 4 email"]
                assert {m.message["From"] for m in got} == {"Two Processes <noreply@example.com>"}
        finally:
            stop_server(b)
    finally:
        stop_server(a)
