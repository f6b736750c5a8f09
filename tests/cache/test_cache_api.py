"""The response cache through the HTTP API: hits, invalidation by every kind of write, keys
per asker, ETag/304, Cache-Control, bypasses — embedded (SQLite, process-local versions),
SQLite + Redis, and PostgreSQL + Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from starlette.testclient import TestClient

from shipyard.app import create_app
from shipyard.settings import load_settings
from tests.helpers.servers import SUPERUSER, fresh_pg_database

H = dict[str, str]
PW = "secret-pass-1"


def _client(request: pytest.FixtureRequest, tmp_path: Path, mode: str, **extra: Any) -> Any:
    db_url = ""
    if mode.startswith("postgres"):
        db_url = fresh_pg_database(request.getfixturevalue("pg_admin_url"))
    redis = request.getfixturevalue("redis_url") if mode.endswith("+redis") else ""
    settings = load_settings(
        env={},
        data_dir=str(tmp_path / "data"),
        database_url=db_url,
        redis_url=redis,
        redis_namespace="t" + uuid.uuid4().hex,
        **extra,
    )
    return TestClient(create_app(settings))


def _login(c: TestClient, collection: str, identity: str, password: str) -> H:
    r = c.post(
        f"/api/collections/{collection}/auth-with-password",
        json={"identity": identity, "password": password},
    )
    assert r.status_code == 200, r.text
    return {"Authorization": r.json()["token"]}


@pytest.fixture(params=["sqlite", "sqlite+redis", "postgres+redis"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    with _client(request, tmp_path, request.param) as c:
        from shipyard.auth import superusers

        svc = c.app.state.services
        c.portal.call(superusers.create, svc, *SUPERUSER)
        su = _login(c, "_superusers", *SUPERUSER)
        r = c.post(
            "/api/collections",
            json={
                "name": "users",
                "type": "auth",
                "createRule": "",
                "listRule": "",
                "viewRule": "",
                "fields": [{"name": "name", "type": "text"}, {"name": "role", "type": "text"}],
            },
            headers=su,
        )
        assert r.status_code == 200, r.text
        users = r.json()
        r = c.post(
            "/api/collections",
            json={
                "name": "posts",
                "listRule": "",
                "viewRule": "",
                "fields": [
                    {"name": "title", "type": "text"},
                    {"name": "author", "type": "relation", "collectionId": users["id"]},
                ],
            },
            headers=su,
        )
        assert r.status_code == 200, r.text
        r = c.post(
            "/api/collections",
            json={
                "name": "notes",
                "listRule": "owner = @request.auth.id",
                "viewRule": "owner = @request.auth.id",
                "fields": [
                    {"name": "owner", "type": "relation", "collectionId": users["id"]},
                    {"name": "text", "type": "text"},
                    {"name": "secret", "type": "text", "hidden": True},
                ],
            },
            headers=su,
        )
        assert r.status_code == 200, r.text
        out: dict[str, Any] = {"c": c, "su": su}
        for name in ("ann", "bob"):
            r = c.post(
                "/api/collections/users/records",
                json={"email": f"{name}@example.com", "password": PW, "passwordConfirm": PW},
            )
            assert r.status_code == 200, r.text
            out[name] = {
                "id": r.json()["id"],
                "h": _login(c, "users", f"{name}@example.com", PW),
            }
            r = c.post(
                "/api/collections/notes/records",
                json={"owner": r.json()["id"], "text": f"{name}'s note"},
                headers=su,
            )
            assert r.status_code == 200, r.text
        r = c.post(
            "/api/collections/posts/records",
            json={"title": "first", "author": out["ann"]["id"]},
            headers=su,
        )
        assert r.status_code == 200, r.text
        out["post"] = r.json()["id"]
        yield out


def _get(c: TestClient, url: str, headers: H | None = None) -> tuple[str, Any]:
    r = c.get(url, headers=headers or {})
    assert r.status_code == 200, r.text
    return r.headers["x-shipyard-cache"], r.json()


def test_second_read_is_a_hit_and_a_write_invalidates(app: dict[str, Any]) -> None:
    c, post = app["c"], app["post"]
    for url in ("/api/collections/posts/records", f"/api/collections/posts/records/{post}"):
        first = _get(c, url)
        assert first[0] == "miss"
        assert _get(c, url) == ("hit", first[1])
    r = c.patch(
        f"/api/collections/posts/records/{post}", json={"title": "second"}, headers=app["su"]
    )
    assert r.status_code == 200
    outcome, body = _get(c, "/api/collections/posts/records")
    assert outcome == "miss"
    assert body["items"][0]["title"] == "second"
    outcome, body = _get(c, f"/api/collections/posts/records/{post}")
    assert outcome == "miss"
    assert body["title"] == "second"
    c.post("/api/collections/posts/records", json={"title": "third"}, headers=app["su"])
    assert _get(c, "/api/collections/posts/records")[1]["totalItems"] == 2
    c.delete(f"/api/collections/posts/records/{post}", headers=app["su"])
    assert c.get(f"/api/collections/posts/records/{post}").status_code == 404
    assert _get(c, "/api/collections/posts/records")[1]["totalItems"] == 1


def test_etag_and_not_modified(app: dict[str, Any]) -> None:
    c, url = app["c"], "/api/collections/posts/records"
    r = c.get(url)
    etag = r.headers["etag"]
    again = c.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert c.get(url, headers={"If-None-Match": '"other"'}).status_code == 200
    c.patch(f"{url}/{app['post']}", json={"title": "changed"}, headers=app["su"])
    r = c.get(url, headers={"If-None-Match": etag})
    assert r.status_code == 200
    assert r.headers["etag"] != etag


def test_cache_control_public_and_private(app: dict[str, Any]) -> None:
    c = app["c"]
    r = c.get("/api/collections/posts/records")
    assert r.headers["cache-control"] == "public, no-cache"
    r = c.get("/api/collections/posts/records", headers=app["ann"]["h"])
    assert r.headers["cache-control"] == "private, no-cache"
    assert "Authorization" in r.headers["vary"]


def test_askers_never_share_entries(app: dict[str, Any]) -> None:
    c = app["c"]
    url = "/api/collections/notes/records"
    for _ in range(2):
        for name in ("ann", "bob"):
            _, body = _get(c, url, app[name]["h"])
            assert [i["text"] for i in body["items"]] == [f"{name}'s note"]
    assert _get(c, url)[1]["items"] == []  # anonymous
    assert _get(c, url, app["su"])[1]["totalItems"] == 2


def test_writes_to_expanded_collections_invalidate(app: dict[str, Any]) -> None:
    c, ann = app["c"], app["ann"]
    url = "/api/collections/posts/records?expand=author"
    assert _get(c, url)[1]["items"][0]["expand"]["author"]["name"] == ""
    assert _get(c, url)[0] == "hit"
    r = c.patch(
        f"/api/collections/users/records/{ann['id']}", json={"name": "Ann"}, headers=app["su"]
    )
    assert r.status_code == 200
    outcome, body = _get(c, url)
    assert outcome == "miss"
    assert body["items"][0]["expand"]["author"]["name"] == "Ann"


def test_rule_relevant_auth_data_invalidates(app: dict[str, Any]) -> None:
    c, ann, su = app["c"], app["ann"], app["su"]
    r = c.patch(
        "/api/collections/posts", json={"listRule": "@request.auth.role = 'editor'"}, headers=su
    )
    assert r.status_code == 200
    url = "/api/collections/posts/records"
    assert _get(c, url, ann["h"])[1]["items"] == []
    assert _get(c, url, ann["h"])[0] == "hit"
    c.patch(f"/api/collections/users/records/{ann['id']}", json={"role": "editor"}, headers=su)
    assert len(_get(c, url, ann["h"])[1]["items"]) == 1


def test_schema_changes_invalidate(app: dict[str, Any]) -> None:
    c, url = app["c"], "/api/collections/notes/records"
    _get(c, url, app["ann"]["h"])
    assert _get(c, url, app["ann"]["h"])[0] == "hit"
    r = c.patch("/api/collections/notes", json={"listRule": None}, headers=app["su"])
    assert r.status_code == 200
    assert c.get(url, headers=app["ann"]["h"]).status_code == 403


def _patch(c: TestClient, url: str, body: dict[str, Any], h: H) -> dict[str, Any]:
    r = c.patch(url, json=body, headers=h)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _set_hidden(c: TestClient, su: H, coll: str, name: str, hidden: bool) -> None:
    r = c.get(f"/api/collections/{coll}", headers=su)
    assert r.status_code == 200, r.text
    fields = [{**f, "hidden": hidden} if f["name"] == name else f for f in r.json()["fields"]]
    _patch(c, f"/api/collections/{coll}", {"fields": fields}, su)


def test_hidden_field_change_invalidates_filtered_lists(app: dict[str, Any]) -> None:
    """`notes.secret` is hidden: only superusers see it or filter by it, while rules may
    read it. A change of its value, or of the hidden flag itself, is never answered from an
    entry computed before the change — neither a stale list nor a leaked value."""
    c, ann, su = app["c"], app["ann"], app["su"]
    notes = "/api/collections/notes/records"
    [note] = _get(c, notes, ann["h"])[1]["items"]
    nid, one = note["id"], f"{notes}/{note['id']}"
    assert "secret" not in note

    # a superuser's list filtered by the hidden field follows its value
    by_v1 = notes + "?filter=" + quote("secret = 'v1'")
    assert _get(c, by_v1, su)[1]["items"] == []
    assert _get(c, by_v1, su)[0] == "hit"
    _patch(c, one, {"secret": "v1"}, su)
    outcome, body = _get(c, by_v1, su)
    assert outcome == "miss"
    assert [(i["id"], i["secret"]) for i in body["items"]] == [(nid, "v1")]

    # rules that read the hidden field follow its value for the user
    rule = "owner = @request.auth.id && secret != 'revoked'"
    _patch(c, "/api/collections/notes", {"listRule": rule, "viewRule": rule}, su)
    for url in (notes, one):
        _get(c, url, ann["h"])
        assert _get(c, url, ann["h"])[0] == "hit"
    _patch(c, one, {"secret": "revoked"}, su)
    assert _get(c, notes, ann["h"])[1]["items"] == []
    assert c.get(one, headers=ann["h"]).status_code == 404
    _patch(c, one, {"secret": "v2"}, su)
    assert [i["id"] for i in _get(c, notes, ann["h"])[1]["items"]] == [nid]
    r = c.get(one, headers=ann["h"])
    assert r.status_code == 200
    assert "secret" not in r.json()
    assert "v2" not in r.json().values()

    # unhiding shows the field to the user at once, and lets the user filter by it
    by_v2 = notes + "?filter=" + quote("secret = 'v2'")
    assert c.get(by_v2, headers=ann["h"]).status_code == 400  # hidden: not filterable
    _set_hidden(c, su, "notes", "secret", False)
    for url in (notes, one, by_v2):
        r = c.get(url, headers=ann["h"])
        assert r.status_code == 200, url
        assert r.headers["x-shipyard-cache"] == "miss", url
        assert "v2" in r.text, url
        assert _get(c, url, ann["h"])[0] == "hit"  # cached while visible
    # hiding it again: no entry computed while it was visible is served again
    _set_hidden(c, su, "notes", "secret", True)
    for url in (notes, one):
        outcome, body = _get(c, url, ann["h"])
        items = body["items"] if url == notes else [body]
        assert outcome == "miss", url
        assert [i["id"] for i in items] == [nid], url
        assert all("secret" not in i for i in items), url
        assert all("v2" not in i.values() for i in items), url
    r = c.get(by_v2, headers=ann["h"])
    assert r.status_code == 400, r.text
    assert "hidden" in r.json()["message"], r.text
    assert _get(c, by_v1, su)[1]["items"] == []  # the superuser's filter still works
    assert [i["secret"] for i in _get(c, by_v2, su)[1]["items"]] == ["v2"]


def test_no_cache_recomputes_and_no_store_bypasses(app: dict[str, Any]) -> None:
    c, url = app["c"], "/api/collections/posts/records"
    _get(c, url)
    assert _get(c, url, {"Cache-Control": "no-cache"})[0] == "miss"
    assert _get(c, url, {"Pragma": "no-cache"})[0] == "miss"
    assert _get(c, url, {"Cache-Control": "no-store"})[0] == "bypass"
    assert _get(c, url)[0] == "hit"


def test_time_dependent_filters_are_not_cached(app: dict[str, Any]) -> None:
    c = app["c"]
    url = "/api/collections/posts/records?filter=created%20%3C%20%40now"
    assert _get(c, url)[0] == "bypass"
    assert _get(c, url)[0] == "bypass"
    assert _get(c, "/api/collections/posts/records?sort=@random")[0] == "bypass"


def test_totals_stay_exact_past_the_first_page(app: dict[str, Any]) -> None:
    c, su = app["c"], app["su"]
    url = "/api/collections/posts/records?perPage=2"
    for i in range(4):
        c.post("/api/collections/posts/records", json={"title": f"p{i}"}, headers=su)
    assert _get(c, url)[1]["totalItems"] == 5
    assert _get(c, url + "&page=2", {"Cache-Control": "no-cache"})[1]["totalItems"] == 5
    c.post("/api/collections/posts/records", json={"title": "p5"}, headers=su)
    assert _get(c, url + "&page=2", {"Cache-Control": "no-cache"})[1]["totalItems"] == 6


@pytest.mark.parametrize("mode", ["sqlite", "postgres"])
def test_ttl_zero_and_postgres_without_redis_never_cache(
    request: pytest.FixtureRequest, tmp_path: Path, mode: str
) -> None:
    extra = {"cache_ttls": "posts=0"} if mode == "sqlite" else {}
    with _client(request, tmp_path, mode, **extra) as c:
        from shipyard.auth import superusers

        c.portal.call(superusers.create, c.app.state.services, *SUPERUSER)
        su = _login(c, "_superusers", *SUPERUSER)
        r = c.post(
            "/api/collections",
            json={"name": "posts", "listRule": "", "fields": [{"name": "t", "type": "text"}]},
            headers=su,
        )
        assert r.status_code == 200
        for _ in range(2):
            r = c.get("/api/collections/posts/records")
            assert r.headers["x-shipyard-cache"] == "bypass"
            assert r.headers["etag"]  # ETag and 304 work without the cache
