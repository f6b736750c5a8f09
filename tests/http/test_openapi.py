"""The OpenAPI document and the docs page, on SQLite and PostgreSQL.

The document must be valid OpenAPI 3.1, describe every route the app has, follow the live
collections, and be truthful: real responses validate against the schemas it publishes.
"""

from __future__ import annotations

import re
from typing import Any

import jsonschema_rs
import pytest
from starlette.routing import Route
from starlette.testclient import TestClient

from shipyard.http import openapi
from tests.helpers.openapi import assert_valid_document, resolve

H = dict[str, str]


def _doc(client: TestClient, headers: H | None = None) -> dict[str, Any]:
    """The document as the caller of `headers` gets it (the whole of it for a superuser)."""
    r = client.get("/api/openapi.json", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    return dict(r.json())


def _schema_validator(doc: dict[str, Any], ref: dict[str, Any]) -> jsonschema_rs.Validator:
    """A validator for one schema of the document, resolving its `#/components/...` refs."""
    root = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **ref,
        "components": doc["components"],
    }
    return jsonschema_rs.Draft202012Validator(root)


def _response_schema(doc: dict[str, Any], path: str, method: str, status: int) -> dict[str, Any]:
    responses = doc["paths"][path][method]["responses"]
    resp = responses[str(status)]
    if "$ref" in resp:
        resp = doc["components"]["responses"][resp["$ref"].rsplit("/", 1)[1]]
    return dict(resp["content"]["application/json"]["schema"])


def _conforms(doc: dict[str, Any], path: str, method: str, response: Any) -> None:
    """Assert a real response is documented for the operation and matches its schema."""
    status = response.status_code
    assert str(status) in doc["paths"][path][method]["responses"], (path, method, status)
    if status == 204:
        return
    validator = _schema_validator(doc, _response_schema(doc, path, method, status))
    errors = [str(e) for e in validator.iter_errors(response.json())]
    assert not errors, f"{method.upper()} {path} -> {status}: {errors[:5]}\n{response.text[:2000]}"


# ---------------------------------------------------------------------- validity


def test_document_is_valid_openapi_3_1(client: TestClient, su: H) -> None:
    assert_valid_document(_doc(client, su))


def test_every_route_of_the_app_is_documented(client: TestClient, su: H) -> None:
    paths = _doc(client, su)["paths"]
    seen = 0
    for route in client.app.routes:  # type: ignore[attr-defined]
        if not isinstance(route, Route):
            continue  # mounts serve static files (the docs assets), not API operations
        path = re.sub(r"{([^}:]+)(:[^}]+)?}", r"{\1}", route.path)
        assert path in paths, f"{path} is not documented"
        methods = set(route.methods or {"GET"})
        if "GET" in methods:
            methods.discard("HEAD")  # Starlette adds HEAD to every GET route by itself
        for method in methods:
            assert method.lower() in paths[path], f"{method} {path} is not documented"
            seen += 1
    assert seen >= 17  # health, auth, collections, records, openapi, docs
    assert "head" in paths["/api/health"]


# ---------------------------------------------------------------------- live collections


def _create_collection(client: TestClient, su: H) -> dict[str, Any]:
    r = client.post(
        "/api/collections",
        headers=su,
        json={
            "name": "articles",
            "listRule": "",
            "viewRule": None,
            "createRule": "@request.auth.id != ''",
            "fields": [
                {"name": "title", "type": "text", "required": True, "min": 3, "max": 80},
                {"name": "code", "type": "text", "min": 2, "max": 8},
                {"name": "views", "type": "number", "min": 0, "max": 1000, "onlyInt": True},
                {"name": "score", "type": "number"},
                {"name": "published", "type": "bool"},
                {"name": "kind", "type": "select", "values": ["news", "essay"], "required": True},
                {"name": "tags", "type": "select", "values": ["a", "b", "c"], "maxSelect": 2},
                {"name": "meta", "type": "json"},
                {"name": "day", "type": "date"},
                {"name": "mail", "type": "email"},
                {"name": "site", "type": "url"},
                {"name": "secret", "type": "text", "hidden": True},
            ],
        },
    )
    assert r.status_code == 200, r.text
    created = dict(r.json())
    # relations to itself: single and multiple
    fields = [*created["fields"]]
    fields += [
        {"name": "parent", "type": "relation", "collectionId": created["id"], "maxSelect": 1},
        {"name": "related", "type": "relation", "collectionId": created["id"], "maxSelect": 3},
    ]
    r = client.patch("/api/collections/articles", headers=su, json={"fields": fields})
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_document_follows_the_live_collections(client: TestClient, su: H) -> None:
    before = _doc(client, su)
    assert "/api/collections/articles/records" not in before["paths"]
    articles = _create_collection(client, su)
    doc = _doc(client, su)
    assert doc["x-shipyard-schema-version"] > before["x-shipyard-schema-version"]

    coll, item = (
        doc["paths"]["/api/collections/articles/records"],
        doc["paths"]["/api/collections/articles/records/{id}"],
    )
    assert set(coll) >= {"get", "post"}
    assert set(item) >= {"get", "patch", "delete"}
    list_params = {p["$ref"].rsplit("/", 1)[1] for p in coll["get"]["parameters"]}
    assert list_params == {"page", "perPage", "sort", "filter", "expand", "fields", "skipTotal"}
    assert set(coll["post"]["requestBody"]["content"]) == {
        "application/json",
        "multipart/form-data",
    }

    # which rule guards each operation, in words and as an extension
    assert coll["get"]["x-shipyard-rule"] == {"name": "listRule", "expression": ""}
    assert "Guarded by listRule: public" in coll["get"]["description"]
    assert item["get"]["x-shipyard-rule"] == {"name": "viewRule", "expression": None}
    assert "superusers only (rule locked" in item["get"]["description"]
    assert coll["post"]["x-shipyard-rule"] == {
        "name": "createRule",
        "expression": "@request.auth.id != ''",
    }
    assert "Guarded by createRule: `@request.auth.id != ''`" in coll["post"]["description"]
    assert item["patch"]["x-shipyard-rule"]["name"] == "updateRule"
    assert item["delete"]["x-shipyard-rule"]["name"] == "deleteRule"

    schemas = doc["components"]["schemas"]
    create = schemas["articles.Create"]
    props = create["properties"]
    assert set(create["required"]) == {"title", "kind"}
    assert props["title"]["minLength"] == 3
    assert props["title"]["maxLength"] == 80
    assert props["code"]["anyOf"] == [{"maxLength": 0}, {"minLength": 2}]  # "" or 2..8
    assert props["views"]["type"] == "integer"
    assert (
        props["views"]["minimum"],
        props["views"]["maximum"],
    ) == (0, 1000)
    assert props["score"]["type"] == "number"
    assert props["published"]["type"] == "boolean"
    assert props["kind"]["enum"] == ["news", "essay"]
    assert props["tags"]["type"] == "array"
    assert props["tags"]["items"]["enum"] == ["a", "b", "c"]
    assert props["tags"]["maxItems"] == 2
    assert "type" not in props["meta"]  # json fields take any value
    assert props["parent"]["type"] == "string"
    assert props["related"]["type"] == "array"
    assert props["related"]["maxItems"] == 3
    assert "created" not in props
    assert "updated" not in props
    update = schemas["articles.Update"]
    assert "required" not in update
    assert {"views+", "views-", "tags+", "+tags", "tags-"} <= set(update["properties"])

    record = schemas["articles.Record"]
    rp = record["properties"]
    assert rp["collectionId"]["const"] == articles["id"]
    assert rp["collectionName"]["const"] == "articles"
    assert rp["views"]["type"] == "number"
    assert rp["score"]["type"] == "number"
    assert rp["tags"]["type"] == "array"
    assert rp["related"]["type"] == "array"
    assert "type" not in rp["meta"]
    assert rp["day"]["type"] == "string"
    assert rp["created"]["type"] == "string"
    assert "secret" in rp
    assert "superusers" in rp["secret"]["description"]
    assert rp["expand"]["properties"]["parent"] == {"$ref": "#/components/schemas/articles.Record"}
    assert record["additionalProperties"] is False
    assert schemas["articles.List"]["properties"]["items"]["items"] == {
        "$ref": "#/components/schemas/articles.Record"
    }

    # auth collections never document password or tokenKey
    su_record = schemas["_superusers.Record"]["properties"]
    assert "password" not in su_record
    assert "tokenKey" not in su_record
    assert "email" in su_record
    assert "tokenKey" not in schemas["_superusers.Create"]["properties"]
    assert "/api/collections/_superusers/auth-with-password" in doc["paths"]

    r = client.delete("/api/collections/articles", headers=su)
    assert r.status_code == 204, r.text
    after = _doc(client, su)
    assert "/api/collections/articles/records" not in after["paths"]
    assert "articles.Record" not in after["components"]["schemas"]


def test_document_is_built_once_per_schema_version(
    client: TestClient, su: H, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    real = openapi.build_document

    def counting(*args: Any, **kwargs: Any) -> dict[str, Any]:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(openapi, "build_document", counting)
    client.app.state.openapi_cache = None  # type: ignore[attr-defined]
    first = client.get("/api/openapi.json", headers=su).content
    guest = client.get("/api/openapi.json").content  # a view of the same build
    assert client.get("/api/openapi.json", headers=su).content == first != guest
    assert client.get("/api/openapi.json").content == guest
    assert len(calls) == 1
    r = client.post(
        "/api/collections",
        headers=su,
        json={"name": "notes", "fields": [{"name": "body", "type": "text"}]},
    )
    assert r.status_code == 200, r.text
    assert b"/api/collections/notes/records" in client.get("/api/openapi.json", headers=su).content
    assert len(calls) == 2


RECORD_OPS = {
    ("records", "get"): "list",
    ("records", "post"): "create",
    ("records/{id}", "get"): "view",
    ("records/{id}", "patch"): "update",
    ("records/{id}", "delete"): "delete",
}


def _rules_documented(doc: dict[str, Any], collections: list[dict[str, Any]]) -> int:
    """Assert every record operation of every collection names its rule and its current
    expression; returns how many operations were checked."""
    checked = 0
    for c in collections:
        for (tail, method), action in RECORD_OPS.items():
            op = doc["paths"][f"/api/collections/{c['name']}/{tail}"][method]
            rule = c[f"{action}Rule"]
            assert op["x-shipyard-rule"] == {"name": f"{action}Rule", "expression": rule}
            assert op["x-shipyard-guard"] == "rule"
            text = op["description"]
            assert f"Guarded by {action}Rule: " in text, text
            if rule is None:
                assert "superusers only (rule locked" in text, text
            elif rule == "":
                assert "public" in text, text
            else:
                assert f"`{rule}`" in text, text
            checked += 1
    for (tail, method), action in RECORD_OPS.items():
        generic = doc["paths"][f"/api/collections/{{collection}}/{tail}"][method]
        assert generic["x-shipyard-rule"] == {"name": f"{action}Rule"}
    return checked


def test_document_names_the_rule_of_every_record_operation(client: TestClient, su: H) -> None:
    r = client.post(
        "/api/collections",
        headers=su,
        json={
            "name": "notes",
            "listRule": "owner = @request.auth.id",
            "viewRule": "",
            "createRule": "@request.auth.id != ''",
            "updateRule": None,
            "deleteRule": "owner = @request.auth.id && locked = false",
            "fields": [
                {"name": "owner", "type": "text"},
                {"name": "locked", "type": "bool"},
            ],
        },
    )
    assert r.status_code == 200, r.text
    r = client.post("/api/collections", headers=su, json={"name": "users", "type": "auth"})
    assert r.status_code == 200, r.text
    collections = client.get("/api/collections?perPage=500", headers=su).json()["items"]
    doc = _doc(client, su)
    assert _rules_documented(doc, collections) == 5 * len(collections)
    notes = doc["paths"]["/api/collections/notes/records"]
    assert "`owner = @request.auth.id`" in notes["get"]["description"]
    assert "left out" in notes["get"]["description"]  # what the rule does to a list
    assert (
        "superusers only"
        in doc["paths"]["/api/collections/notes/records/{id}"]["patch"]["description"]
    )

    # rules changed through /api/collections show up at once (the cache follows the schema)
    r = client.patch(
        "/api/collections/notes",
        headers=su,
        json={"listRule": "owner = @request.auth.id || locked = true", "viewRule": None},
    )
    assert r.status_code == 200, r.text
    again = _doc(client, su)
    assert again["x-shipyard-schema-version"] > doc["x-shipyard-schema-version"]
    notes = again["paths"]["/api/collections/notes/records"]
    assert notes["get"]["x-shipyard-rule"] == {
        "name": "listRule",
        "expression": "owner = @request.auth.id || locked = true",
    }
    assert "`owner = @request.auth.id || locked = true`" in notes["get"]["description"]
    view = again["paths"]["/api/collections/notes/records/{id}"]["get"]
    assert view["x-shipyard-rule"] == {"name": "viewRule", "expression": None}
    collections = client.get("/api/collections?perPage=500", headers=su).json()["items"]
    assert _rules_documented(again, collections) == 5 * len(collections)

    # an auth collection's update also names who may change e-mail, verified and passwords
    users = again["paths"]["/api/collections/users/records/{id}"]["patch"]
    assert "superusers only (no manageRule)" in users["description"]
    r = client.patch(
        "/api/collections/users",
        headers=su,
        json={"updateRule": "id = @request.auth.id", "manageRule": "@request.auth.id = 'boss'"},
    )
    assert r.status_code == 200, r.text
    users = _doc(client, su)["paths"]["/api/collections/users/records/{id}"]["patch"]
    assert users["x-shipyard-rule"] == {"name": "updateRule", "expression": "id = @request.auth.id"}
    assert "manageRule `@request.auth.id = 'boss'`" in users["description"]


AUTH_ENDPOINTS: dict[str, tuple[str, str, set[int]]] = {
    # path tail: (method, x-shipyard-guard, documented error statuses)
    "auth-with-password": ("post", "identity-password", {400, 404, 429, 503}),
    "auth-refresh": ("post", "own-auth-token", {401, 403, 404}),
    "auth-methods": ("get", "public", {404}),
    "impersonate/{id}": ("post", "superuser", {400, 401, 403, 404}),
    "request-verification": ("post", "public", {400, 404, 429}),
    "confirm-verification": ("post", "emailed-token", {400, 404}),
    "request-password-reset": ("post", "public", {400, 404, 429}),
    "confirm-password-reset": ("post", "emailed-token", {400, 404, 503}),
    "request-email-change": ("post", "own-auth-token", {400, 401, 403, 404, 429}),
    "confirm-email-change": ("post", "emailed-token-and-password", {400, 404, 429, 503}),
}
AUTH_BODIES = {
    "request-verification": {"email"},
    "confirm-verification": {"token"},
    "request-password-reset": {"email"},
    "confirm-password-reset": {"token", "password", "passwordConfirm"},
    "request-email-change": {"newEmail"},
    "confirm-email-change": {"token", "password"},
}


def test_auth_endpoints_are_fully_described(client: TestClient, su: H) -> None:
    r = client.post("/api/collections", headers=su, json={"name": "users", "type": "auth"})
    assert r.status_code == 200, r.text
    doc = _doc(client, su)
    for prefix in ("/api/collections/{collection}", "/api/collections/users"):
        for tail, (method, guard, errors) in AUTH_ENDPOINTS.items():
            op = doc["paths"][f"{prefix}/{tail}"][method]
            assert op["x-shipyard-guard"] == guard, tail
            assert op["description"], tail
            assert op["summary"], tail
            codes = {int(code) for code in op["responses"] if code[0] in "45"}
            assert errors <= codes, (tail, codes)
            for code in codes:  # every error has the {status, message, data} shape
                ref = op["responses"][str(code)]["$ref"]
                schema = resolve(doc, ref)["content"]["application/json"]["schema"]
                assert resolve(doc, schema["$ref"])["required"] == ["status", "message", "data"]
            token_needed = guard in ("own-auth-token", "superuser")
            assert op["security"] == ([{"Authorization": []}] if token_needed else [{}]), tail
            if tail in AUTH_BODIES:
                body = op["requestBody"]
                assert body["required"] is True
                schema = body["content"]["application/json"]["schema"]
                assert set(schema["required"]) == AUTH_BODIES[tail], tail
                assert set(schema["properties"]) == AUTH_BODIES[tail], tail
                assert body["content"]["multipart/form-data"]["schema"] == schema
                assert set(op["responses"]) & {"200", "204"} == {"204"}
    change = doc["paths"]["/api/collections/users/request-email-change"]["post"]
    new_email = change["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert new_email["newEmail"]["format"] == "email"
    assert "validation_invalid_new_email" in change["description"]
    confirm = doc["paths"]["/api/collections/users/confirm-email-change"]["post"]
    assert "validation_invalid_password" in confirm["description"]
    assert "password" in confirm["description"].lower()
    assert (
        "superuser"
        in doc["paths"]["/api/collections/users/impersonate/{id}"]["post"]["description"].lower()
    )


def test_account_responses_match_the_document(client: TestClient, su: H) -> None:
    from shipyard.auth import accounts

    r = client.post(
        "/api/collections", headers=su, json={"name": "users", "type": "auth", "createRule": ""}
    )
    assert r.status_code == 200, r.text
    pw = "first-pass-1"
    ann = client.post(
        "/api/collections/users/records",
        json={"email": "ann@example.com", "password": pw, "passwordConfirm": pw},
    ).json()
    login = client.post(
        "/api/collections/users/auth-with-password",
        json={"identity": "ann@example.com", "password": pw},
    )
    user = {"Authorization": login.json()["token"]}
    doc = _doc(client, su)

    def check(tail: str, method: str, response: Any) -> None:
        _conforms(doc, f"/api/collections/users/{tail}", method, response)
        _conforms(doc, f"/api/collections/{{collection}}/{tail}", method, response)

    url = "/api/collections/users"
    check("auth-with-password", "post", login)
    check("auth-refresh", "post", client.post(f"{url}/auth-refresh", headers=user))
    check("auth-refresh", "post", client.post(f"{url}/auth-refresh", headers=su))  # 403
    check("auth-methods", "get", client.get(f"{url}/auth-methods"))
    imp = f"impersonate/{ann['id']}"
    for headers in (su, user, {}):
        check("impersonate/{id}", "post", client.post(f"{url}/{imp}", json={}, headers=headers))
    for body in ({"email": "nobody@example.com"}, {}):
        check("request-verification", "post", client.post(f"{url}/request-verification", json=body))
        check(
            "request-password-reset",
            "post",
            client.post(f"{url}/request-password-reset", json=body),
        )
    for body in ({"token": "x"}, {"token": "x", "password": "a", "passwordConfirm": "b"}):
        check("confirm-verification", "post", client.post(f"{url}/confirm-verification", json=body))
        check(
            "confirm-password-reset",
            "post",
            client.post(f"{url}/confirm-password-reset", json=body),
        )
    change = f"{url}/request-email-change"
    for body, headers, status in (
        ({"newEmail": "new@example.com"}, {}, 401),
        ({"newEmail": "new@example.com"}, su, 403),
        ({"newEmail": "nope"}, user, 400),
        ({"newEmail": "new@example.com"}, user, 204),  # queued (no SMTP: dead-lettered)
    ):
        r = client.post(change, json=body, headers=headers)
        assert r.status_code == status, r.text
        check("request-email-change", "post", r)

    # confirm, with a real token minted by the server, until the password guessing is blocked
    svc = client.app.state.services  # type: ignore[attr-defined]
    users = svc.store.require("users")
    rec = client.portal.call(svc.auth.auth_record_by, users, "id", ann["id"])  # type: ignore[union-attr]
    token = accounts.purpose_token(svc, users, rec, "emailChange", {"newEmail": "n@example.com"})
    confirm = f"{url}/confirm-email-change"
    statuses = []
    for i in range(svc.settings.auth_max_failures_per_identity + 1):
        r = client.post(confirm, json={"token": token, "password": f"wrong-{i}"})
        check("confirm-email-change", "post", r)
        statuses.append(r.status_code)
    assert statuses[-1] == 429
    assert set(statuses[:-1]) == {400}
    r = client.post("/api/collections/nope/confirm-email-change", json={"token": token})
    _conforms(doc, "/api/collections/{collection}/confirm-email-change", "post", r)
    assert r.status_code == 404


# ---------------------------------------------------------------------- truthfulness


def test_real_responses_match_the_document(client: TestClient, su: H) -> None:
    _create_collection(client, su)
    client.patch("/api/collections/articles", headers=su, json={"viewRule": ""})
    doc = _doc(client, su)
    coll, item = "/api/collections/articles/records", "/api/collections/articles/records/{id}"
    base = "/api/collections/articles/records"

    r = client.post(base, headers=su, json={"title": "Parent", "kind": "news"})
    _conforms(doc, coll, "post", r)
    parent = r.json()["id"]
    r = client.post(
        base + "?expand=parent",
        headers=su,
        data={
            "title": "Child",
            "kind": "essay",
            "code": "ab",
            "views": "7",
            "score": "2.5",
            "published": "true",
            "tags": ["a", "b"],
            "meta": '{"x": [1, 2.5, null]}',
            "day": "2024-05-06T07:08:09Z",
            "mail": "m@example.com",
            "site": "https://example.com",
            "secret": "s3",
            "parent": parent,
            "related": [parent],
        },
    )
    _conforms(doc, coll, "post", r)
    child = r.json()
    assert child["expand"]["parent"]["id"] == parent
    assert child["views"] == 7
    assert child["score"] == 2.5

    for headers in (su, {}):
        for query in (
            "",
            "?expand=parent,related",
            "?fields=id,title,expand.parent.title&expand=parent",
            "?skipTotal=1&perPage=1&page=2",
        ):
            _conforms(doc, coll, "get", client.get(base + query, headers=headers))
        _conforms(
            doc, item, "get", client.get(f"{base}/{child['id']}?expand=related", headers=headers)
        )
    _conforms(
        doc,
        item,
        "patch",
        client.patch(f"{base}/{child['id']}", headers=su, json={"views+": 3, "tags-": "a"}),
    )

    # errors are documented and shaped {status, message, data}
    _conforms(doc, item, "get", client.get(f"{base}/missing"))
    _conforms(doc, coll, "post", client.post(base, headers=su, json={"title": "x", "kind": "nope"}))
    _conforms(doc, coll, "post", client.post(base, json={"title": "Guest", "kind": "news"}))
    _conforms(doc, coll, "get", client.get(base + "?page=abc"))
    _conforms(doc, item, "patch", client.patch(f"{base}/{child['id']}", json={"title": "no"}))
    _conforms(doc, item, "delete", client.delete(f"{base}/{child['id']}", headers=su))

    # auth and schema management
    from tests.helpers.servers import SUPERUSER

    login = client.post(
        "/api/collections/_superusers/auth-with-password",
        json={"identity": SUPERUSER[0], "password": SUPERUSER[1]},
    )
    _conforms(doc, "/api/collections/_superusers/auth-with-password", "post", login)
    _conforms(doc, "/api/collections/{collection}/auth-with-password", "post", login)
    _conforms(
        doc,
        "/api/collections/_superusers/auth-refresh",
        "post",
        client.post("/api/collections/_superusers/auth-refresh", headers=su),
    )
    _conforms(
        doc,
        "/api/collections/_superusers/auth-refresh",
        "post",
        client.post("/api/collections/_superusers/auth-refresh"),
    )
    _conforms(
        doc,
        "/api/collections/_superusers/records",
        "get",
        client.get("/api/collections/_superusers/records", headers=su),
    )
    _conforms(doc, "/api/collections", "get", client.get("/api/collections", headers=su))
    _conforms(doc, "/api/collections", "get", client.get("/api/collections"))
    _conforms(
        doc,
        "/api/collections/{collection}",
        "get",
        client.get("/api/collections/articles", headers=su),
    )
    _conforms(
        doc, "/api/collections/{collection}", "get", client.get("/api/collections/nope", headers=su)
    )
    _conforms(doc, "/api/health", "get", client.get("/api/health"))


# ---------------------------------------------------------------------- docs page


def test_docs_page_and_its_assets_are_served_locally(client: TestClient) -> None:
    r = client.get("/api/docs")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    page = r.text
    assert "<script>" not in page  # the page's own script is a file too (CSP: script-src 'self')
    assert r.headers["content-security-policy"] == openapi.DOCS_HEADERS["Content-Security-Policy"]
    init = client.get("/api/docs/app/docs.js")
    assert init.status_code == 200
    assert "javascript" in init.headers["content-type"]
    assert 'SPEC = "openapi.json"' in init.text
    assert "SwaggerUIBundle(" in init.text
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert assets, assets
    assert not any("//" in a for a in assets), assets  # nothing from a CDN
    types = {".js": "javascript", ".css": "text/css", ".png": "image/png"}
    for asset in assets:
        a = client.get("/api/" + asset)
        assert a.status_code == 200, asset
        want = next(t for ext, t in types.items() if asset.endswith(ext))
        assert want in a.headers["content-type"], (asset, a.headers["content-type"])
        assert len(a.content) > 100
    assert client.get("/api/docs/static/nope.js").status_code == 404


def test_swagger_ui_comes_from_the_installed_package() -> None:
    # package data of a dependency, so an installed (non-editable) Shipyard serves it too
    static = openapi.swagger_ui_dir()
    assert static is not None
    assert (static / "swagger-ui-bundle.js").is_file()
    assert "site-packages" in str(static) or "dist-packages" in str(static)


# ---------------------------------------------------------------------- assembly


def test_parts_that_claim_the_same_name_do_not_merge() -> None:
    """A capability cannot silently replace another's path, component or tag."""
    from shipyard.kernel.spec import OpenAPIPart, SpecConflict, merge_parts

    op = {"get": {"operationId": "a", "responses": {}}}
    base = OpenAPIPart(paths={"/a": op}, schemas={"A": {}}, tags=[{"name": "a"}])
    merged = merge_parts([base, OpenAPIPart(paths={"/b": op}, tags=[{"name": "b"}])])
    assert list(merged.paths) == ["/a", "/b"]
    assert [t["name"] for t in merged.tags] == ["a", "b"]
    for clash in (
        OpenAPIPart(paths={"/a": op}),
        OpenAPIPart(schemas={"A": {}}),
        OpenAPIPart(tags=[{"name": "a"}]),
        OpenAPIPart(responses={"BadRequest": {}}),
    ):
        with pytest.raises(SpecConflict):
            merge_parts([base, OpenAPIPart(responses={"BadRequest": {}}), clash])
