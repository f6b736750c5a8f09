"""The ingestion endpoints as Sentry SDKs meet them: the legacy store endpoint, the ways a
key is sent, compressed bodies, the quota (429), the size limits (413, zip bombs too),
refusals (401, 403, 404, 400 on garbage, never a 500), CORS for any origin, scrubbing,
and Shipyard's own 500s in the built-in project."""

from __future__ import annotations

import gzip
import uuid
import zlib
from typing import Any

import brotli
import httpx
import orjson

from tests.helpers.errors import Api
from tests.helpers.servers import Server
from tests.helpers.wait import wait_until


def _envelope(event: dict[str, Any], dsn: str | None = None) -> bytes:
    header: dict[str, Any] = {"event_id": event["event_id"]}
    if dsn:
        header["dsn"] = dsn
    payload = orjson.dumps(event)
    item = orjson.dumps({"type": "event", "length": len(payload)})
    session = b'{"type":"session"}\n{"sid":"x","status":"ok"}\n'
    return orjson.dumps(header) + b"\n" + item + b"\n" + payload + b"\n" + session


def _event(message: str = "it broke", **extra: Any) -> dict[str, Any]:
    return {"event_id": uuid.uuid4().hex, "message": message, "level": "error", **extra}


def _auth(key: str) -> dict[str, str]:
    return {"X-Sentry-Auth": f"Sentry sentry_version=7, sentry_client=test/1.0, sentry_key={key}"}


def test_store_and_every_way_of_sending_the_key(srv: Server, api: Api) -> None:
    p = api.project("keys")
    key, base = p["publicKey"], f"{srv.url}/api/{p['id']}"
    ids = []
    # legacy store, header auth
    e = _event("via store")
    r = httpx.post(f"{base}/store/", json=e, headers=_auth(key))
    assert r.status_code == 200
    assert r.json() == {"id": e["event_id"]}
    ids.append(e["event_id"])
    # envelope, key in the query (as browsers send it), deflate body
    e = _event("via query")
    r = httpx.post(f"{base}/envelope/?sentry_key={key}&sentry_version=7",
                   content=zlib.compress(_envelope(e)), headers={"Content-Encoding": "deflate"})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json() == {"id": e["event_id"]}
    # envelope, key only in the envelope header's dsn, gzip
    e = _event("via dsn")
    r = httpx.post(f"{base}/envelope/", content=gzip.compress(_envelope(e, p["dsn"])),
                   headers={"Content-Encoding": "gzip"})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json() == {"id": e["event_id"]}
    # the same event again (an SDK retry) is stored and counted once
    r = httpx.post(f"{base}/envelope/", content=brotli.compress(_envelope(e)),
                   headers={**_auth(key), "Content-Encoding": "br"})  # fmt: skip
    assert r.status_code == 200
    # an envelope without an event (a transaction, sessions) is accepted and dropped
    r = httpx.post(f"{base}/envelope/", headers=_auth(key),
                   content=b'{"event_id":"' + uuid.uuid4().hex.encode() + b'"}\n{"type":"transaction"}\n{}\n')  # fmt: skip
    assert r.status_code == 200
    assert "id" in r.json()
    issues = api.wait_count(p["id"], 3)
    assert sorted(i["title"] for i in issues) == ["via dsn", "via query", "via store"]
    assert all(i["count"] == 1 for i in issues)


def test_refusals_are_4xx(srv: Server, api: Api) -> None:
    p = api.project("refusals")
    other = api.project("refusals-other")
    key, base = p["publicKey"], f"{srv.url}/api/{p['id']}"
    body = _envelope(_event())
    assert httpx.post(f"{base}/envelope/", content=body).status_code == 401
    assert httpx.post(f"{base}/envelope/", content=body, headers=_auth("nope")).status_code == 403
    # a key of another project
    r = httpx.post(f"{srv.url}/api/{other['id']}/envelope/", content=body, headers=_auth(key))
    assert r.status_code == 403
    assert (
        httpx.post(
            f"{srv.url}/api/notanumber/envelope/", content=body, headers=_auth(key)
        ).status_code
        == 404
    )
    assert (
        httpx.post(
            f"{srv.url}/api/99999999999999999999/store/", json={}, headers=_auth(key)
        ).status_code
        == 404
    )
    garbage = [
        (b"", {}),
        (b"\x00\xff\xfe not json", {}),
        (b'{"event_id":"x"}\n{"type":"event","length":999}\n{}', {}),
        (b'{"event_id":"x"}\n{"type":"event"}\n[1,2]', {}),
        (b"not gzip at all", {"Content-Encoding": "gzip"}),
        (b"not brotli", {"Content-Encoding": "br"}),
        (b"{}", {"Content-Encoding": "compress"}),
        (gzip.compress(b"x" * 1000)[:30], {"Content-Encoding": "gzip"}),
    ]
    for content, headers in garbage:
        r = httpx.post(f"{base}/envelope/", content=content, headers={**_auth(key), **headers})
        assert r.status_code == 400, (content[:40], r.status_code, r.text)
        assert r.json()["status"] == 400
    many = b'{"event_id":"x"}\n' + b'{"type":"event"}\n{"message":"m"}\n' * 101
    r = httpx.post(f"{base}/envelope/", content=many, headers=_auth(key))
    assert r.status_code == 400, r.text
    r = httpx.post(f"{base}/store/", content=b"[not an event", headers=_auth(key))
    assert r.status_code == 400


def test_size_limits_and_zip_bombs(srv: Server, api: Api) -> None:
    p = api.project("sizes")
    key, base = p["publicKey"], f"{srv.url}/api/{p['id']}"
    big = _envelope(_event("x" * 400_000))  # over SHIPYARD_ERRORS_MAX_BODY_SIZE as sent
    assert httpx.post(f"{base}/envelope/", content=big, headers=_auth(key)).status_code == 413
    # small when compressed, over SHIPYARD_ERRORS_MAX_UNCOMPRESSED_SIZE inflated
    bomb = _envelope(_event("y" * 5_000_000))
    for enc, data in (("gzip", gzip.compress(bomb)), ("br", brotli.compress(bomb)),
                      ("deflate", zlib.compress(bomb))):  # fmt: skip
        assert len(data) < 300_000
        r = httpx.post(
            f"{base}/envelope/", content=data, headers={**_auth(key), "Content-Encoding": enc}
        )
        assert r.status_code == 413, (enc, r.text)
    assert api.issues(p["id"]) == []


def test_quota_answers_429_with_retry_after(srv: Server, api: Api) -> None:
    limit = 3
    p = api.project("quota", rateLimit=limit)
    key, base = p["publicKey"], f"{srv.url}/api/{p['id']}"
    statuses = []
    refused = None
    # 2 x limit + 1 events span at most two quota minutes: one of them goes over
    for i in range(2 * limit + 1):
        r = httpx.post(f"{base}/envelope/", content=_envelope(_event(f"q {i}")), headers=_auth(key))
        statuses.append(r.status_code)
        if r.status_code == 429 and refused is None:
            refused = r
    assert refused is not None, statuses
    assert set(statuses) == {200, 429}
    retry = int(refused.headers["Retry-After"])
    assert 1 <= retry <= 60
    assert refused.headers["X-Sentry-Rate-Limits"] == f"{retry}:error;default:project"
    stored = sum(i["count"] for i in api.issues(p["id"]))
    assert stored == statuses.count(200) <= 2 * limit


def test_cors_lets_any_origin_report(srv: Server, api: Api) -> None:
    p = api.project("cors")
    url = f"{srv.url}/api/{p['id']}/envelope/?sentry_key={p['publicKey']}"
    origin = {"Origin": "http://app.elsewhere.example"}
    pre = httpx.options(url, headers={**origin, "Access-Control-Request-Method": "POST",
                                      "Access-Control-Request-Headers": "content-type,x-sentry-auth"})  # fmt: skip
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-origin"] == "*"
    assert "x-sentry-auth" in pre.headers["access-control-allow-headers"]
    assert "POST" in pre.headers["access-control-allow-methods"]
    r = httpx.post(url, content=_envelope(_event("from a browser")), headers=origin)
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "*"
    assert "x-sentry-rate-limits" in r.headers["access-control-expose-headers"]
    # the rest of the API keeps SHIPYARD_CORS_ORIGINS (one other origin here)
    r = httpx.get(f"{srv.url}/api/health", headers=origin)
    assert "access-control-allow-origin" not in r.headers
    pre = httpx.options(
        f"{srv.url}/api/errors", headers={**origin, "Access-Control-Request-Method": "GET"}
    )
    assert "access-control-allow-origin" not in pre.headers


def test_scrubbing_before_storage(srv: Server, api: Api) -> None:
    p = api.project("scrub")
    secrets_ = ["s3cr3t-pass", "Bearer abc.def.ghi", "sessionid=zzz999", "tok-123456", "ak-777"]
    e = _event(
        "scrub me",
        request={
            "url": "https://app.example/login?next=/&token=tok-123456",
            "method": "POST",
            "headers": {"Authorization": "Bearer abc.def.ghi", "Cookie": "sessionid=zzz999",
                        "User-Agent": "test-agent"},
            "cookies": "sessionid=zzz999",
            "query_string": "next=/&token=tok-123456",
            "data": {"username": "ann", "password": "s3cr3t-pass"},
        },
        extra={"config": {"nested": [{"api_key": "ak-777", "region": "eu"}]}},
        user={"id": "u1", "email": "ann@example.com"},
    )  # fmt: skip
    r = httpx.post(f"{srv.url}/api/{p['id']}/store/", json=e, headers=_auth(p["publicKey"]))
    assert r.status_code == 200
    [issue] = api.wait_count(p["id"], 1)
    stored = api.get(f"/api/errors/{issue['id']}/events/{e['event_id']}")["data"]
    text = orjson.dumps(stored).decode()
    for s in secrets_:
        assert s not in text, s
    req = stored["request"]
    assert req["headers"]["Authorization"] == "[Filtered]"
    assert req["headers"]["Cookie"] == "[Filtered]"
    assert req["headers"]["User-Agent"] == "test-agent"
    assert req["data"] == {"username": "ann", "password": "[Filtered]"}
    assert req["query_string"] == "next=/&token=[Filtered]"
    assert stored["extra"]["config"]["nested"][0] == {"api_key": "[Filtered]", "region": "eu"}
    assert issue["users"] == 1


def test_a_500_in_shipyard_is_recorded_in_the_builtin_project(srv: Server, api: Api) -> None:
    [builtin] = [p for p in api.get("/api/errors/projects")["items"] if p["name"] == "shipyard"]
    assert builtin["builtin"] is True
    for n in (1, 2):
        r = httpx.get(f"{srv.url}/api/test-boom/{n}")
        assert r.status_code == 500

    def recorded() -> list[dict[str, Any]]:
        found = api.issues(builtin["id"], q="ZeroDivisionError")
        return found if found and found[0]["count"] >= 2 else []

    [issue] = wait_until(recorded, timeout=30, what="the 500s recorded")
    assert issue["count"] == 2
    assert issue["title"] == "ZeroDivisionError: division by zero"
    assert issue["culprit"] == "tests.helpers.boom_ext in _divide"
    event = api.get(f"/api/errors/{issue['id']}/events")["items"][0]["data"]
    assert event["contexts"]["shipyard"] == {
        "kind": "request",
        "method": "GET",
        "route": "/api/test-boom/{n}",
    }
    frames = event["exception"]["values"][-1]["stacktrace"]["frames"]
    assert frames[-1]["function"] == "_divide"
    assert frames[-1]["lineno"] > 0
    # the built-in project cannot be deleted
    r = httpx.delete(f"{srv.url}/api/errors/projects/{builtin['id']}", headers=api.headers)
    assert r.status_code == 400
