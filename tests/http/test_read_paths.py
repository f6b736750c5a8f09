"""The two read paths answer alike: plain GET list/view go through the gateway (http/
gateway.py), everything else through the Starlette routes (records/routes.py). Both parse
the query into the same `ListQuery`/`ViewQuery` and build the same `RequestContext`, so every
limit gives the same status and body on either path, and rules see the same request."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from shipyard.http.gateway import Gateway
from shipyard.settings import Settings

H = dict[str, str]
HUGE = "9" * 5000
SERVED: list[int] = []


@pytest.fixture
def paths(
    client: TestClient, su: H, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[TestClient, TestClient]]:
    """(through the gateway, straight to the Starlette routes) over one running app; every
    read the gateway serves itself is counted in `SERVED`."""
    for body in (
        {
            "name": "rp_notes",
            "listRule": "",
            "viewRule": "@request.headers.x_pass = 'open' || @request.query.pass = 'open'",
            "fields": [
                {"name": "title", "type": "text"},
                {"name": "secret", "type": "text", "hidden": True},
            ],
        },
    ):
        r = client.post("/api/collections", json=body, headers=su)
        assert r.status_code == 200, r.text
    for i in range(3):
        r = client.post(
            "/api/collections/rp_notes/records", json={"title": f"n{i}", "secret": "s"}, headers=su
        )
        assert r.status_code == 200, r.text
    read = Gateway._read

    async def counted(self: Gateway, *args: Any) -> None:
        SERVED.append(1)
        await read(self, *args)

    monkeypatch.setattr(Gateway, "_read", counted)
    SERVED.clear()
    inner = client.app.app  # type: ignore[attr-defined]  # the Starlette app the gateway wraps
    return client, TestClient(inner)


def _both(
    paths: tuple[TestClient, TestClient], url: str, params: dict[str, str], h: H | None = None
) -> tuple[httpx.Response, httpx.Response]:
    gateway, starlette = paths
    before = len(SERVED)
    via_gateway = gateway.get(url, params=params, headers=h)
    assert len(SERVED) == before + 1  # served by the gateway's read path itself
    via_starlette = starlette.get(url, params=params, headers=h)  # no gateway in front
    assert len(SERVED) == before + 1
    return via_gateway, via_starlette


def _same(a: httpx.Response, b: httpx.Response) -> dict[str, Any]:
    assert (a.status_code, a.json()) == (b.status_code, b.json())
    return dict(a.json())


LIST = "/api/collections/rp_notes/records"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"page": "x"}, "Invalid page parameter: expected an integer, got 'x'."),
        ({"page": HUGE}, "Invalid page parameter: expected an integer from"),
        ({"perPage": "1_0"}, "Invalid perPage parameter: expected an integer, got '1_0'."),
        ({"filter": "title = 'x' || " * 300}, "Invalid filter: the filter is too long ("),
        ({"expand": "a.b.c.d.e.f.g"}, "Invalid expand 'a.b.c.d.e.f.g': at most 6 levels"),
        ({"expand": "a-b"}, "Invalid expand 'a-b': 'a-b' is not a field name."),
        ({"fields": "title:nope"}, "Invalid fields parameter: unknown modifier in 'title:nope'."),
        ({"sort": "nope"}, "Invalid sort"),
        ({"cursor": "garbage"}, "Invalid cursor"),
    ],
)
def test_a_limit_is_the_same_400_on_both_paths(
    paths: tuple[TestClient, TestClient], params: dict[str, str], message: str
) -> None:
    body = _same(*_both(paths, LIST, params))
    assert body["status"] == 400, body
    assert body["message"].startswith(message), body
    # a HEAD is never the gateway's: the Starlette route refuses it alike
    assert paths[0].head(LIST, params=params).status_code == 400


def test_per_page_over_the_maximum_is_clamped_alike(
    paths: tuple[TestClient, TestClient], settings: Settings
) -> None:
    body = _same(*_both(paths, LIST, {"perPage": str(settings.max_per_page + 1), "sort": "title"}))
    assert body["perPage"] == settings.max_per_page
    assert [i["title"] for i in body["items"]] == ["n0", "n1", "n2"]
    assert all("secret" not in i for i in body["items"])


def test_view_limits_and_request_values_in_rules_alike(
    paths: tuple[TestClient, TestClient],
) -> None:
    rid = _same(*_both(paths, LIST, {"perPage": "1"}))["items"][0]["id"]
    one = f"{LIST}/{rid}"
    body = _same(*_both(paths, one, {"expand": "a.b.c.d.e.f.g"}, {"x-pass": "open"}))
    assert body["status"] == 400
    # `@request.headers.*` and `@request.query.*` reach the rule on either path
    assert _same(*_both(paths, one, {}, {"x-pass": "open"}))["id"] == rid
    assert _same(*_both(paths, one, {"pass": "open"}))["id"] == rid
    assert _same(*_both(paths, one, {}, {"x-pass": "shut"}))["status"] == 404
