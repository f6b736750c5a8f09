"""Input that used to break things for everyone (issue 10, points 10 and 11), through HTTP on
both engines.

* A JSON value holding U+0000 (`{"x": "\\u0000"}`) is stored and read back as sent, and one
  such record no longer makes every filter or rule reading that JSON field fail (PostgreSQL's
  JSONB cannot hold U+0000; comparisons now read the value without it).
* Every numeric request parameter outside its range is a 400 in PocketBase's error shape,
  never a 500: `fields=…:excerpt(n)`, `page`, `perPage`, the values inside a pagination
  cursor, the collections list, the jobs list, `db/advise?top=`.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest

from tests.helpers.security import SharedApp

INT64_MAX = 2**63 - 1
HUGE = "9" * 5000  # past Python's 4,300-digit int() limit
RANGE = f"expected an integer from {-(2**63)} to {INT64_MAX}."


@dataclass
class World:
    app: SharedApp
    nul: str  # id of the record holding U+0000
    nul_in_text: str  # holding a U+0000 inside a longer string
    literal: str  # holding the six characters \u0000 (a backslash, not a NUL)
    plain: str
    private: str  # meta.public = false: the list rule hides it


def _build(app: SharedApp) -> World:
    # the rules read a JSON path: one hostile record must not break them for anyone
    app.collection(
        {
            "name": "hv_docs",
            "listRule": "meta.public = true",
            "viewRule": "meta.public = true",
            "createRule": "",
            "fields": [{"name": "title", "type": "text"}, {"name": "meta", "type": "json"}],
        }
    )

    def create(title: str, meta: dict[str, Any]) -> str:
        r = app.client.post("/api/collections/hv_docs/records", json={"title": title, "meta": meta})
        assert r.status_code == 200, r.text
        assert r.json()["meta"] == meta  # stored and answered exactly as sent
        return str(r.json()["id"])

    return World(
        app,
        nul=create("nul", {"public": True, "x": "\u0000"}),
        nul_in_text=create("nul in text", {"public": True, "x": "a\u0000b", "y": "k"}),
        literal=create("literal", {"public": True, "x": "\\u0000"}),
        plain=create("plain", {"public": True, "x": "ok", "y": "k"}),
        private=create("private", {"public": False, "x": "ok"}),
    )


@pytest.fixture(scope="module")
def world(shared: SharedApp) -> World:
    return shared.world("hostile_values", _build)


def _titles(w: World, filt: str, h: dict[str, str] | None = None) -> list[str]:
    r = w.app.client.get(
        "/api/collections/hv_docs/records",
        params={"filter": filt, "sort": "title", "perPage": "100"},
        headers=h,
    )
    assert r.status_code == 200, r.text
    return [i["title"] for i in r.json()["items"]]


# ---------------------------------------------------------------- U+0000 in JSON


def test_a_nul_in_json_is_stored_and_read_back(world: World) -> None:
    for rid, x in (
        (world.nul, "\u0000"),
        (world.nul_in_text, "a\u0000b"),
        (world.literal, "\\u0000"),
    ):
        r = world.app.client.get(f"/api/collections/hv_docs/records/{rid}")
        assert r.status_code == 200, r.text
        assert r.json()["meta"]["x"] == x


def test_list_rule_on_a_json_path_still_works_for_everyone(world: World) -> None:
    """Anonymous and superuser lists, and a view, through a rule reading `meta.public`."""
    everyone = ["literal", "nul", "nul in text", "plain"]
    assert _titles(world, "") == everyone
    assert _titles(world, "", world.app.su) == sorted([*everyone, "private"])
    r = world.app.client.get(f"/api/collections/hv_docs/records/{world.private}")
    assert r.status_code == 404


def test_filters_on_the_field_still_work_for_everyone(world: World) -> None:
    assert _titles(world, 'meta.x = "ok"') == ["plain"]
    assert _titles(world, 'meta.y = "k"') == ["nul in text", "plain"]
    assert _titles(world, 'meta.x ~ "o"') == ["plain"]
    assert _titles(world, 'meta.x != "ok"') == ["literal", "nul", "nul in text"]
    # the six characters \u0000 stay six characters: only a real U+0000 is set aside
    assert _titles(world, 'meta.x = "\\u0000"') == ["literal"]
    # a string that is only U+0000 compares as empty on both engines
    assert _titles(world, 'meta.x = ""') == ["nul"]
    assert _titles(world, "meta.x = null") == []


def test_sorting_by_the_field_still_works(world: World) -> None:
    r = world.app.client.get(
        "/api/collections/hv_docs/records", params={"sort": "meta.y,title", "perPage": "100"}
    )
    assert r.status_code == 200, r.text
    assert [i["title"] for i in r.json()["items"]][-2:] == ["nul in text", "plain"]


# ---------------------------------------------------------------- numbers out of range


def _bad(r: httpx.Response, message: str) -> None:
    assert r.status_code == 400, r.text
    assert r.json() == {"status": 400, "message": message, "data": {}}


def _get(w: World, params: dict[str, str], path: str = "/api/collections/hv_docs/records") -> Any:
    return w.app.client.get(path, params=params, headers=w.app.su)


def test_excerpt_length_out_of_range_is_400(world: World) -> None:
    what = "Invalid fields parameter (excerpt length)"
    _bad(
        _get(world, {"fields": f"title:excerpt({HUGE})"}),
        f"{what}: expected an integer from 1 to {INT64_MAX}.",
    )
    _bad(
        _get(world, {"fields": f"title:excerpt({INT64_MAX + 1},true)"}),
        f"{what}: expected an integer from 1 to {INT64_MAX}.",
    )
    _bad(
        _get(world, {"fields": "title:excerpt(0)"}),
        f"{what}: expected an integer from 1 to {INT64_MAX}.",
    )
    r = _get(world, {"fields": f"title:excerpt({INT64_MAX})", "filter": 'title = "plain"'})
    assert r.status_code == 200, r.text
    assert r.json()["items"] == [{"title": "plain"}]
    r = _get(world, {"fields": "title:excerpt(3,true)", "filter": 'title = "plain"'})
    assert r.json()["items"] == [{"title": "pla..."}]


@pytest.mark.parametrize("name", ["page", "perPage"])
def test_page_numbers_out_of_range_are_400(world: World, name: str) -> None:
    for raw in (HUGE, str(INT64_MAX + 1), str(-(2**63) - 1)):
        _bad(_get(world, {name: raw}), f"Invalid {name} parameter: {RANGE}")
    _bad(_get(world, {name: "1_0"}), f"Invalid {name} parameter: expected an integer, got '1_0'.")
    # inside 64 bits PocketBase serves the request (clamped); so does Shipyard
    r = _get(world, {name: str(INT64_MAX)})
    assert r.status_code == 200, r.text


def test_collections_list_page_out_of_range_is_400(world: World) -> None:
    for name in ("page", "perPage"):
        _bad(_get(world, {name: HUGE}, "/api/collections"), f"Invalid {name} parameter: {RANGE}")


def test_jobs_and_advice_numbers_out_of_range_are_400(world: World) -> None:
    _bad(
        _get(world, {"page": HUGE}, "/api/jobs"),
        "Invalid page parameter: expected an integer from 1 to 1000000.",
    )
    _bad(
        _get(world, {"top": HUGE}, "/api/db/advise"),
        "Invalid top parameter: expected an integer from 1 to 200.",
    )


def _cursor(sort: str, values: str) -> str:
    return base64.urlsafe_b64encode(f"[{orjson.dumps(sort).decode()},[{values}]]".encode()).decode()


@pytest.mark.parametrize(
    ("sort", "values"),
    [
        ("title", "5, 1"),  # a number where the column holds text
        ("title", '"a", "x"'),  # text where the insertion order (an integer) goes
        ("title", f'"a", {INT64_MAX + 1}'),  # past 64 bits
        ("title", '"a", true'),
        ("", "1.5"),
    ],
)
def test_forged_cursor_values_are_400(world: World, sort: str, values: str) -> None:
    r = world.app.client.get(
        "/api/collections/hv_docs/records", params={"cursor": _cursor(sort, values), "sort": sort}
    )
    _bad(r, "Invalid cursor: pass back the nextCursor of the previous page with the same sort.")
