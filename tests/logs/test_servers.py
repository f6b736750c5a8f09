"""Real `shipyard serve` processes on SQLite and PostgreSQL: one JSON line per request on
stdout (the request id taken from the client or made, and echoed), no password or token
in the output, Shipyard's own events as JSON lines too; and two processes sharing one
database, whose request log entries and `logs` settings each sees from the other."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.servers import SUPERUSER, Server, start_server, stop_server
from tests.helpers.wait import wait_until

pytestmark = pytest.mark.timeout(240)


def json_lines(server: Server) -> list[dict[str, Any]]:
    out = []
    for line in server.log_path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def request_line(server: Server, request_id: str) -> dict[str, Any] | None:
    return next((x for x in json_lines(server) if x.get("requestId") == request_id), None)


def login(server: Server, password: str) -> httpx.Response:
    return httpx.post(
        server.url + "/api/collections/_superusers/auth-with-password",
        json={"identity": SUPERUSER[0], "password": password},
    )


def test_json_lines_on_stdout(database_url: str, tmp_path: Path) -> None:
    # every statement counts as slow: the slow-query warnings are Shipyard's own events
    srv = start_server(tmp_path / "srv", database_url, {"SHIPYARD_SLOW_QUERY_MS": "0.0001"})
    try:
        url = srv.url
        r = httpx.get(url + "/api/health?x=1", headers={"X-Request-Id": "client-id-42"})
        assert r.headers["x-request-id"] == "client-id-42"
        made = httpx.get(url + "/api/health", headers={"User-Agent": "probe/2"})
        made_id = made.headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", made_id)
        wrong = "Wrong-Password-5521"
        assert login(srv, wrong).status_code == 400
        token = srv.superuser_token()
        listed = httpx.get(
            url + f"/api/collections/_superusers/records?token={token}",
            headers={"Authorization": token, "X-Request-Id": "with-token"},
        )
        assert listed.status_code == 200
        line = wait_until(lambda: request_line(srv, "client-id-42"), what="the request's line")
        assert line["level"] == "info"
        assert line["method"] == "GET"
        assert line["route"] == "/api/health"
        assert line["url"] == "/api/health?x=1"
        assert line["status"] == 200
        assert line["execTime"] >= 0
        assert line["userIP"] == "127.0.0.1"
        assert "authId" not in line  # a guest
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"])
        other = wait_until(lambda: request_line(srv, made_id), what="the made id's line")
        assert other["userAgent"] == "probe/2"
        su_line = wait_until(lambda: request_line(srv, "with-token"), what="the list line")
        assert su_line["route"] == "/api/collections/{collection}/records"
        assert su_line["auth"] == "_superusers"
        assert len(su_line["authId"]) == 15
        assert su_line["url"] == "/api/collections/_superusers/records?token=[redacted]"
        events = wait_until(
            lambda: [x for x in json_lines(srv) if x.get("logger") == "shipyard.slowquery"],
            what="an own event line",
        )
        assert events[0]["level"] == "warning"
        assert events[0]["msg"].startswith("slow query")
    finally:
        stop_server(srv)
    output = srv.log_path.read_text(errors="replace")
    assert wrong not in output
    assert token not in output


def entries(server: Server, token: str, filter_text: str) -> list[dict[str, Any]]:
    r = httpx.get(
        server.url + "/api/logs",
        params={"filter": filter_text, "perPage": 200},
        headers={"Authorization": token},
    )
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def test_two_processes_share_the_request_log(database_url: str, tmp_path: Path) -> None:
    url = database_url or f"sqlite:///{tmp_path / 'shared.db'}"
    a = start_server(tmp_path / "a", url)
    try:
        b = start_server(tmp_path / "b", url)
        try:
            ta, tb = a.superuser_token(), b.superuser_token()
            httpx.get(a.url + "/api/health?from=a")
            httpx.get(b.url + "/api/health?from=b")
            for srv, token in ((a, ta), (b, tb)):
                wait_until(
                    lambda srv=srv, token=token: (
                        len(entries(srv, token, "data.url ~ 'from='")) == 2
                    ),
                    what="both processes' entries",
                )
            # a settings change on one process applies to the other's next writes
            r = httpx.patch(
                a.url + "/api/settings",
                json={"logs": {"minLevel": 8}},
                headers={"Authorization": ta},
            )
            assert r.status_code == 200, r.text
            httpx.get(b.url + "/api/health?then=ok")
            httpx.get(b.url + "/api/collections/missing/records?then=failed")
            wait_until(
                lambda: entries(a, ta, "data.url ~ 'then='"), what="the failed request's entry"
            )
            seen = entries(a, ta, "data.url ~ 'then='")
            assert [e["data"]["status"] for e in seen] == [404]
        finally:
            stop_server(b)
    finally:
        stop_server(a)
