"""IDOR (reaching other people's records by id), mass assignment (writing fields the caller
must not control) and data exposure (hidden fields, e-mails, password hashes, tokenKeys)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import jwt
import pytest

from shipyard.records.auth import issue_token
from tests.helpers.security import PW, Actor, SharedApp

OWNER = "owner = @request.auth.id"
# The update rule that stops a handover: the owner may write, but `owner` only to themself.
GUARDED = (
    "owner = @request.auth.id"
    " && (@request.body.owner:isset = false || @request.body.owner = @request.auth.id)"
)


@dataclass
class World:
    app: SharedApp
    a: Actor
    b: Actor
    a_doc: str
    b_doc: str


def _build(app: SharedApp) -> World:
    owner_field = {
        "name": "owner",
        "type": "relation",
        "collectionId": app.users_id,
        "maxSelect": 1,
    }
    for name, update in (("docs", OWNER), ("guarded_docs", GUARDED)):
        app.collection(
            {
                "name": name,
                "listRule": OWNER,
                "viewRule": OWNER,
                "createRule": OWNER,
                "updateRule": update,
                "deleteRule": OWNER,
                "fields": [owner_field, {"name": "title", "type": "text"}],
            }
        )
    # an auth collection anyone may list: e-mails must still stay hidden
    people = app.collection(
        {
            "name": "people",
            "type": "auth",
            "createRule": "",
            "listRule": "",
            "viewRule": "",
            "updateRule": "id = @request.auth.id",
            "fields": [{"name": "nick", "type": "text"}],
        }
    )
    app.collection(
        {
            "name": "mentions",
            "listRule": "",
            "viewRule": "",
            "fields": [{"name": "who", "type": "relation", "collectionId": people["id"]}],
        }
    )
    app.collection({"name": "board", "listRule": "", "viewRule": "", "fields": []})
    app.record("board", {})
    a, b = app.pair()
    a_doc = app.record("docs", {"owner": a.id, "title": "a's"}, a.h)["id"]
    b_doc = app.record("docs", {"owner": b.id, "title": "b's"}, b.h)["id"]
    return World(app, a, b, a_doc, b_doc)


@pytest.fixture(scope="module")
def w(shared: SharedApp) -> World:
    return shared.world("idor", _build)


def _doc(w: World, owner: Actor, coll: str = "docs") -> str:
    return str(w.app.record(coll, {"owner": owner.id, "title": "mine"}, owner.h)["id"])


# ---------------------------------------------------------------- IDOR


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
def test_other_users_account_is_not_found(w: World, method: str) -> None:
    app, a, b = w.app, w.a, w.b
    url = f"/api/collections/users/records/{b.id}"
    before = app.su_view("users", b.id)
    r = app.client.request(method, url, json={"nick": "pwned"} if method == "PATCH" else None,
                           headers=a.h)  # fmt: skip
    assert r.status_code == 404, r.text
    assert app.su_view("users", b.id) == before
    # and the victim's session is untouched
    assert app.client.post("/api/collections/users/auth-refresh", headers=b.h).status_code == 200


@pytest.mark.parametrize("coll", ["docs", "guarded_docs"])
@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
def test_other_users_records_are_not_found(w: World, method: str, coll: str) -> None:
    app = w.app
    doc = _doc(w, w.b, coll)
    url = f"/api/collections/{coll}/records/{doc}"
    body = {"title": "pwned", "owner": w.a.id} if method == "PATCH" else None
    r = app.client.request(method, url, json=body, headers=w.a.h)
    assert r.status_code == 404, r.text
    stored = app.su_view(coll, doc)
    assert stored is not None
    assert stored["title"] == "mine"
    assert stored["owner"] == w.b.id
    # anonymous fares no better
    assert app.client.request(method, url, json=body).status_code == 404


@pytest.mark.parametrize(
    "filt",
    [
        "",
        'owner = "{b}"',
        'owner != "{a}"',
        'id != "" || owner = "{b}"',
        'owner.id = "{b}"',
        'title = "b\'s"',
        'id = "{b_doc}"',
    ],
)
def test_list_filter_cannot_widen_the_rule(w: World, filt: str) -> None:
    """The client filter is ANDed with the listRule, never ORed around it."""
    f = filt.format(a=w.a.id, b=w.b.id, b_doc=w.b_doc)
    r = w.app.client.get(
        "/api/collections/docs/records", params={"filter": f, "perPage": "500"}, headers=w.a.h
    )
    if filt.startswith("owner.id"):
        # `owner.id` names the local column, but Shipyard's relation guard refuses any path
        # into users (listRule not ""); a refusal is no leak either
        assert r.status_code in (200, 400), r.text
        if r.status_code == 400:
            return
    assert r.status_code == 200, r.text
    got = sorted(i["id"] for i in r.json()["items"])
    assert w.b_doc not in got
    # exactly what a superuser finds with the rule written into the filter
    mine = f'owner = "{w.a.id}"' + (f" && ({f})" if f else "")
    su = w.app.client.get(
        "/api/collections/docs/records",
        params={"filter": mine, "perPage": "500"},
        headers=w.app.su,
    )
    assert got == sorted(i["id"] for i in su.json()["items"])


@pytest.mark.parametrize(
    "filt",
    [
        '") || ("1" = "1',
        "') || ('1' = '1",
        '" || owner != "',
        "1 = 1) || (1 = 1",
        'owner = "" || 1 = 1 // ',
    ],
)
def test_filter_injection_is_refused_or_harmless(w: World, filt: str) -> None:
    r = w.app.client.get("/api/collections/docs/records", params={"filter": filt}, headers=w.a.h)
    assert r.status_code in (200, 400), r.text
    if r.status_code == 200:
        assert {i["owner"] for i in r.json()["items"]} <= {w.a.id}


def test_create_for_someone_else_is_refused(w: World) -> None:
    app, a, b = w.app, w.a, w.b
    marker = uuid.uuid4().hex
    r = app.client.post(
        "/api/collections/docs/records", json={"owner": b.id, "title": marker}, headers=a.h
    )
    assert r.status_code == 400, r.text
    assert app.su_count("docs", f'title = "{marker}"') == 0
    # nor may anyone claim an existing record's id: the id is a key, not an upsert
    r = app.client.post(
        "/api/collections/docs/records",
        json={"id": w.b_doc, "owner": a.id, "title": marker},
        headers=a.h,
    )
    assert r.status_code == 400, r.text
    stored = app.su_view("docs", w.b_doc)
    assert stored is not None
    assert stored["owner"] == b.id
    assert stored["title"] == "b's"


def test_plain_owner_update_rule_allows_a_handover(w: World) -> None:
    """PocketBase evaluates updateRule against the record as stored BEFORE the write, so with
    `owner = @request.auth.id` an owner may hand their record to someone else (and only
    @request.body.* conditions can prevent it; see the guarded collection below)."""
    app, a, b = w.app, w.a, w.b
    doc = _doc(w, a)
    url = f"/api/collections/docs/records/{doc}"
    r = app.client.patch(url, json={"owner": b.id}, headers=a.h)
    assert r.status_code == 200, r.text
    assert app.client.get(url, headers=a.h).status_code == 404
    assert app.client.get(url, headers=b.h).status_code == 200


def test_guarded_update_rule_prevents_a_handover(w: World) -> None:
    app, a, b = w.app, w.a, w.b
    doc = _doc(w, a, "guarded_docs")
    url = f"/api/collections/guarded_docs/records/{doc}"
    r = app.client.patch(url, json={"owner": b.id, "title": "given away"}, headers=a.h)
    assert r.status_code == 404, r.text
    stored = app.su_view("guarded_docs", doc)
    assert stored is not None
    assert stored["owner"] == a.id
    assert stored["title"] == "mine"
    r = app.client.patch(url, json={"owner": a.id, "title": "kept"}, headers=a.h)
    assert r.status_code == 200, r.text
    assert r.json()["title"] == "kept", r.text
    r = app.client.patch(url, json={"title": "edited"}, headers=a.h)
    assert r.status_code == 200, r.text
    assert r.json()["title"] == "edited", r.text


@pytest.mark.parametrize("key", ["owner+", "+owner", "owner-"])
def test_guarded_update_rule_sees_through_modifiers(w: World, key: str) -> None:
    """`owner+: B` on a single relation sets the owner to B in PocketBase, which resolves
    modifiers into @request.body before the rules run: the guard must see it (PocketBase
    0.40.6 answers 404 to `owner+` and 200 without a change to the others)."""
    app, a, b = w.app, w.a, w.b
    doc = _doc(w, a, "guarded_docs")
    r = app.client.patch(
        f"/api/collections/guarded_docs/records/{doc}", json={key: b.id}, headers=a.h
    )
    assert r.status_code in ((400, 404) if key == "owner+" else (200, 400, 404)), r.text
    stored = app.su_view("guarded_docs", doc)
    assert stored is not None
    assert stored["owner"] == a.id


@pytest.fixture(scope="module")
def counted(w: World) -> str:
    def build(app: SharedApp) -> str:
        app.collection(
            {
                "name": "counted",
                "listRule": "",
                "viewRule": "",
                "createRule": '@request.auth.id != ""',
                # members may touch a record, never its editors or its counter
                "updateRule": '@request.auth.id != "" && @request.body.editors:isset = false'
                " && @request.body.views:isset = false",
                "fields": [
                    {
                        "name": "editors",
                        "type": "relation",
                        "collectionId": app.users_id,
                        "maxSelect": 5,
                    },
                    {"name": "views", "type": "number"},
                    {"name": "title", "type": "text"},
                ],
            }
        )
        return "counted"

    return w.app.world("counted", build)


@pytest.mark.parametrize(
    ("key", "value"),
    [("editors+", "B"), ("+editors", "B"), ("editors-", "A"), ("views+", 5), ("views-", 1)],
    ids=["editors+", "+editors", "editors-", "views+", "views-"],
)
def test_isset_guard_sees_through_modifiers(w: World, counted: str, key: str, value: Any) -> None:
    """`@request.body.x:isset = false` must also refuse `x+`, `+x` and `x-` (PocketBase
    0.40.6: 404, nothing changed)."""
    app, a = w.app, w.a
    rid = app.record(counted, {"editors": [a.id], "views": 1, "title": "t"}, a.h)["id"]
    value = {"A": a.id, "B": w.b.id}.get(value, value) if isinstance(value, str) else value
    r = app.client.patch(f"/api/collections/{counted}/records/{rid}", json={key: value},
                         headers=a.h)  # fmt: skip
    assert r.status_code in (400, 404), r.text
    stored = app.su_view(counted, rid)
    assert stored is not None
    assert stored["editors"] == [a.id]
    assert stored["views"] == 1
    # the guard lets through what it should
    r = app.client.patch(f"/api/collections/{counted}/records/{rid}", json={"title": "u"},
                         headers=a.h)  # fmt: skip
    assert r.status_code == 200, r.text


WEIRD_IDS = [
    "' OR '1'='1",
    '" OR "1"="1',
    "1; DROP TABLE docs; --",
    "x' UNION SELECT * FROM _superusers --",
    "../../_superusers/records",
    "..%2F..%2F_superusers",
    "%00",
    "\x00",
    "*",
    "%",
    "_",
    "\\",
    "é€😀",
    "a" * 5000,
    "records",
    " ",
]


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
@pytest.mark.parametrize("rid", WEIRD_IDS, ids=[f"id{i}" for i in range(len(WEIRD_IDS))])
def test_weird_ids_are_404_or_400_never_500(w: World, rid: str, method: str) -> None:
    app = w.app
    url = "/api/collections/docs/records/" + quote(rid, safe="")
    body = {"title": "x"} if method == "PATCH" else None
    for h in (w.a.h, app.su):
        r = app.client.request(method, url, json=body, headers=h)
        assert r.status_code in (400, 404), (r.status_code, r.text)
    assert app.su_count("docs", "") >= 2  # nothing was dropped or emptied


@pytest.mark.parametrize("rid", WEIRD_IDS[:7], ids=[f"id{i}" for i in range(7)])
def test_weird_ids_in_bodies_and_collection_names(w: World, rid: str) -> None:
    app = w.app
    r = app.client.post(
        "/api/collections/docs/records", json={"id": rid, "owner": w.a.id}, headers=w.a.h
    )
    assert r.status_code == 400, r.text
    r = app.client.get("/api/collections/" + quote(rid, safe="") + "/records", headers=app.su)
    assert r.status_code in (400, 404), r.text


# ---------------------------------------------------------------- mass assignment


@pytest.fixture(scope="module")
def mass(w: World) -> Actor:
    """A user of this module for updates that must be refused (or change nothing)."""
    return w.app.world("mass", lambda app: app.signup("mass"))


def _signup_body(**extra: Any) -> dict[str, Any]:
    email = f"m-{uuid.uuid4().hex[:10]}@example.com"
    return {"email": email, "password": PW, "passwordConfirm": PW, **extra}


@pytest.mark.parametrize(
    ("extra", "field"),
    [({"verified": True}, "verified"), ({"role": "admin"}, None)],
    ids=["verified", "role"],
)
def test_signup_cannot_set_privileged_fields(w: World, extra: dict[str, Any], field: str) -> None:
    """`verified` is protected (400 on it); `role` is an ordinary field, kept out by the
    createRule `@request.body.role:isset = false` (a failed create rule: 400)."""
    app = w.app
    body = _signup_body(**extra)
    r = app.client.post("/api/collections/users/records", json=body)
    assert r.status_code == 400, r.text
    if field:
        assert field in r.json()["data"]
    assert app.su_count("users", f'email = "{body["email"]}"') == 0


def test_signup_ignores_server_managed_fields(w: World) -> None:
    app = w.app
    planted = "planted-token-key-0123456789-abcdefgh"
    body = _signup_body(
        tokenKey=planted,
        created="2001-01-01 00:00:00.000Z",
        updated="2001-01-01 00:00:00.000Z",
        collectionId="pbc_3142635823",
        collectionName="_superusers",
    )
    r = app.client.post("/api/collections/users/records", json=body)
    assert r.status_code in (200, 400), r.text
    if r.status_code == 400:
        return
    rec = r.json()
    assert rec["collectionName"] == "users"
    assert rec["verified"] is False
    assert not rec["created"].startswith("2001")
    assert not rec["updated"].startswith("2001")
    assert "tokenKey" not in rec
    assert "password" not in rec
    stored = app.auth_record("users", rec["id"])
    assert stored["tokenKey"] != planted
    # a token signed with the planted key (and nothing else) is worthless
    forged = jwt.encode(
        {
            "id": rec["id"],
            "collectionId": app.users_id,
            "type": "auth",
            "exp": int(time.time()) + 3600,
            "refreshable": True,
        },
        planted,
        algorithm="HS256",
    )
    r = app.client.post("/api/collections/users/auth-refresh", headers={"Authorization": forged})
    assert r.status_code == 401


def test_update_cannot_set_verified(w: World, mass: Actor) -> None:
    app, u = w.app, mass
    r = app.client.patch(
        f"/api/collections/users/records/{u.id}", json={"verified": True}, headers=u.h
    )
    assert r.status_code == 400, r.text
    assert "verified" in r.json()["data"], r.text
    assert app.auth_record("users", u.id)["verified"] is False


def test_update_cannot_set_role(w: World, mass: Actor) -> None:
    app, u = w.app, mass
    r = app.client.patch(
        f"/api/collections/users/records/{u.id}", json={"role": "admin"}, headers=u.h
    )
    assert r.status_code == 404, r.text  # the update rule fails: as if not found
    assert app.auth_record("users", u.id)["role"] == ""


def test_update_cannot_set_token_key(w: World) -> None:
    """tokenKey is never settable: the stored key stays, so the old token keeps working and
    a key the caller chose signs nothing."""
    app = w.app
    u = app.signup("upd")
    before = app.auth_record("users", u.id)["tokenKey"]
    planted = "planted-token-key-0123456789-abcdefgh"
    r = app.client.patch(
        f"/api/collections/users/records/{u.id}",
        json={"tokenKey": planted, "nick": "n"},
        headers=u.h,
    )
    assert r.status_code in (200, 400), r.text
    assert "tokenKey" not in r.json()
    assert app.auth_record("users", u.id)["tokenKey"] == before
    assert app.client.post("/api/collections/users/auth-refresh", headers=u.h).status_code == 200
    svc = app.services
    coll = svc.store.require("users")
    forged = issue_token("", coll, u.id, planted, 3600)  # even knowing the collection secret
    r = app.client.post("/api/collections/users/auth-refresh", headers={"Authorization": forged})
    assert r.status_code == 401


def test_update_cannot_take_over_another_id(w: World, mass: Actor) -> None:
    app, u, v = w.app, mass, w.b
    r = app.client.patch(f"/api/collections/users/records/{u.id}", json={"id": v.id}, headers=u.h)
    assert r.status_code == 400, r.text
    assert "id" in r.json()["data"], r.text
    assert app.su_view("users", u.id) is not None
    assert app.su_view("users", v.id) is not None
    assert (
        app.client.post("/api/collections/users/auth-refresh", headers=v.h).json()["record"]["id"]
        == v.id
    )


def test_update_ignores_autodates(w: World, mass: Actor) -> None:
    app, u = w.app, mass
    created = app.auth_record("users", u.id)["created"]
    r = app.client.patch(
        f"/api/collections/users/records/{u.id}",
        json={"created": "2001-01-01 00:00:00.000Z", "updated": "2001-01-01 00:00:00.000Z"},
        headers=u.h,
    )
    assert r.status_code == 200, r.text
    assert r.json()["created"] == created
    assert not r.json()["updated"].startswith("2001")


def test_update_cannot_change_email_or_password_without_proof(w: World, mass: Actor) -> None:
    app, u = w.app, mass
    url = f"/api/collections/users/records/{u.id}"
    r = app.client.patch(url, json={"email": "taken-over@example.com"}, headers=u.h)
    assert r.status_code == 400, r.text
    assert "email" in r.json()["data"], r.text
    r = app.client.patch(url, json={"password": "x-new-pass-1", "passwordConfirm": "x-new-pass-1"},
                         headers=u.h)  # fmt: skip
    assert r.status_code == 400, r.text
    assert "oldPassword" in r.json()["data"], r.text
    r = app.client.patch(
        url,
        json={"password": "x-new-pass-1", "passwordConfirm": "x-new-pass-1", "oldPassword": "nope"},
        headers=u.h,
    )
    assert r.status_code == 400, r.text
    assert "oldPassword" in r.json()["data"], r.text
    stored = app.auth_record("users", u.id)
    assert stored["email"] == u.email
    # nothing changed, so the session lives on
    assert app.client.post("/api/collections/users/auth-refresh", headers=u.h).status_code == 200


def test_record_create_ignores_autodates_and_foreign_collection_keys(w: World) -> None:
    app, a = w.app, w.a
    r = app.client.post(
        "/api/collections/docs/records",
        json={
            "owner": a.id,
            "created": "2001-01-01 00:00:00.000Z",
            "collectionName": "guarded_docs",
            "collectionId": "pbc_3142635823",
        },
        headers=a.h,
    )
    assert r.status_code == 200, r.text
    assert r.json()["collectionName"] == "docs"
    assert not r.json()["created"].startswith("2001")


# ---------------------------------------------------------------- exposure


SECRETS = ("password", "tokenKey", "passwordConfirm", "oldPassword")


def _no_secrets(obj: Any) -> None:
    if isinstance(obj, dict):
        assert not set(SECRETS) & set(obj), obj
        for v in obj.values():
            _no_secrets(v)
    elif isinstance(obj, list):
        for v in obj:
            _no_secrets(v)


@pytest.fixture(scope="module")
def people(w: World) -> dict[str, Actor]:
    def build(app: SharedApp) -> dict[str, Actor]:
        out = {n: app.signup(n, "people") for n in ("pa", "pb")}
        app.record("mentions", {"id": "mentionpa00000", "who": out["pa"].id})
        app.record("mentions", {"id": "mentionpb00000", "who": out["pb"].id})
        return out

    return w.app.world("people", build)


def _seen(w: World, h: dict[str, str]) -> dict[str, dict[str, Any]]:
    r = w.app.client.get("/api/collections/people/records", params={"perPage": "500"}, headers=h)
    assert r.status_code == 200, r.text
    _no_secrets(r.json())
    return {i["id"]: i for i in r.json()["items"]}


def test_email_is_hidden_from_others(w: World, people: dict[str, Actor]) -> None:
    pa, pb = people["pa"], people["pb"]
    seen = _seen(w, pa.h)
    assert seen[pa.id]["email"] == pa.email
    assert "email" not in seen[pb.id]
    anon = _seen(w, {})
    assert "email" not in anon[pa.id]
    assert "email" not in anon[pb.id]
    su_seen = _seen(w, w.app.su)
    assert su_seen[pa.id]["email"] == pa.email
    assert su_seen[pb.id]["email"] == pb.email
    r = w.app.client.get(f"/api/collections/people/records/{pb.id}", headers=pa.h)
    assert r.status_code == 200
    assert "email" not in r.json()
    r = w.app.client.get(
        "/api/collections/mentions/records", params={"expand": "who", "fields": "*,expand.who.*"}
    )
    assert r.status_code == 200, r.text
    _no_secrets(r.json())
    for item in r.json()["items"]:
        who = (item.get("expand") or {}).get("who")
        if who:
            assert "email" not in who


def test_email_cannot_be_probed_by_filter(w: World, people: dict[str, Actor]) -> None:
    pa, pb = people["pa"], people["pb"]
    url = "/api/collections/people/records"
    probes = [pb.email, "nobody@example.com"]
    for h in ({}, pa.h):
        answers = []
        for email in probes:
            r = w.app.client.get(url, params={"filter": f'email = "{email}"'}, headers=h)
            answers.append((r.status_code, r.json().get("totalItems")))
        assert answers[0] == answers[1], answers
        r = w.app.client.get(
            "/api/collections/mentions/records",
            params={"filter": f'who.email = "{pb.email}"'},
            headers=h,
        )
        same = w.app.client.get(
            "/api/collections/mentions/records",
            params={"filter": 'who.email = "nobody@example.com"'},
            headers=h,
        )
        assert (r.status_code, r.json().get("totalItems")) == (
            same.status_code,
            same.json().get("totalItems"),
        )


def test_email_visibility_opt_in(w: World, people: dict[str, Actor]) -> None:
    app = w.app
    pc, pd = people["pa"], app.signup("pd", "people")
    r = app.client.patch(
        f"/api/collections/people/records/{pd.id}", json={"emailVisibility": True}, headers=pd.h
    )
    assert r.status_code == 200, r.text
    r = app.client.get(f"/api/collections/people/records/{pd.id}", headers=pc.h)
    assert r.status_code == 200
    assert r.json()["email"] == pd.email
    r = app.client.get(f"/api/collections/people/records/{pc.id}", headers=pd.h)
    assert r.status_code == 200
    assert "email" not in r.json()


def test_auth_responses_never_carry_secrets(w: World) -> None:
    app, u = w.app, w.a
    responses = [
        app.client.post("/api/collections/users/auth-refresh", headers=u.h),
        app.client.post(
            "/api/collections/users/auth-with-password", json={"identity": u.email, "password": PW}
        ),
        app.client.get(f"/api/collections/users/records/{u.id}", headers=u.h),
        app.client.get("/api/collections/users/records", headers=u.h),
        app.client.get("/api/collections/users/records", headers=app.su),
        app.client.patch(f"/api/collections/users/records/{u.id}", json={"nick": "n"}, headers=u.h),
        app.client.get(
            "/api/collections/users/records",
            params={"fields": "id,password,tokenKey"},
            headers=app.su,
        ),
        app.client.post("/api/collections/users/records", json=_signup_body()),
    ]
    for r in responses:
        assert r.status_code == 200, r.text
        _no_secrets(r.json())


@pytest.mark.parametrize("field", ["password", "tokenKey"])
def test_secret_fields_cannot_be_probed(w: World, field: str) -> None:
    """Not even a superuser can filter or sort on the password hash; tokenKey is hidden."""
    app, u = w.app, w.a
    for h in (u.h, {}):
        r = app.client.get(
            "/api/collections/users/records", params={"filter": f'{field} != ""'}, headers=h
        )
        assert r.status_code == 400, r.text
        r = app.client.get("/api/collections/users/records", params={"sort": field}, headers=h)
        assert r.status_code == 400, r.text
    # (superusers may, in PocketBase, filter on the hash; Shipyard refuses them too: not asserted)


@pytest.mark.parametrize("field", ["flag", "tokenKey", "password"])
def test_own_hidden_fields_cannot_be_probed_through_request_auth(w: World, field: str) -> None:
    """`@request.auth.<hidden field>` in a client filter would let a user test guesses of
    their own hidden values. PocketBase 0.40.6 refuses any @request in a client filter (403);
    anything but a refusal must answer the same whatever the guess."""
    app, u = w.app, w.b
    r = app.client.patch(f"/api/collections/users/records/{u.id}", json={"flag": "red"},
                         headers=app.su)  # fmt: skip
    assert r.status_code == 200, r.text
    truth = {"flag": "red", "tokenKey": app.auth_record("users", u.id)["tokenKey"]}.get(field, "")
    answers = set()
    for guess in (truth, "blue"):
        r = app.client.get(
            "/api/collections/board/records",
            params={"filter": f'@request.auth.{field} = "{guess}"'},
            headers=u.h,
        )
        body = r.json()
        answers.add((r.status_code, body.get("totalItems"), str(body.get("items"))))
    if all(code in (400, 403) for code, _, _ in answers):
        return
    assert len(answers) == 1, answers
