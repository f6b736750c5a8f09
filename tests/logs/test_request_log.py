"""PocketBase's request log on SQLite and PostgreSQL: what a request records in `_logs`
(PocketBase 0.40's message, level and `data` keys), no secret in it, Shipyard's own
warnings and errors, `/api/logs` (list, filter, sort, pages, stats, view, and PocketBase's
401/403/404/400), and the `logs` runtime settings honoured."""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from shipyard.app import create_app
from shipyard.logs import store
from shipyard.logs.extension import LogsExtension
from shipyard.settings import Settings
from tests.helpers.jobs_api import user_headers

H = dict[str, str]
REQUEST_KEYS = {
    "type", "execTime", "url", "method", "status", "referer", "userAgent", "auth",
    "userIP", "remoteIP",
}  # fmt: skip


def _ext(client: TestClient) -> LogsExtension:
    ext: LogsExtension = client.app.state.services.extension("logs")  # type: ignore[attr-defined]
    return ext


def flush(client: TestClient) -> None:
    """Write the waiting entries now (the writer does it every second on its own)."""
    client.portal.call(_ext(client).flush)  # type: ignore[union-attr]


def entries(client: TestClient, su: H, **params: Any) -> list[dict[str, Any]]:
    flush(client)
    r = client.get("/api/logs", params={"perPage": 500, **params}, headers=su)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def by_url(items: list[dict[str, Any]], fragment: str) -> list[dict[str, Any]]:
    return [i for i in items if fragment in i["data"].get("url", "")]


def patch_logs(client: TestClient, su: H, **values: Any) -> None:
    r = client.patch("/api/settings", json={"logs": values}, headers=su)
    assert r.status_code == 200, r.text


def test_a_request_is_recorded_as_pocketbase_records_it(client: TestClient, su: H) -> None:
    client.get(
        "/api/health?x=%20y",
        headers={"User-Agent": "agent/1", "Referer": "http://ref.example/page"},
    )
    client.get("/api/collections/missing/records")
    client.get("/api/collections/_superusers/records", headers=su)
    [ok] = by_url(entries(client, su), "/api/health?x=%20y")
    assert ok["message"] == "GET /api/health?x= y"
    assert ok["level"] == 0
    assert set(ok) == {"id", "created", "data", "message", "level"}
    assert set(ok["data"]) == REQUEST_KEYS
    assert ok["data"]["type"] == "request"
    assert ok["data"]["method"] == "GET"
    assert ok["data"]["status"] == 200
    assert ok["data"]["userAgent"] == "agent/1"
    assert ok["data"]["referer"] == "http://ref.example/page"
    assert ok["data"]["auth"] == ""
    assert isinstance(ok["data"]["execTime"], float)
    assert len(ok["id"]) == 15
    [missing] = by_url(entries(client, su), "/api/collections/missing/records")
    assert missing["level"] == 8  # a failed request is an error, as in PocketBase
    assert missing["data"]["status"] == 404
    # the superuser's own requests name the collection; not its id (logAuthId is off)
    superuser = [i for i in entries(client, su) if i["data"].get("auth") == "_superusers"]
    assert superuser
    assert all("authId" not in i["data"] for i in superuser)


def test_no_secret_reaches_the_log(client: TestClient, su: H) -> None:
    password = "Not-The-Password-93"
    r = client.post(
        "/api/collections/_superusers/auth-with-password",
        json={"identity": "root@example.com", "password": password},
    )
    assert r.status_code == 400
    token = su["Authorization"]
    client.get(f"/api/health?token={token}&password={password}&apiKey=k-123&page=2")
    flush(client)
    rows = client.portal.call(  # type: ignore[union-attr]
        _ext(client).db.fetchall, f'SELECT "message", "data" FROM "{store.TABLE}"'
    )
    text = repr(rows)
    assert password not in text
    assert token not in text
    assert "k-123" not in text
    [entry] = by_url(entries(client, su), "/api/health?token=")
    assert entry["data"]["url"] == (
        "/api/health?token=[redacted]&password=[redacted]&apiKey=[redacted]&page=2"
    )


def test_successful_requests_to_the_log_api_are_not_recorded(client: TestClient, su: H) -> None:
    entries(client, su)
    assert client.get("/api/logs").status_code == 401
    items = by_url(entries(client, su), "/api/logs")
    assert [i["data"]["status"] for i in items] == [401]


def test_own_warnings_and_errors_are_recorded(client: TestClient, su: H) -> None:
    log = logging.getLogger("shipyard.test_logs")
    log.warning("disk is %s full", "almost")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("job failed")
    log.info("not recorded: below warning")
    # ids (ordered by time) order the entries of one millisecond
    items = entries(client, su, filter="data.type = 'event'", sort="created,id")
    assert [(i["level"], i["message"]) for i in items] == [
        (4, "disk is almost full"),
        (8, "job failed"),
    ]
    assert items[0]["data"] == {"type": "event", "logger": "shipyard.test_logs"}
    assert items[1]["data"]["error"] == "RuntimeError: boom"


def test_list_filter_sort_pages_and_view(client: TestClient, su: H) -> None:
    for n in range(5):
        client.get(f"/api/health?n={n}")
    client.get("/api/collections/missing/records")
    flush(client)
    r = client.get(
        "/api/logs",
        params={"filter": "data.url ~ '/api/health?n=' && level = 0", "sort": "-created,id"},
        headers=su,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["totalItems"] == 5
    assert body["totalPages"] == 1
    assert body["page"] == 1
    assert body["perPage"] == 30
    created = [i["created"] for i in body["items"]]
    assert created == sorted(created, reverse=True)
    r = client.get(
        "/api/logs",
        params={"filter": "data.url ~ '/api/health?n='", "perPage": 2, "page": 3},
        headers=su,
    )
    assert (r.json()["totalItems"], r.json()["totalPages"], len(r.json()["items"])) == (5, 3, 1)
    r = client.get(
        "/api/logs",
        params={"filter": "data.url ~ '/api/health?n='", "perPage": 2, "skipTotal": "1"},
        headers=su,
    )
    assert (r.json()["totalItems"], r.json()["totalPages"], len(r.json()["items"])) == (-1, -1, 2)
    errors = client.get(
        "/api/logs", params={"filter": "level >= 8 && data.status = 404"}, headers=su
    ).json()["items"]
    assert [e["data"]["url"] for e in errors] == ["/api/collections/missing/records"]
    numbers = client.get(
        "/api/logs", params={"filter": "data.status > 399 && data.execTime >= 0"}, headers=su
    ).json()["items"]
    assert {e["data"]["status"] for e in numbers} == {404}
    # typed as on SQLite: the number 404 is not the text "404"
    assert (
        client.get("/api/logs", params={"filter": "data.status = '404'"}, headers=su).json()[
            "items"
        ]
        == []
    )
    today = client.get(
        "/api/logs", params={"filter": "created >= @todayStart && data.nothing = null"}, headers=su
    ).json()
    assert today["totalItems"] >= 6
    one = errors[0]
    r = client.get(f"/api/logs/{one['id']}", headers=su)
    assert r.status_code == 200
    assert r.json() == one
    r = client.get(f"/api/logs/{one['id']}", params={"fields": "id,data.status"}, headers=su)
    assert r.json() == {"id": one["id"], "data": {"status": 404}}
    picked = client.get(
        "/api/logs",
        params={"filter": "level = 8", "fields": "level,message:excerpt(3)"},
        headers=su,
    ).json()["items"]
    assert picked == [{"level": 8, "message": "GET"}]


def test_stats_count_entries_per_hour(client: TestClient, su: H) -> None:
    for _ in range(3):
        client.get("/api/collections/missing/records")
    flush(client)
    r = client.get("/api/logs/stats", params={"filter": "level = 8"}, headers=su)
    assert r.status_code == 200, r.text
    stats = r.json()
    assert sum(s["total"] for s in stats) == 3
    for s in stats:
        assert set(s) == {"date", "total"}
        assert s["date"].endswith(":00:00.000Z")
    assert client.get("/api/logs/stats", headers=su).json()  # unfiltered: every entry


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/logs", {"filter": "(level"}),
        ("/api/logs", {"filter": "nope = 1"}),
        ("/api/logs", {"filter": "length(message) > 1"}),
        ("/api/logs", {"sort": "nope"}),
        ("/api/logs", {"page": "x"}),
        ("/api/logs/stats", {"filter": "(bad"}),
    ],
)
def test_bad_parameters_are_400(client: TestClient, su: H, path: str, params: H) -> None:
    r = client.get(path, params=params, headers=su)
    assert r.status_code == 400, r.text
    assert set(r.json()) == {"status", "message", "data"}


def test_access_is_for_superusers_only(client: TestClient, su: H) -> None:
    for path in ("/api/logs", "/api/logs/stats", "/api/logs/abc"):
        r = client.get(path)
        assert r.status_code == 401
        assert r.json() == {
            "status": 401,
            "message": "The request requires valid record authorization token.",
            "data": {},
        }
    _, user = user_headers(client, su)
    r = client.get("/api/logs", headers=user)
    assert r.status_code == 403
    assert r.json()["message"] == "The authorized record is not allowed to perform this action."
    r = client.get("/api/logs/nope", headers=su)
    assert r.status_code == 404
    assert r.json() == {
        "status": 404,
        "message": "The requested resource wasn't found.",
        "data": {},
    }


def test_settings_are_honoured(client: TestClient, su: H) -> None:
    r = client.get("/api/settings", headers=su)
    assert r.json()["logs"] == {"maxDays": 5, "minLevel": 0, "logIP": True, "logAuthId": False}
    patch_logs(client, su, logIP=False, logAuthId=True)
    client.get("/api/collections/_superusers/records?step=1", headers=su)
    [entry] = by_url(entries(client, su), "step=1")
    assert "userIP" not in entry["data"]
    assert "remoteIP" not in entry["data"]
    assert entry["data"]["auth"] == "_superusers"
    assert len(entry["data"]["authId"]) == 15
    patch_logs(client, su, minLevel=8)
    client.get("/api/health?step=2")
    client.get("/api/collections/missing/records?step=2")
    assert [e["data"]["status"] for e in by_url(entries(client, su), "step=2")] == [404]
    patch_logs(client, su, minLevel=0, maxDays=0)  # off
    client.get("/api/collections/missing/records?step=3")
    assert by_url(entries(client, su), "step=3") == []
    r = client.patch("/api/settings", json={"logs": {"maxDays": -1}}, headers=su)
    assert r.status_code == 400
    assert r.json()["data"]["logs"]["maxDays"]["code"] == (
        "validation_min_greater_equal_than_required"
    )


def test_retention_deletes_entries_older_than_max_days(client: TestClient, su: H) -> None:
    ext = _ext(client)
    now = time.time()
    old = store.make_row(now - 3 * 86400, 0, "GET /old", {"type": "request"})
    older = store.make_row(now - 9 * 86400, 0, "GET /older", {"type": "request"})
    client.portal.call(store.insert, ext.db, [old, older])  # type: ignore[union-attr]
    assert client.portal.call(ext.cleanup) == 1  # type: ignore[union-attr]
    messages = [e["message"] for e in entries(client, su)]
    assert "GET /old" in messages
    assert "GET /older" not in messages
    patch_logs(client, su, maxDays=2)
    assert client.portal.call(ext.cleanup) == 1  # type: ignore[union-attr]
    assert client.portal.call(ext.cleanup) == 0  # type: ignore[union-attr]  (idempotent)
    assert "GET /old" not in [e["message"] for e in entries(client, su)]


def test_nul_characters_are_stored(client: TestClient, su: H) -> None:
    client.get("/api/health?q=a%00b")
    [entry] = by_url(entries(client, su), "/api/health?q=a%00b")
    assert entry["message"] == "GET /api/health?q=a\ufffdb"
    assert orjson.loads(orjson.dumps(entry))  # a valid JSON answer


def test_the_access_log_can_be_turned_off(settings: Settings) -> None:
    quiet = dataclasses.replace(settings, access_log=False)
    with TestClient(create_app(quiet)) as c:
        ext = _ext(c)
        c.get("/api/health")
        c.portal.call(ext.flush)  # type: ignore[union-attr]
        assert ext.writer.stdout.written == 0  # type: ignore[union-attr]
        assert ext.writer.requests.written >= 1  # type: ignore[union-attr]  (the `_logs` entry)


@pytest.mark.parametrize(
    "filter_text",
    [
        "message ~ 'under_score' || message ~ 'a\\\\b'",
        "message ~ '100%'",
        "message !~ data.url",
        "level = 'abc' || level != 'abc'",
        "data.status > 99999999999999999999999 || data.x.y.z = true || created < @now",
        "'a' = 'b' || 1 = 1.0 || true != false || data = ''",
        "level ?= 8 && data.status ?>= 400",
        "id = null && data.missing != null",
    ],
)
def test_odd_filters_are_answered(client: TestClient, su: H, filter_text: str) -> None:
    client.get("/api/collections/missing/records")
    flush(client)
    r = client.get("/api/logs", params={"filter": filter_text}, headers=su)
    assert r.status_code == 200, r.text
    r = client.get("/api/logs/stats", params={"filter": filter_text}, headers=su)
    assert r.status_code == 200, r.text
    r = client.get("/api/logs", params={"sort": "-data.status,@random,data,@rowid"}, headers=su)
    assert r.status_code == 200, r.text


def test_written_and_dropped_entries_are_counted(client: TestClient, su: H) -> None:
    ext = _ext(client)
    registry = client.app.state.services.telemetry.metrics  # type: ignore[attr-defined]
    entries(client, su)
    flush(client)
    full, ext.writer.max_pending = ext.writer.max_pending, 0  # as if full
    client.get("/api/collections/missing/records")
    flush(client)  # dropped
    ext.writer.max_pending = full
    client.get("/api/collections/missing/records")
    flush(client)
    series = registry.metrics["shipyard_log_entries_total"].values
    assert series[("requests", "written")] >= 1
    assert series[("requests", "dropped")] == 1
