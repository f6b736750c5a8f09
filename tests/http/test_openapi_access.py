"""Who sees what of /api/openapi.json, on SQLite and PostgreSQL: guests and users get exactly
the operations they may call, without hidden fields, rule expressions or `_superusers`;
superusers get the whole document. Every view is valid OpenAPI 3.1 and no cache hands one
caller's view to another."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.testclient import TestClient

from shipyard.http import openapi
from shipyard.records.collections import SUPERUSERS_ID
from tests.helpers.openapi import METHODS, assert_valid_document

H = dict[str, str]
PW = "access-pass-1"

# rule expressions and names a guest or a user must never read in the document
LIST_NOTES = "owner = @request.auth.id && 'k3y' != ''"
OWNER = "owner = @request.auth.id"
MANAGE = "@request.auth.nickname = 'boss'"
SECRETS = ["pinhidden", "internalnote", "secretcode", "vaultx", "@request", "k3y", "boss"]

SYSTEM = {
    "/api/health": {"get", "head"},
    "/api/openapi.json": {"get"},
    "/api/docs": {"get"},
    "/_/": {"get"},
    # Sentry-compatible error ingestion: public, the DSN's key authenticates (docs/errors.md)
    "/api/{projectId}/envelope/": {"post"},
    "/api/{projectId}/store/": {"post"},
    # realtime: anyone may connect; rules filter each subscriber's events (docs/realtime.md)
    "/api/realtime": {"get", "post"},
    # batch: anyone may send one; each request in it is checked under its own rules
    "/api/batch": {"post"},
}
PUBLIC_AUTH = [
    ("auth-with-password", "post"),
    ("auth-methods", "get"),
    ("request-verification", "post"),
    ("confirm-verification", "post"),
    ("request-password-reset", "post"),
    ("confirm-password-reset", "post"),
    ("confirm-email-change", "post"),
]
OWN_TOKEN = [("auth-refresh", "post"), ("request-email-change", "post")]


def _auth_ops(name: str, tails: list[tuple[str, str]]) -> dict[str, set[str]]:
    return {f"/api/collections/{name}/{tail}": {method} for tail, method in tails}


def _records(name: str, coll: set[str], item: set[str]) -> dict[str, set[str]]:
    out = {}
    if coll:
        out[f"/api/collections/{name}/records"] = coll
    if item:
        out[f"/api/collections/{name}/records/{{id}}"] = item
    return out


GUEST_OPS: dict[str, set[str]] = {
    **SYSTEM,
    **_auth_ops("members", PUBLIC_AUTH),
    **_auth_ops("staffers", PUBLIC_AUTH),
    **_records("openbox", {"get", "post"}, {"get", "patch", "delete"}),
    **_records("dropbox", {"post"}, set()),
    **_records("notes", {"get", "post"}, {"get", "patch"}),
    **_records("members", {"get", "post"}, {"get", "patch"}),
    # vaultx (every rule locked) and _superusers: nothing; staffers: login and mails only
}


def _setup(client: TestClient, su: H) -> dict[str, H]:
    """The collections of the tests, and the headers of a member and of a staffer."""

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        r = client.post(path, headers=su, json=body)
        assert r.status_code == 200, r.text
        return dict(r.json())

    locked = {f"{a}Rule": None for a in ("list", "view", "create", "update", "delete")}
    vault = post(
        "/api/collections", {"name": "vaultx", **locked, "fields": [{"name": "n", "type": "text"}]}
    )
    open_rules = {f"{a}Rule": "" for a in ("list", "view", "create", "update", "delete")}
    post(
        "/api/collections",
        {
            "name": "openbox",
            **open_rules,
            "fields": [
                {"name": "title", "type": "text"},
                {"name": "pinhidden", "type": "text", "hidden": True},
                {"name": "vaultref", "type": "relation", "collectionId": vault["id"]},
            ],
        },
    )
    post(
        "/api/collections",
        {"name": "dropbox", **locked, "createRule": "", "fields": [{"name": "m", "type": "text"}]},
    )
    members = post(
        "/api/collections",
        {
            "name": "members",
            "type": "auth",
            "listRule": "id = @request.auth.id",
            "viewRule": "id = @request.auth.id",
            "createRule": "",
            "updateRule": "id = @request.auth.id",
            "deleteRule": None,
            "manageRule": MANAGE,
            "fields": [
                {"name": "nickname", "type": "text"},
                {"name": "secretcode", "type": "text", "hidden": True},
            ],
        },
    )
    post("/api/collections", {"name": "staffers", "type": "auth", **locked})
    post(
        "/api/collections",
        {
            "name": "notes",
            "listRule": LIST_NOTES,
            "viewRule": OWNER,
            "createRule": "@request.auth.id != ''",
            "updateRule": OWNER,
            "deleteRule": None,
            "fields": [
                {"name": "owner", "type": "relation", "collectionId": members["id"]},
                {"name": "internalnote", "type": "text", "hidden": True},
                {"name": "body", "type": "text"},
            ],
        },
    )
    out = {}
    for name in ("members", "staffers"):
        email = f"{name}@example.com"
        post(
            f"/api/collections/{name}/records",
            {"email": email, "password": PW, "passwordConfirm": PW},
        )
        r = client.post(
            f"/api/collections/{name}/auth-with-password", json={"identity": email, "password": PW}
        )
        assert r.status_code == 200, r.text
        out[name] = {"Authorization": r.json()["token"]}
    return out


def _fetch(client: TestClient, headers: H | None = None) -> tuple[dict[str, Any], str]:
    r = client.get("/api/openapi.json", headers=headers)
    assert r.status_code == 200, r.text
    # the view depends on the Authorization header: shared caches must not keep it
    assert r.headers["cache-control"] == "private, no-cache"
    assert "Authorization" in [v.strip() for v in r.headers["vary"].split(",")]
    return dict(r.json()), r.text


def _ops(doc: dict[str, Any]) -> dict[str, set[str]]:
    return {path: {m for m in item if m in METHODS} for path, item in doc["paths"].items()}


def _assert_discloses_nothing(doc: dict[str, Any], raw: str, vault_id: str) -> None:
    for secret in [*SECRETS, vault_id, SUPERUSERS_ID]:
        assert secret not in raw, secret
    names = [*doc["paths"], *doc["components"]["schemas"], *(t["name"] for t in doc["tags"])]
    assert not [n for n in names if "_superusers" in n or "{collection}" in n]
    for item in doc["paths"].values():
        for method, op in item.items():
            if method in METHODS and "x-shipyard-rule" in op:
                assert set(op["x-shipyard-rule"]) == {"name", "public"}


def test_guests_and_users_see_only_what_they_may_call(client: TestClient, su: H) -> None:
    tokens = _setup(client, su)
    vault_id = client.get("/api/collections/vaultx", headers=su).json()["id"]

    guest, raw = _fetch(client)
    assert _ops(guest) == GUEST_OPS
    _assert_discloses_nothing(guest, raw, vault_id)
    assert_valid_document(guest)

    member, raw = _fetch(client, tokens["members"])
    assert _ops(member) == {**GUEST_OPS, **_auth_ops("members", OWN_TOKEN)}
    _assert_discloses_nothing(member, raw, vault_id)
    assert_valid_document(member)

    staffer, raw = _fetch(client, tokens["staffers"])
    assert _ops(staffer) == {**GUEST_OPS, **_auth_ops("staffers", OWN_TOKEN)}
    _assert_discloses_nothing(staffer, raw, vault_id)
    assert_valid_document(staffer)

    # superusers: the whole document, as built from the collections
    full, raw = _fetch(client, su)
    assert_valid_document(full)
    svc = client.app.state.services  # type: ignore[attr-defined]
    parts = client.app.state.openapi_parts  # type: ignore[attr-defined]
    built = openapi.build_document(svc.store.all(), svc.store.version, parts)
    assert full == orjson.loads(orjson.dumps(built))
    for path in (
        "/api/collections/_superusers/auth-with-password",
        "/api/collections/vaultx/records",
        "/api/collections/{collection}/records",
        "/api/collections",
        "/api/jobs",
    ):
        assert path in full["paths"], path
    for secret in SECRETS:
        assert secret in raw, secret


def test_views_leave_out_hidden_fields_and_rule_expressions(client: TestClient, su: H) -> None:
    tokens = _setup(client, su)
    full, _ = _fetch(client, su)
    for headers in ({}, tokens["members"]):
        doc, _ = _fetch(client, headers)
        schemas = doc["components"]["schemas"]
        record = schemas["openbox.Record"]["properties"]
        assert set(record) == set(full["components"]["schemas"]["openbox.Record"]["properties"]) - {
            "pinhidden"
        }
        # a relation into a collection the caller cannot see: no name, no expansion
        assert record["vaultref"]["description"] == "`relation` field: id(s) of related records"
        assert "properties" not in record["expand"]
        assert "pinhidden" not in schemas["openbox.Create"]["properties"]
        assert not {"pinhidden", "pinhidden+", "pinhidden-"} & set(
            schemas["openbox.Update"]["properties"]
        )
        # a relation into a visible collection whose viewRule can let the caller expand it
        notes = schemas["notes.Record"]["properties"]
        assert notes["expand"]["properties"] == {
            "owner": {"$ref": "#/components/schemas/members.Record"}
        }
        auth_record = schemas["members.AuthRecord"]
        assert "secretcode" not in auth_record["properties"]
        assert "secretcode" not in auth_record["required"]
        create = schemas["members.Create"]["properties"]
        assert {"email", "password", "passwordConfirm", "nickname"} <= set(create)
        assert "secretcode" not in create

        # the guard is named, the expression is not
        notes_list = doc["paths"]["/api/collections/notes/records"]["get"]
        assert notes_list["x-shipyard-rule"] == {"name": "listRule", "public": False}
        assert notes_list["description"] == (
            "Guarded by listRule: a condition on the caller and the record (its expression is "
            "shown to superusers only); records it does not match are left out of the page."
        )
        open_list = doc["paths"]["/api/collections/openbox/records"]["get"]
        assert open_list["x-shipyard-rule"] == {"name": "listRule", "public": True}
        assert open_list["description"].startswith('Guarded by listRule: public (`""`)')
        update = doc["paths"]["/api/collections/members/records/{id}"]["patch"]["description"]
        assert update.endswith("takes manage access (the collection's manageRule).")
        tags = {t["name"]: t["description"] for t in doc["tags"]}
        assert "Rule" not in tags["notes"]
        assert set(tags) >= {"system", "notes", "staffers"}

        # links of a created record lead only to operations the caller may call
        def links(name: str, doc: dict[str, Any] = doc) -> set[str]:
            created = doc["paths"][f"/api/collections/{name}/records"]["post"]["responses"]["200"]
            return set(created.get("links", {}))

        assert links("openbox") == {"view", "update", "delete"}
        assert links("notes") == {"view", "update"}
        assert links("dropbox") == set()

    # the superuser's document still states every expression
    notes_list = full["paths"]["/api/collections/notes/records"]["get"]
    assert notes_list["x-shipyard-rule"] == {"name": "listRule", "expression": LIST_NOTES}
    assert "pinhidden" in full["components"]["schemas"]["openbox.Record"]["properties"]


def test_no_caller_gets_another_callers_view(client: TestClient, su: H) -> None:
    tokens = _setup(client, su)
    order = [
        ("guest", {}),
        ("member", tokens["members"]),
        ("superuser", su),
        ("staffer", tokens["staffers"]),
        ("guest", {}),
        ("invalid", {"Authorization": "not-a-token"}),  # an invalid token is no token
        ("member", {"Authorization": "Bearer " + tokens["members"]["Authorization"]}),
        ("superuser", su),
    ]
    seen: dict[str, str] = {}
    for who, headers in order:
        _, raw = _fetch(client, headers)
        key = "guest" if who == "invalid" else who
        assert seen.setdefault(key, raw) == raw, who
    assert len(set(seen.values())) == 4

    # a rule change moves the schema version: every view follows it
    r = client.patch("/api/collections/vaultx", headers=su, json={"listRule": ""})
    assert r.status_code == 200, r.text
    for headers in ({}, tokens["members"]):
        doc, _ = _fetch(client, headers)
        assert set(doc["paths"]["/api/collections/vaultx/records"]) == {"get"}
        assert "vaultx.Record" in doc["components"]["schemas"]
        # the relation into it is now visible, but its viewRule (null) still forbids expanding
        record = doc["components"]["schemas"]["openbox.Record"]["properties"]
        assert "vaultx" in record["vaultref"]["description"]
        assert "properties" not in record["expand"]
