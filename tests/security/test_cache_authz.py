"""The response cache never serves an answer that a committed write (or another asker's
request) has made wrong: every collection that a rule, a client filter, a sort or an expand
reaches — through `@request.auth.<relation>…` at any depth, `@collection` (aliases and
relations behind it), back-relations — is in the entry's version set, and answers that read
`@request.headers.*` or the asker's identity are never shared.

Each case reads twice (a miss, then a hit: the answer stays cacheable), writes as a
superuser, and reads again: the new answer, computed afresh. Runs embedded (SQLite,
in-process versions) and on PostgreSQL + Redis (the only way PostgreSQL caches).
"""

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
PW = "correct-horse-battery-1"


def _rel(name: str, target: str) -> dict[str, Any]:
    return {"name": name, "type": "relation", "collectionId": target, "maxSelect": 1}


class World:
    """One app with caching on, and the collections the cases read."""

    def __init__(self, c: TestClient) -> None:
        self.c = c
        self.su = self.login("_superusers", *SUPERUSER)
        self.ids: dict[str, str] = {}
        open_ = {"listRule": "", "viewRule": ""}
        self.coll("orgs", [{"name": "open", "type": "bool"}], **open_)
        self.coll(
            "teams",
            [
                {"name": "name", "type": "text"},
                {"name": "active", "type": "bool"},
                {"name": "level", "type": "number"},
                _rel("org", self.ids["orgs"]),
            ],
            **open_,
        )
        self.coll("members", [_rel("team", self.ids["teams"]), {"name": "role", "type": "text"}])
        self.coll(
            "users",
            [_rel("team", self.ids["teams"])],
            type="auth",
            createRule="",
            listRule="id = @request.auth.id",
            viewRule="id = @request.auth.id",
        )
        # collections with no relation to users/teams: only the asker's relations reach them
        by_team = "@request.auth.team.active = true"
        self.coll("docs", [{"name": "title", "type": "text"}], listRule=by_team, viewRule=by_team)
        deep = "@request.auth.team.org.open = true"
        self.coll("deep", [{"name": "title", "type": "text"}], listRule=deep, viewRule=deep)
        back = "@request.auth.team.members_via_team.role ?= 'lead'"
        self.coll("leads", [{"name": "title", "type": "text"}], listRule=back, viewRule=back)
        quota = "level <= @request.auth.team.level"
        self.coll("quota", [{"name": "level", "type": "number"}], listRule=quota)
        self.coll("posts", [_rel("doc", self.ids["docs"])], **open_)
        self.coll("people", [{"name": "name", "type": "text"}], **open_)
        self.coll(
            "flags",
            [{"name": "label", "type": "text"}, _rel("owner", self.ids["people"])],
            **open_,
        )
        self.coll("notes", [{"name": "text", "type": "text"}], **open_)
        # e-mails of staff records show to those the manageRule admits
        self.coll("staff", [], type="auth", manageRule=by_team, **open_)

    # ------------------------------------------------------------ set-up helpers

    def login(self, coll: str, identity: str, password: str) -> H:
        r = self.c.post(
            f"/api/collections/{coll}/auth-with-password",
            json={"identity": identity, "password": password},
        )
        assert r.status_code == 200, r.text
        return {"Authorization": r.json()["token"]}

    def coll(self, name: str, fields: list[dict[str, Any]], **extra: Any) -> None:
        r = self.c.post(
            "/api/collections", json={"name": name, "fields": fields, **extra}, headers=self.su
        )
        assert r.status_code == 200, r.text
        self.ids[name] = r.json()["id"]

    def add(self, coll: str, **body: Any) -> str:
        r = self.c.post(f"/api/collections/{coll}/records", json=body, headers=self.su)
        assert r.status_code == 200, r.text
        return str(r.json()["id"])

    def set(self, coll: str, rid: str, **body: Any) -> None:
        r = self.c.patch(f"/api/collections/{coll}/records/{rid}", json=body, headers=self.su)
        assert r.status_code == 200, r.text

    def member(self, **team: Any) -> tuple[str, H]:
        """A fresh team (of a fresh open org) and a user in it, logged in."""
        org = self.add("orgs", open=True)
        tid = self.add("teams", org=org, **{"active": True, "level": 3, **team})
        email = f"bob-{uuid.uuid4().hex[:10]}@example.com"
        r = self.c.post(
            "/api/collections/users/records",
            json={"email": email, "password": PW, "passwordConfirm": PW, "team": tid},
        )
        assert r.status_code == 200, r.text
        return tid, self.login("users", email, PW)

    def team_org(self, team: str) -> str:
        r = self.c.get(f"/api/collections/teams/records/{team}")
        return str(r.json()["org"])

    def team_lead(self, team: str) -> str:
        r = self.c.get(_list("members", f"team = {team!r}"), headers=self.su)
        return str(r.json()["items"][0]["id"])

    # ------------------------------------------------------------ reading

    def get(self, url: str, h: H | None = None) -> tuple[int, str, Any]:
        r = self.c.get(url, headers=h or {})
        return r.status_code, r.headers.get("x-shipyard-cache", ""), r.json()

    def ids_of(self, url: str, h: H | None = None) -> tuple[str, list[str]]:
        status, outcome, body = self.get(url, h)
        assert status == 200, body
        return outcome, [i["id"] for i in body["items"]]

    def cached(self, url: str, h: H | None, expected: list[str]) -> None:
        """Read twice: computed, then served from cache, both `expected`."""
        assert self.ids_of(url, h) == ("miss", expected)
        assert self.ids_of(url, h) == ("hit", expected)


def _app(request: pytest.FixtureRequest, tmp_path: Path, backend: str) -> TestClient:
    db_url = redis = ""
    if backend == "postgres":
        db_url = fresh_pg_database(request.getfixturevalue("pg_admin_url"))
        redis = request.getfixturevalue("redis_url")
    settings = load_settings(
        env={},
        data_dir=str(tmp_path / "data"),
        database_url=db_url,
        ratelimit_enabled=False,  # bursts of reads and writes: the limits are tested apart
        redis_url=redis,
        redis_namespace="t" + uuid.uuid4().hex,
    )
    return TestClient(create_app(settings))


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def w(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    backend = str(request.param)
    with _app(request, tmp_path_factory.mktemp(f"cache-authz-{backend}"), backend) as c:
        from shipyard.auth import superusers

        c.portal.call(superusers.create, c.app.state.services, *SUPERUSER)  # type: ignore[attr-defined]
        yield World(c)


def _q(filt: str) -> str:
    return quote(filt, safe="")


def _list(coll: str, filt: str, extra: str = "") -> str:
    return f"/api/collections/{coll}/records?filter={_q(filt)}{extra}"


# ---------------------------------------------------------------- revoked through the asker


@pytest.mark.parametrize(
    ("coll", "revoke"),
    [
        # @request.auth.team.active: the asker's relation, one hop
        ("docs", lambda w, team: w.set("teams", team, active=False)),
        # @request.auth.team.org.open: two hops
        ("deep", lambda w, team: w.set("orgs", w.team_org(team), open=False)),
        # @request.auth.team.members_via_team.role: a back-relation behind the asker's relation
        ("leads", lambda w, team: w.set("members", w.team_lead(team), role="former")),
    ],
    ids=["relation", "two-hops", "back-relation"],
)
def test_access_revoked_through_the_askers_relations_is_not_served_from_cache(
    w: World, coll: str, revoke: Any
) -> None:
    team, bob = w.member()
    w.add("members", team=team, role="lead")
    doc = w.add(coll, title="t")
    w.cached(_list(coll, f"id = {doc!r}"), bob, [doc])
    view = f"/api/collections/{coll}/records/{doc}"
    assert w.get(view, bob)[:2] == (200, "miss")
    assert w.get(view, bob)[:2] == (200, "hit")
    revoke(w, team)
    assert w.ids_of(_list(coll, f"id = {doc!r}"), bob) == ("miss", [])
    assert w.get(view, bob)[0] == 404


def test_access_granted_through_the_askers_relation_shows_at_once(w: World) -> None:
    team, bob = w.member(active=False)
    doc = w.add("docs", title="t")
    url = _list("docs", f"id = {doc!r}")
    w.cached(url, bob, [])
    w.set("teams", team, active=True)
    assert w.ids_of(url, bob) == ("miss", [doc])


def test_totals_follow_the_askers_relations(w: World) -> None:
    team, bob = w.member(level=3)
    # a filter of its own keeps this case's URL and count apart from the others'
    ids = [w.add("quota", level=lv) for lv in (1, 2, 3)]
    filt = " || ".join(f"id = {i!r}" for i in ids)
    url = _list("quota", filt, "&perPage=1")
    status, outcome, body = w.get(url, bob)
    assert (status, outcome, body["totalItems"]) == (200, "miss", 3)
    assert w.get(url, bob)[1:] == ("hit", body)
    w.set("teams", team, level=2)
    status, outcome, body = w.get(url, bob)
    assert (status, outcome, body["totalItems"]) == (200, "miss", 2)
    # the count behind totalItems is cached too: a recompute must not reuse the old one
    status, outcome, body = w.get(url, bob | {"Cache-Control": "no-cache"})
    assert body["totalItems"] == 2
    w.set("teams", team, level=1)
    status, outcome, body = w.get(url, bob | {"Cache-Control": "no-cache"})
    assert (outcome, body["totalItems"]) == ("miss", 1)


def test_expanded_records_follow_their_rules_through_the_askers_relations(w: World) -> None:
    team, bob = w.member()
    doc = w.add("docs", title="t")
    post = w.add("posts", doc=doc)
    url = f"/api/collections/posts/records/{post}?expand=doc"
    status, outcome, body = w.get(url, bob)
    assert (status, outcome, body["expand"]["doc"]["id"]) == (200, "miss", doc)
    assert w.get(url, bob)[1] == "hit"
    w.set("teams", team, active=False)
    status, outcome, body = w.get(url, bob)
    assert (status, outcome, "expand" in body) == (200, "miss", False)


def test_manage_rule_through_the_askers_relation(w: World) -> None:
    team, bob = w.member()
    email = f"staff-{uuid.uuid4().hex[:10]}@example.com"
    sid = w.add("staff", email=email, password=PW, passwordConfirm=PW)
    url = f"/api/collections/staff/records/{sid}"
    status, outcome, body = w.get(url, bob)
    assert (status, outcome, body.get("email")) == (200, "miss", email)
    assert w.get(url, bob)[:2] == (200, "hit")
    w.set("teams", team, active=False)
    status, outcome, body = w.get(url, bob)
    assert (status, outcome, "email" in body) == (200, "miss", False)


def test_client_filter_through_the_askers_relation(w: World) -> None:
    team, bob = w.member(name="red")
    note = w.add("notes", text="n")
    url = _list("notes", f"id = {note!r} && @request.auth.team.name = 'red'")
    w.cached(url, bob, [note])
    w.set("teams", team, name="blue")
    assert w.ids_of(url, bob) == ("miss", [])


# ---------------------------------------------------------------- @collection in client filters


@pytest.mark.parametrize(
    "template",
    [
        "@collection.flags.label ?= {label!r}",
        "@collection.flags:f.label ?= {label!r}",
        "@collection.{flags_id}.label ?= {label!r}",  # by id
    ],
    ids=["name", "alias", "id"],
)
@pytest.mark.parametrize("asker", ["anonymous", "user"])
def test_client_filter_on_an_unrelated_collection_sees_writes(
    w: World, template: str, asker: str
) -> None:
    h = w.member()[1] if asker == "user" else None
    note = w.add("notes", text="n")
    label = uuid.uuid4().hex
    filt = f"id = {note!r} && " + template.format(label=label, flags_id=w.ids["flags"])
    url = _list("notes", filt)
    w.cached(url, h, [])
    flag = w.add("flags", label=label)
    assert w.ids_of(url, h) == ("miss", [note])
    w.set("flags", flag, label="other")
    assert w.ids_of(url, h) == ("miss", [])


def test_client_filter_through_a_relation_behind_collection(w: World) -> None:
    note = w.add("notes", text="n")
    person = w.add("people", name="ann")
    w.add("flags", label="x", owner=person)
    name = uuid.uuid4().hex
    url = _list("notes", f"id = {note!r} && @collection.flags.owner.name ?= {name!r}")
    w.cached(url, None, [])
    w.set("people", person, name=name)
    assert w.ids_of(url, None) == ("miss", [note])


def test_back_relations_at_depth_in_filters(w: World) -> None:
    org = w.add("orgs", open=True)
    team = w.add("teams", org=org, name="t")
    role = uuid.uuid4().hex
    url = _list("orgs", f"id = {org!r} && teams_via_org.name ?= {role!r}")
    w.cached(url, None, [])
    w.set("teams", team, name=role)
    assert w.ids_of(url, None) == ("miss", [org])


def test_sort_through_a_relation_sees_writes(w: World) -> None:
    tag = uuid.uuid4().hex
    a, b = w.add("people", name="a"), w.add("people", name="b")
    fa, fb = w.add("flags", label=tag, owner=a), w.add("flags", label=tag, owner=b)
    url = _list("flags", f"label = {tag!r}", "&sort=owner.name")
    w.cached(url, None, [fa, fb])
    w.set("people", a, name="c")
    assert w.ids_of(url, None) == ("miss", [fb, fa])


# ---------------------------------------------------------------- answers that are not shared


@pytest.mark.parametrize("asker", ["anonymous", "user"])
def test_filters_reading_headers_are_never_cached(w: World, asker: str) -> None:
    h = w.member()[1] if asker == "user" else {}
    note = w.add("notes", text="n")
    filt = f"id = {note!r} && @request.headers.x_probe = 'yes'"
    url = _list("notes", filt)
    for _ in range(2):
        assert w.ids_of(url, h | {"X-Probe": "yes"}) == ("bypass", [note])
    assert w.ids_of(url, h) == ("bypass", [])
    assert w.ids_of(url, h | {"X-Probe": "no"}) == ("bypass", [])


def test_superusers_filtering_on_themselves_do_not_share_entries(w: World) -> None:
    email = f"root2-{uuid.uuid4().hex[:8]}@example.com"
    r = w.c.post(
        "/api/collections/_superusers/records",
        json={"email": email, "password": PW, "passwordConfirm": PW},
        headers=w.su,
    )
    assert r.status_code == 200, r.text
    su2 = w.login("_superusers", email, PW)
    note = w.add("notes", text="n")
    url = _list("notes", f"id = {note!r} && @request.auth.email = {SUPERUSER[0]!r}")
    w.cached(url, w.su, [note])
    assert w.ids_of(url, su2) == ("miss", [])
    # without @request.* superusers keep sharing one entry
    plain = _list("notes", f"id = {note!r}")
    w.cached(plain, w.su, [note])
    assert w.ids_of(plain, su2) == ("hit", [note])


def test_a_superuser_changing_a_rule_invalidates(w: World) -> None:
    bob = w.member()[1]
    doc = w.add("docs", title="t")
    url = _list("docs", f"id = {doc!r}")
    w.cached(url, bob, [doc])
    rule = "@request.auth.team.active = false"
    r = w.c.patch("/api/collections/docs", json={"listRule": rule}, headers=w.su)
    assert r.status_code == 200, r.text
    try:
        assert w.ids_of(url, bob) == ("miss", [])
    finally:
        rule = "@request.auth.team.active = true"
        r = w.c.patch("/api/collections/docs", json={"listRule": rule}, headers=w.su)
        assert r.status_code == 200, r.text
