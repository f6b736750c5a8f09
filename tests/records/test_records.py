"""Records API through HTTP, on SQLite and PostgreSQL (fixtures in tests/conftest.py)."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

H = dict[str, str]


def make(client: TestClient, su: H, body: dict[str, Any]) -> dict[str, Any]:
    r = client.post("/api/collections", json=body, headers=su)
    assert r.status_code == 200, r.text
    return dict(r.json())


@pytest.fixture
def library(client: TestClient, su: H) -> dict[str, Any]:
    authors = make(
        client,
        su,
        {
            "name": "authors",
            "listRule": "",
            "viewRule": "",
            "fields": [{"name": "name", "type": "text", "required": True}],
        },
    )
    make(
        client,
        su,
        {
            "name": "books",
            "listRule": "",
            "viewRule": "",
            "fields": [
                {"name": "title", "type": "text", "required": True, "max": 50},
                {"name": "price", "type": "number", "min": 0},
                {"name": "pages", "type": "number", "onlyInt": True},
                {"name": "available", "type": "bool"},
                {"name": "genre", "type": "select", "values": ["scifi", "crime", "poetry"]},
                {"name": "tags", "type": "select", "values": ["a", "b", "c"], "maxSelect": 3},
                {"name": "meta", "type": "json"},
                {"name": "released", "type": "date"},
                {"name": "contact", "type": "email"},
                {"name": "site", "type": "url"},
                {
                    "name": "author",
                    "type": "relation",
                    "collectionId": authors["id"],
                    "maxSelect": 1,
                },
                {"name": "blurb", "type": "editor"},
                {"name": "secret", "type": "text", "hidden": True},
            ],
        },
    )
    make(
        client,
        su,
        {
            "name": "reviews",
            "listRule": "",
            "viewRule": "",
            "fields": [
                {
                    "name": "book",
                    "type": "relation",
                    "collectionId": "books",
                    "cascadeDelete": True,
                    "required": True,
                },
                {"name": "stars", "type": "number"},
            ],
        },
    )
    ids = {}
    for name in ("Ann", "Bob"):
        r = client.post("/api/collections/authors/records", json={"name": name}, headers=su)
        assert r.status_code == 200, r.text
        ids[name] = r.json()["id"]
    return ids


def test_create_returns_record_with_system_fields(
    client: TestClient, su: H, library: dict[str, str]
) -> None:
    r = client.post(
        "/api/collections/books/records",
        json={
            "title": "Dune",
            "price": 9.5,
            "pages": 412,
            "available": True,
            "genre": "scifi",
            "tags": ["a", "b"],
            "meta": {"isbn": "x"},
            "released": "1965-08-01T00:00:00Z",
            "author": library["Ann"],
            "secret": "s3",
        },
        headers=su,
    )
    assert r.status_code == 200, r.text
    rec = r.json()
    assert len(rec["id"]) == 15
    assert rec["id"].isalnum()
    assert rec["id"].islower()
    assert rec["collectionName"] == "books"
    assert rec["price"] == 9.5
    assert rec["pages"] == 412
    assert rec["available"] is True
    assert rec["tags"] == ["a", "b"]
    assert rec["meta"] == {"isbn": "x"}
    assert rec["released"] == "1965-08-01 00:00:00.000Z"
    assert rec["created"]
    assert rec["created"] == rec["updated"]
    # hidden fields are returned to superusers only
    assert rec["secret"] == "s3"
    anon = client.get(f"/api/collections/books/records/{rec['id']}").json()
    assert "secret" not in anon
    assert anon["title"] == "Dune"


def test_zero_values_and_client_id(client: TestClient, su: H, library: dict[str, str]) -> None:
    r = client.post(
        "/api/collections/books/records", json={"id": "customid1234567", "title": "T"}, headers=su
    )
    assert r.status_code == 200, r.text
    rec = r.json()
    assert rec["id"] == "customid1234567"
    assert rec["price"] == 0
    assert rec["available"] is False
    assert rec["tags"] == []
    assert rec["genre"] == ""
    assert rec["meta"] is None
    assert rec["author"] == ""
    assert rec["released"] == ""
    dup = client.post(
        "/api/collections/books/records", json={"id": "customid1234567", "title": "T"}, headers=su
    )
    assert dup.status_code == 400
    assert dup.json()["data"]["id"]["code"] == "validation_not_unique"


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({}, "title", "validation_required"),
        ({"title": "x" * 51}, "title", "validation_max_text_constraint"),
        ({"title": "t", "price": -1}, "price", "validation_min_number_constraint"),
        ({"title": "t", "price": "abc"}, "price", "validation_not_a_number"),
        ({"title": "t", "pages": 1.5}, "pages", "validation_only_int_constraint"),
        ({"title": "t", "genre": "cooking"}, "genre", "validation_invalid_value"),
        ({"title": "t", "tags": ["a", "z"]}, "tags", "validation_invalid_value"),
        ({"title": "t", "contact": "not-an-email"}, "contact", "validation_is_email"),
        ({"title": "t", "site": "nope"}, "site", "validation_invalid_url"),
        ({"title": "t", "released": "yesterday-ish"}, "released", "validation_invalid_date"),
        ({"title": "t", "author": "missing00000000"}, "author", "validation_missing_rel_records"),
        ({"title": "t", "available": "maybe"}, "available", "validation_invalid_bool"),
        ({"title": ["t"]}, "title", "validation_invalid_value"),
    ],
)
def test_validation_errors_use_pocketbase_codes(
    client: TestClient, su: H, library: dict[str, str], body: dict[str, Any], field: str, code: str
) -> None:
    r = client.post("/api/collections/books/records", json=body, headers=su)
    assert r.status_code == 400, r.text
    err = r.json()
    assert err["status"] == 400
    assert err["message"]
    assert err["data"][field]["code"] == code
    assert client.get("/api/collections/books/records", headers=su).json()["totalItems"] == 0


def test_update_and_modifiers(client: TestClient, su: H, library: dict[str, str]) -> None:
    rec = client.post(
        "/api/collections/books/records", json={"title": "A", "tags": ["a"], "price": 1}, headers=su
    ).json()
    r = client.patch(
        f"/api/collections/books/records/{rec['id']}",
        json={"title": "B", "tags+": "b", "price+": 2},
        headers=su,
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["title"] == "B"
    assert out["tags"] == ["a", "b"]
    assert out["price"] == 3
    assert out["updated"] >= rec["updated"]
    assert out["created"] == rec["created"]
    r = client.patch(
        f"/api/collections/books/records/{rec['id']}", json={"tags-": ["a"]}, headers=su
    )
    assert r.json()["tags"] == ["b"]
    r = client.patch(
        f"/api/collections/books/records/{rec['id']}", json={"id": "otherid00000000"}, headers=su
    )
    assert r.status_code == 400
    assert r.json()["data"]["id"]["code"] == "validation_pk_change"
    assert (
        client.patch("/api/collections/books/records/nope", json={}, headers=su).status_code == 404
    )


def test_multipart_and_json_payload(client: TestClient, su: H, library: dict[str, str]) -> None:
    r = client.post(
        "/api/collections/books/records",
        data={
            "title": "Form",
            "price": "12.5",
            "available": "true",
            "tags": ["a", "c"],
            "meta": '{"k": [1]}',
            "@jsonPayload": '{"genre": "crime"}',
        },
        headers=su,
    )
    assert r.status_code == 200, r.text
    rec = r.json()
    assert rec["price"] == 12.5
    assert rec["available"] is True
    assert rec["tags"] == ["a", "c"]
    assert rec["meta"] == {"k": [1]}
    assert rec["genre"] == "crime"


def test_bad_bodies(client: TestClient, su: H, library: dict[str, str]) -> None:
    url = "/api/collections/books/records"
    r = client.post(url, content=b"{not json", headers={**su, "content-type": "application/json"})
    assert r.status_code == 400
    assert "invalid JSON" in r.json()["message"]
    r = client.post(url, content=b"[1, 2]", headers={**su, "content-type": "application/json"})
    assert r.status_code == 400
    big = b'{"title": "' + b"x" * (33 * 1024 * 1024) + b'"}'
    r = client.post(url, content=big, headers={**su, "content-type": "application/json"})
    assert r.status_code == 413
    assert r.json()["status"] == 413


def test_list_pagination_and_totals(client: TestClient, su: H, library: dict[str, str]) -> None:
    for i in range(7):
        client.post(
            "/api/collections/books/records", json={"title": f"b{i}", "price": i}, headers=su
        )
    url = "/api/collections/books/records"
    r = client.get(url, params={"perPage": 3, "page": 2, "sort": "price"}).json()
    assert (r["page"], r["perPage"], r["totalItems"], r["totalPages"]) == (2, 3, 7, 3)
    assert [i["title"] for i in r["items"]] == ["b3", "b4", "b5"]
    beyond = client.get(url, params={"perPage": 3, "page": 9}).json()
    assert beyond["items"] == []
    assert beyond["totalItems"] == 7
    skip = client.get(url, params={"perPage": 3, "skipTotal": "1"}).json()
    assert skip["totalItems"] == -1
    assert skip["totalPages"] == -1
    assert len(skip["items"]) == 3
    clamp = client.get(url, params={"perPage": 5000}).json()
    assert clamp["perPage"] == 1000
    assert client.get(url, params={"page": "x"}).status_code == 400
    default = client.get(url).json()
    assert default["perPage"] == 30
    assert [i["title"] for i in default["items"]] == [f"b{i}" for i in range(7)]
    assert client.get(url, params={"unknown": "ignored"}).status_code == 200


def test_sort_and_filter(client: TestClient, su: H, library: dict[str, str]) -> None:
    for i, g in enumerate(["scifi", "crime", "scifi", "poetry"]):
        client.post(
            "/api/collections/books/records",
            json={
                "title": f"t{i}",
                "price": i * 10,
                "genre": g,
                "author": library["Ann" if i % 2 else "Bob"],
            },
            headers=su,
        )
    url = "/api/collections/books/records"
    r = client.get(url, params={"filter": "genre = 'scifi' && price > 5", "sort": "-price"}).json()
    assert [i["title"] for i in r["items"]] == ["t2"]
    r = client.get(url, params={"filter": "author.name = 'Ann'", "sort": "-genre,title"}).json()
    assert [i["title"] for i in r["items"]] == ["t3", "t1"]
    r = client.get(url, params={"sort": "@random"})
    assert r.status_code == 200
    assert r.json()["totalItems"] == 4
    bad = client.get(url, params={"filter": "price >"})
    assert bad.status_code == 400
    assert bad.json()["message"]
    assert client.get(url, params={"filter": "nosuchfield = 1"}).status_code == 400
    assert client.get(url, params={"sort": "nosuchfield"}).status_code == 400
    assert client.get(url, params={"filter": "x" * 3501}).status_code == 400
    # hidden fields cannot be probed by filters or sorts
    assert client.get(url, params={"filter": "secret = 's'"}).status_code == 400


def test_expand_fields_and_back_relations(
    client: TestClient, su: H, library: dict[str, str]
) -> None:
    book = client.post(
        "/api/collections/books/records",
        json={"title": "X", "author": library["Ann"], "blurb": "<p>Hello <b>big</b> world</p>"},
        headers=su,
    ).json()
    for s in (3, 5):
        client.post(
            "/api/collections/reviews/records", json={"book": book["id"], "stars": s}, headers=su
        )
    r = client.get(
        f"/api/collections/books/records/{book['id']}", params={"expand": "author,reviews_via_book"}
    )
    exp = r.json()["expand"]
    assert exp["author"]["name"] == "Ann"
    assert sorted(x["stars"] for x in exp["reviews_via_book"]) == [3, 5]
    nested = client.get("/api/collections/reviews/records", params={"expand": "book.author"}).json()
    assert all(i["expand"]["book"]["expand"]["author"]["name"] == "Ann" for i in nested["items"])
    r = client.get(
        f"/api/collections/books/records/{book['id']}",
        params={"fields": "id,blurb:excerpt(9,true),expand.author.name", "expand": "author"},
    )
    assert r.json() == {
        "id": book["id"],
        "blurb": "Hello big...",
        "expand": {"author": {"name": "Ann"}},
    }
    too_deep = client.get("/api/collections/books/records", params={"expand": "a.b.c.d.e.f.g"})
    assert too_deep.status_code == 400
    assert (
        client.get("/api/collections/books/records", params={"expand": "title"}).status_code == 400
    )


def test_delete_cascades(client: TestClient, su: H, library: dict[str, str]) -> None:
    book = client.post("/api/collections/books/records", json={"title": "X"}, headers=su).json()
    client.post(
        "/api/collections/reviews/records", json={"book": book["id"], "stars": 1}, headers=su
    )
    assert (
        client.delete(f"/api/collections/books/records/{book['id']}", headers=su).status_code == 204
    )
    assert client.get("/api/collections/reviews/records").json()["totalItems"] == 0
    assert client.get(f"/api/collections/books/records/{book['id']}").status_code == 404
    assert (
        client.delete(f"/api/collections/books/records/{book['id']}", headers=su).status_code == 404
    )


def test_non_cascading_relation_is_cleared(
    client: TestClient, su: H, library: dict[str, str]
) -> None:
    book = client.post(
        "/api/collections/books/records", json={"title": "X", "author": library["Bob"]}, headers=su
    ).json()
    assert (
        client.delete(f"/api/collections/authors/records/{library['Bob']}", headers=su).status_code
        == 204
    )
    assert client.get(f"/api/collections/books/records/{book['id']}").json()["author"] == ""


def test_access_rules_before_auth_collections(
    client: TestClient, su: H, library: dict[str, str]
) -> None:
    url = "/api/collections/books/records"
    # create/update/delete rules are null: superusers only, 403 like PocketBase
    r = client.post(url, json={"title": "x"})
    assert r.status_code == 403
    assert r.json()["message"] == "Only superusers can perform this action."
    rec = client.post(url, json={"title": "x"}, headers=su).json()
    assert client.patch(f"{url}/{rec['id']}", json={"title": "y"}).status_code == 403
    assert client.delete(f"{url}/{rec['id']}").status_code == 403
    # an invalid token is treated as anonymous, a tampered one too
    assert (
        client.post(
            url, json={"title": "x"}, headers={"Authorization": "Bearer garbage"}
        ).status_code
        == 403
    )
    token = su["Authorization"]
    tampered = token[:-2] + ("aa" if token[-2:] != "aa" else "bb")
    assert (
        client.post(url, json={"title": "x"}, headers={"Authorization": tampered}).status_code
        == 403
    )
    assert (
        client.post(
            url, json={"title": "x"}, headers={"Authorization": "Bearer " + token}
        ).status_code
        == 200
    )
    # superuser-only collection (listRule null)
    make(client, su, {"name": "private", "fields": [{"name": "n", "type": "text"}]})
    assert client.get("/api/collections/private/records").status_code == 403
    assert client.get("/api/collections/private/records", headers=su).status_code == 200


def test_unknown_collection_and_routes(client: TestClient) -> None:
    r = client.get("/api/collections/nope/records")
    assert r.status_code == 404
    assert r.json() == {
        "status": 404,
        "message": "Missing collection context.",
        "data": {},
    }
    assert client.get("/api/nothing-here").status_code == 404
    assert client.get("/api/collections/nope/records/abc").status_code == 404


@pytest.mark.parametrize(
    ("method", "url_suffix", "body"),
    [
        ("get", "?page=806346294223114074062848", None),
        ("post", "", {"title": "a\u0000b"}),
        ("post", "", {"title": "t", "released": 1e20}),
        ("post", "", {"title": "t", "author": "a\u0000"}),
    ],
)
def test_hostile_values_are_4xx(
    client: TestClient, su: H, library: dict[str, str], method: str, url_suffix: str, body: Any
) -> None:
    r = client.request(method, "/api/collections/books/records" + url_suffix, json=body, headers=su)
    assert 200 <= r.status_code < 500, r.text
    if body is not None:
        assert r.status_code == 400


def test_hostile_modifiers_are_400(client: TestClient, su: H, library: dict[str, str]) -> None:
    rec = client.post("/api/collections/books/records", json={"title": "A"}, headers=su).json()
    url = f"/api/collections/books/records/{rec['id']}"
    for body in (
        {"price": "abc", "price+": 1},
        {"+tags": [{}]},
        {"tags+": [[1]]},
        {"price+": True},
    ):
        r = client.patch(url, json=body, headers=su)
        assert r.status_code == 400, (body, r.text)
    assert client.get("/api/collections/books/records/a%00b", headers=su).status_code in (400, 404)
