"""Forged, tampered, expired, revoked and misused auth tokens.

An invalid token is treated as no token (PocketBase): `auth-refresh` answers 401, record
endpoints answer as to a guest (an owner rule shows nothing, a locked rule is 403) and the
superuser-only endpoints answer 401.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from shipyard.auth.accounts import purpose_token
from shipyard.records.auth import issue_token
from tests.helpers.security import (
    PW,
    SUPERUSERS_ID,
    Actor,
    SharedApp,
    assemble,
    b64url,
    sign_hs,
    token_parts,
)

WRONG_KEY = "not-the-key-of-this-server-0123456789abcdef"


@dataclass
class World:
    app: SharedApp
    a: Actor
    b: Actor
    a_doc: str
    b_doc: str
    staff: Actor


def _build(app: SharedApp) -> World:
    owner_rule = "owner = @request.auth.id"
    app.collection(
        {
            "name": "jdocs",
            "listRule": owner_rule,
            "viewRule": owner_rule,
            "createRule": owner_rule,
            "updateRule": owner_rule,
            "deleteRule": owner_rule,
            "fields": [
                {"name": "owner", "type": "relation", "collectionId": app.users_id},
                {"name": "title", "type": "text"},
            ],
        }
    )
    app.collection({"name": "jlocked", "fields": [{"name": "title", "type": "text"}]})
    app.record("jlocked", {"title": "superusers only"})
    app.collection(
        {
            "name": "staff",
            "type": "auth",
            "createRule": "",
            "listRule": "id = @request.auth.id",
            "viewRule": "id = @request.auth.id",
            "fields": [],
        }
    )
    a, b = app.pair()
    a_doc = app.record("jdocs", {"owner": a.id, "title": "a"}, a.h)["id"]
    b_doc = app.record("jdocs", {"owner": b.id, "title": "b"}, b.h)["id"]
    return World(app, a, b, a_doc, b_doc, app.signup("jwt-staff", "staff"))


@pytest.fixture(scope="module")
def w(shared: SharedApp) -> World:
    return shared.world("jwt", _build)


def _h(token: str) -> dict[str, str]:
    return {"Authorization": token}


def assert_guest(w: World, token: str, user: Actor | None = None) -> None:
    """The token buys nothing: every answer is the answer to a request without it."""
    app = w.app
    user = user or w.a
    h = _h(token)
    assert app.client.post("/api/collections/users/auth-refresh", headers=h).status_code == 401
    r = app.client.get("/api/collections/jdocs/records", headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["items"] == [], r.text
    assert app.client.get(f"/api/collections/jdocs/records/{w.a_doc}", headers=h).status_code == 404
    r = app.client.patch(
        f"/api/collections/jdocs/records/{w.a_doc}", json={"title": "x"}, headers=h
    )
    assert r.status_code == 404
    assert app.client.get("/api/collections/jlocked/records", headers=h).status_code == 403
    r = app.client.get(f"/api/collections/users/records/{user.id}", headers=h)
    assert r.status_code == 404
    assert app.client.get("/api/collections", headers=h).status_code == 401
    assert app.client.get("/api/collections/_superusers/records", headers=h).status_code == 403


def test_genuine_token_works(w: World) -> None:
    """The control for every tampering case below (also with a `Bearer ` prefix)."""
    app = w.app
    for h in (w.a.h, {"Authorization": "Bearer " + w.a.token}):
        assert app.client.post("/api/collections/users/auth-refresh", headers=h).status_code == 200
        r = app.client.get("/api/collections/jdocs/records", headers=h)
        assert [i["id"] for i in r.json()["items"]] == [w.a_doc]
        assert (
            app.client.get(f"/api/collections/jdocs/records/{w.a_doc}", headers=h).status_code
            == 200
        )
        assert app.client.get("/api/collections/jlocked/records", headers=h).status_code == 403
        assert app.client.get("/api/collections", headers=h).status_code == 403


def test_token_minted_with_the_servers_key_material_works(w: World) -> None:
    """The control for "expired": the same minting with a future `exp` is accepted."""
    svc = w.app.services
    coll = svc.store.require("users")
    key = w.app.auth_record("users", w.a.id)["tokenKey"]
    token = issue_token(svc.settings.secret_key, coll, w.a.id, key, 600)
    r = w.app.client.post("/api/collections/users/auth-refresh", headers=_h(token))
    assert r.status_code == 200
    assert r.json()["record"]["id"] == w.a.id


def _none(alg: str, keep_sig: bool) -> Callable[[World], str]:
    def make(w: World) -> str:
        header, claims, sig = token_parts(w.a.token)
        return assemble({**header, "alg": alg}, claims, sig if keep_sig else "")

    return make


def _claims_of_a(w: World, changes: dict[str, Any]) -> dict[str, Any]:
    """A's genuine claims with `changes`; "$b" stands for B's id, None drops the claim."""
    _, claims, _ = token_parts(w.a.token)
    for k, v in changes.items():
        if v is None:
            claims.pop(k, None)
        else:
            claims[k] = w.b.id if v == "$b" else v
    return claims


def _resigned(key: str, alg: str = "HS256", **changes: Any) -> Callable[[World], str]:
    return lambda w: sign_hs(_claims_of_a(w, changes), key, alg)


def _kept_sig(**changes: Any) -> Callable[[World], str]:
    """Claims changed, the genuine signature kept."""

    def make(w: World) -> str:
        header, _, sig = token_parts(w.a.token)
        return assemble(header, _claims_of_a(w, changes), sig)

    return make


def _expired(w: World) -> str:
    """Correctly signed with the server's own key material, but expired."""
    svc = w.app.services
    coll = svc.store.require("users")
    rec = w.app.auth_record("users", w.a.id)
    return issue_token(svc.settings.secret_key, coll, w.a.id, rec["tokenKey"], -60)


def _purpose(purpose: str) -> Callable[[World], str]:
    def make(w: World) -> str:
        svc = w.app.services
        coll = svc.store.require("users")
        return purpose_token(svc, coll, w.app.auth_record("users", w.a.id), purpose)

    return make


def _truncated(w: World) -> str:
    return w.a.token[:-4]


def _sig_of_other_user(w: World) -> str:
    header, claims, _ = token_parts(w.a.token)
    return assemble(header, claims, token_parts(w.b.token)[2])


def _hs256_with_public_parts_as_key(w: World) -> str:
    """Key confusion: signed with things an attacker can know (ids, the collection id)."""
    return sign_hs(_claims_of_a(w, {}), f"{w.app.users_id}{w.a.id}")


def _two_tokens(w: World) -> str:
    return f"{w.b.token[:-2]}xx {w.a.token}"


def _garbage(text: str) -> Callable[[World], str]:
    return lambda w: text


TAMPERED: dict[str, Callable[[World], str]] = {
    "alg-none-no-sig": _none("none", keep_sig=False),
    "alg-none-kept-sig": _none("none", keep_sig=True),
    "alg-None": _none("None", keep_sig=False),
    "alg-NONE": _none("NONE", keep_sig=False),
    "alg-HS512-header-kept-sig": _none("HS512", keep_sig=True),
    "alg-RS256-header-kept-sig": _none("RS256", keep_sig=True),
    "wrong-key": _resigned(WRONG_KEY),
    "wrong-key-hs512": _resigned(WRONG_KEY + WRONG_KEY, "HS512"),
    "empty-key": _resigned(""),
    "key-from-public-parts": _hs256_with_public_parts_as_key,
    "id-of-b-wrong-key": _resigned(WRONG_KEY, id="$b"),
    "id-of-b-kept-sig": _kept_sig(id="$b"),
    "longer-exp-kept-sig": _kept_sig(exp=int(time.time()) + 10 * 365 * 86400),
    "superuser-collection-wrong-key": _resigned(WRONG_KEY, collectionId=SUPERUSERS_ID),
    "superuser-collection-kept-sig": _kept_sig(collectionId=SUPERUSERS_ID),
    "staff-collection-kept-sig": _kept_sig(collectionId="staff"),
    "type-changed-kept-sig": _kept_sig(type="admin"),
    "no-exp-wrong-key": _resigned(WRONG_KEY, exp=None),
    "expired": _expired,
    "verification-token": _purpose("verification"),
    "password-reset-token": _purpose("passwordReset"),
    "truncated-sig": _truncated,
    "signature-of-another-token": _sig_of_other_user,
    "two-tokens": _two_tokens,
    "garbage": _garbage("not.a.token"),
    "empty-segments": _garbage(".."),
    "json-payload-only": _garbage(b64url(b'{"id":"x","type":"auth"}')),
}


@pytest.mark.parametrize("make", TAMPERED.values(), ids=TAMPERED.keys())
def test_tampered_token_is_a_guest(w: World, make: Callable[[World], str]) -> None:
    assert_guest(w, make(w))


def test_superuser_token_tampered_into_a_user_is_refused(w: World) -> None:
    """A superuser's token re-pointed at the users collection (signature kept)."""
    header, claims, sig = token_parts(w.app.su["Authorization"])
    forged = assemble(header, {**claims, "collectionId": w.app.users_id, "id": w.a.id}, sig)
    assert_guest(w, forged)


def test_user_token_gives_no_superuser_access(w: World) -> None:
    app, h = w.app, w.a.h
    assert app.client.get("/api/collections", headers=h).status_code == 403
    r = app.client.post("/api/collections", json={"name": "evil", "fields": []}, headers=h)
    assert r.status_code == 403
    assert app.client.get("/api/collections/_superusers/records", headers=h).status_code == 403
    # a valid token of another collection: 403, as PocketBase's RequireSameCollectionContextAuth
    r = app.client.post("/api/collections/_superusers/auth-refresh", headers=h)
    assert r.status_code == 403
    r = app.client.post(f"/api/collections/users/impersonate/{w.b.id}", json={}, headers=h)
    assert r.status_code == 403
    assert app.client.get("/api/collections/jlocked/records", headers=h).status_code == 403


def test_token_of_another_auth_collection(w: World) -> None:
    app = w.app
    staff, su = w.staff.h, app.su
    # refresh only works at the token's own collection (elsewhere 403, as PocketBase)
    assert app.client.post("/api/collections/users/auth-refresh", headers=staff).status_code == 403
    assert app.client.post("/api/collections/staff/auth-refresh", headers=staff).status_code == 200
    assert app.client.post("/api/collections/users/auth-refresh", headers=su).status_code == 403
    assert app.client.post("/api/collections/staff/auth-refresh", headers=w.a.h).status_code == 403
    # a staff member is not a user: users' owner rules let them see nothing
    r = app.client.get("/api/collections/jdocs/records", headers=staff)
    assert r.status_code == 200
    assert r.json()["items"] == []
    assert app.client.get("/api/collections", headers=staff).status_code == 403


def test_auth_ids_cannot_collide_across_auth_collections(w: World) -> None:
    """Record ids are unique per collection, and a sign-up may choose its id. If a staff
    account could carry a user's id, its token would pass every `id = @request.auth.id` /
    `owner = @request.auth.id` rule written for users. PocketBase 0.40.6 refuses such an id
    (400, `validation_invalid_auth_id`: "Invalid or duplicated auth record id.")."""
    app = w.app
    victim = w.b
    email = "collide-" + victim.email
    r = app.client.post(
        "/api/collections/staff/records",
        json={"id": victim.id, "email": email, "password": PW, "passwordConfirm": PW},
    )
    assert r.status_code == 400, f"a staff account took the id of user {victim.id}: {r.text}"
    assert "id" in r.json()["data"]


def test_token_dies_with_a_password_change(w: World) -> None:
    app = w.app
    u = app.signup("pwchange")
    doc = app.record("jdocs", {"owner": u.id, "title": "u"}, u.h)["id"]
    r = app.client.patch(
        f"/api/collections/users/records/{u.id}",
        json={"password": "brand-new-pass-2", "passwordConfirm": "brand-new-pass-2",
              "oldPassword": PW},
        headers=u.h,
    )  # fmt: skip
    assert r.status_code == 200, r.text
    assert_guest(w, u.token, u)
    assert app.client.get(f"/api/collections/jdocs/records/{doc}", headers=u.h).status_code == 404
    fresh = {"Authorization": app.login(u.email, password="brand-new-pass-2")}
    assert app.client.get(f"/api/collections/jdocs/records/{doc}", headers=fresh).status_code == 200


def test_token_dies_with_its_account(w: World) -> None:
    app = w.app
    u = app.signup("deleted")
    r = app.client.delete(f"/api/collections/users/records/{u.id}", headers=app.su)
    assert r.status_code == 204, r.text
    assert_guest(w, u.token, u)


def test_impersonation_token_cannot_be_refreshed_or_upgraded(w: World) -> None:
    app = w.app
    r = app.client.post(
        f"/api/collections/users/impersonate/{w.a.id}", json={"duration": 600}, headers=app.su
    )
    assert r.status_code == 200, r.text
    token = r.json()["token"]
    assert token_parts(token)[1]["refreshable"] is False
    h = {"Authorization": token}
    assert app.client.post("/api/collections/users/auth-refresh", headers=h).status_code == 403
    r = app.client.get("/api/collections/jdocs/records", headers=h)
    assert [i["id"] for i in r.json()["items"]] == [w.a_doc]
    header, claims, sig = token_parts(token)
    upgraded = assemble(header, {**claims, "refreshable": True}, sig)
    assert_guest(w, upgraded)
    longer = assemble(header, {**claims, "exp": claims["exp"] + 86400 * 365}, sig)
    assert_guest(w, longer)


def test_auth_token_is_not_a_verification_or_reset_token(w: World) -> None:
    app = w.app
    for action, extra in (
        ("confirm-verification", {}),
        (
            "confirm-password-reset",
            {"password": "hijacked-pass-1", "passwordConfirm": "hijacked-pass-1"},
        ),
    ):
        r = app.client.post(f"/api/collections/users/{action}", json={"token": w.a.token, **extra})
        assert r.status_code == 400, r.text
    assert app.auth_record("users", w.a.id)["verified"] is False
    assert app.client.post("/api/collections/users/auth-refresh", headers=w.a.h).status_code == 200
