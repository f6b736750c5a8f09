"""`SHIPYARD_MAX_SORT_FIELDS` bounds every listing's sort the same way: offset pages,
cursor pages, anonymous or superuser, served by the read gateway with its response cache
on. Offset pages used to ignore the setting (and refuse past a fixed 8 instead)."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from shipyard.settings import Settings, load_settings

H = dict[str, str]
URL = "/api/collections/items/records"
FIELDS = "abcdefghijk"


@pytest.fixture
def settings(database_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    limit = getattr(request, "param", 3)
    return load_settings(
        env={"SHIPYARD_MAX_SORT_FIELDS": str(limit)},
        data_dir=str(tmp_path / "data"),
        database_url=database_url,
    )


@pytest.fixture
def items(client: TestClient, su: H) -> None:
    r = client.post(
        "/api/collections",
        json={
            "name": "items",
            "listRule": "",
            "fields": [{"name": f, "type": "number"} for f in FIELDS],
        },
        headers=su,
    )
    assert r.status_code == 200, r.text
    for i in range(3):
        r = client.post(URL, json={f: (i * (k + 1)) % 3 for k, f in enumerate(FIELDS)}, headers=su)
        assert r.status_code == 200, r.text


def _sort(n: int) -> str:
    return ",".join(f"-{f}" if i % 2 else f for i, f in enumerate(FIELDS[:n]))


@pytest.mark.parametrize("paging", ["", "&cursor=", "&perPage=1&page=2&skipTotal=1"])
def test_sort_beyond_the_limit_is_the_same_400_everywhere(
    client: TestClient, items: None, su: H, paging: str
) -> None:
    expected = {
        "status": 400,
        "message": "Invalid sort: too many sort fields (4, max 3) at position 0.",
        "data": {},
    }
    for headers in ({}, su):
        for _ in range(2):  # a refusal is never served from the response cache
            r = client.get(f"{URL}?sort={_sort(4)}{paging}", headers=headers)
            assert r.status_code == 400, r.text
            assert r.json() == expected
    r = client.get(f"{URL}?sort={_sort(3)}{paging}")
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("settings", [10], indirect=True)
def test_a_raised_limit_allows_more_sort_fields(client: TestClient, items: None) -> None:
    for paging in ("", "&cursor="):
        r = client.get(f"{URL}?sort={_sort(10)}{paging}")
        assert r.status_code == 200, r.text
        assert len(r.json()["items"]) == 3
        r = client.get(f"{URL}?sort={_sort(11)}{paging}")
        assert r.status_code == 400, r.text
        assert (
            r.json()["message"] == "Invalid sort: too many sort fields (11, max 10) at position 0."
        )
