"""Collections API (superuser-only) and schema migrations of existing data."""

from __future__ import annotations

from starlette.testclient import TestClient

H = dict[str, str]
URL = "/api/collections"


def test_requires_superuser(client: TestClient) -> None:
    assert client.get(URL).status_code == 401
    assert client.post(URL, json={"name": "x"}).status_code == 401


def test_create_shape_and_defaults(client: TestClient, su: H) -> None:
    r = client.post(
        URL, json={"name": "posts", "fields": [{"name": "title", "type": "text"}]}, headers=su
    )
    assert r.status_code == 200, r.text
    c = r.json()
    assert c["id"].startswith("pbc_")
    assert c["type"] == "base"
    assert c["system"] is False
    names = [f["name"] for f in c["fields"]]
    assert names == ["id", "title", "created", "updated"]
    idf = c["fields"][0]
    assert idf["primaryKey"] is True
    assert idf["autogeneratePattern"] == "[a-z0-9]{15}"
    assert c["listRule"] is None
    listed = client.get(URL, headers=su).json()
    assert {"_superusers", "posts"} <= {i["name"] for i in listed["items"]}
    assert client.get(f"{URL}/posts", headers=su).json()["id"] == c["id"]
    assert client.get(f"{URL}/{c['id']}", headers=su).json()["name"] == "posts"


def test_invalid_definitions(client: TestClient, su: H) -> None:
    cases = [
        {"name": "bad name"},
        {"name": "x", "fields": [{"name": "a", "type": "nosuchtype"}]},
        {"name": "x", "fields": [{"name": "a", "type": "text"}, {"name": "a", "type": "text"}]},
        {"name": "x", "fields": [{"name": "s", "type": "select"}]},
        {"name": "x", "fields": [{"name": "r", "type": "relation", "collectionId": "missing"}]},
        {"name": "x", "indexes": ["DROP TABLE _superusers"]},
        {"name": "x", "indexes": ["CREATE INDEX i ON x (nosuchcolumn)"]},
        {"name": "x", "listRule": 5},
        {"name": "_sneaky"},
    ]
    for body in cases:
        r = client.post(URL, json=body, headers=su)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["status"] == 400
    client.post(URL, json={"name": "dup"}, headers=su)
    assert client.post(URL, json={"name": "dup"}, headers=su).status_code == 400


def test_unique_index_enforced(client: TestClient, su: H) -> None:
    r = client.post(
        URL,
        json={
            "name": "users2",
            "fields": [{"name": "handle", "type": "text"}],
            "indexes": ["CREATE UNIQUE INDEX idx_handle ON users2 (handle)"],
        },
        headers=su,
    )
    assert r.status_code == 200, r.text
    rec = "/api/collections/users2/records"
    assert client.post(rec, json={"handle": "ann"}, headers=su).status_code == 200
    dup = client.post(rec, json={"handle": "ann"}, headers=su)
    assert dup.status_code == 400
    assert dup.json()["data"]["handle"]["code"] == "validation_not_unique"


def test_schema_changes_migrate_data(client: TestClient, su: H) -> None:
    c = client.post(
        URL,
        json={
            "name": "items",
            "listRule": "",
            "fields": [
                {"name": "title", "type": "text"},
                {"name": "qty", "type": "text"},
                {"name": "note", "type": "text"},
            ],
        },
        headers=su,
    ).json()
    rec = client.post(
        "/api/collections/items/records", json={"title": "a", "qty": "12", "note": "n"}, headers=su
    ).json()
    fields = c["fields"]
    by = {f["name"]: f for f in fields}
    # rename a field (same id), convert text "12" to number losslessly, add a field
    by["title"]["name"] = "label"
    by["qty"]["type"] = "number"
    new_fields = [f for f in fields if f["name"] != "qty"] + [
        {**by["qty"]},
        {"name": "extra", "type": "bool"},
    ]
    r = client.patch(f"{URL}/items", json={"name": "things", "fields": new_fields}, headers=su)
    assert r.status_code == 200, r.text
    got = client.get(f"/api/collections/things/records/{rec['id']}", headers=su).json()
    assert got["label"] == "a"
    assert got["qty"] == 12
    assert got["extra"] is False
    assert got["note"] == "n"
    assert client.get("/api/collections/items/records").status_code == 404
    # dropping a field refuses unless confirmed
    fields2 = [f for f in r.json()["fields"] if f["name"] != "note"]
    refused = client.patch(f"{URL}/things", json={"fields": fields2}, headers=su)
    assert refused.status_code == 400
    assert "confirmDataLoss" in refused.json()["message"]
    assert (
        client.get(f"/api/collections/things/records/{rec['id']}", headers=su).json()["note"] == "n"
    )
    ok = client.patch(f"{URL}/things?confirmDataLoss=true", json={"fields": fields2}, headers=su)
    assert ok.status_code == 200
    assert (
        "note" not in client.get(f"/api/collections/things/records/{rec['id']}", headers=su).json()
    )
    # a lossy conversion (text that is no number) also refuses
    fields3 = ok.json()["fields"]
    for f in fields3:
        if f["name"] == "label":
            f["type"] = "number"
    assert client.patch(f"{URL}/things", json={"fields": fields3}, headers=su).status_code == 400


def test_delete_and_references(client: TestClient, su: H) -> None:
    a = client.post(URL, json={"name": "a"}, headers=su).json()
    client.post(
        URL,
        json={"name": "b", "fields": [{"name": "r", "type": "relation", "collectionId": a["id"]}]},
        headers=su,
    )
    assert client.delete(f"{URL}/a", headers=su).status_code == 400
    assert client.delete(f"{URL}/b", headers=su).status_code == 204
    assert client.delete(f"{URL}/a", headers=su).status_code == 204
    assert client.delete(f"{URL}/_superusers", headers=su).status_code == 400
    assert client.get(f"{URL}/a", headers=su).status_code == 404


def test_import_is_idempotent(client: TestClient, su: H) -> None:
    body = {
        "collections": [
            {"name": "tags", "fields": [{"name": "label", "type": "text"}]},
            {
                "name": "notes",
                "fields": [{"name": "tag", "type": "relation", "collectionId": "tags"}],
            },
        ]
    }
    assert client.put(f"{URL}/import", json=body, headers=su).status_code == 204
    first = client.get(f"{URL}/notes", headers=su).json()
    assert client.put(f"{URL}/import", json=body, headers=su).status_code == 204
    second = client.get(f"{URL}/notes", headers=su).json()
    assert [f["id"] for f in first["fields"]] == [f["id"] for f in second["fields"]]
    tags = client.get(f"{URL}/tags", headers=su).json()
    assert second["fields"][1]["collectionId"] == tags["id"]


def test_truncate(client: TestClient, su: H) -> None:
    client.post(URL, json={"name": "t", "fields": [{"name": "x", "type": "text"}]}, headers=su)
    client.post("/api/collections/t/records", json={"x": "1"}, headers=su)
    assert client.delete(f"{URL}/t/truncate", headers=su).status_code == 204
    assert client.get("/api/collections/t/records", headers=su).json()["totalItems"] == 0


def test_system_collection_keeps_name_and_fields(client: TestClient, su: H) -> None:
    r = client.patch(f"{URL}/_superusers", json={"name": "renamed"}, headers=su)
    assert r.status_code == 400
    r = client.patch(
        f"{URL}/_superusers?confirmDataLoss=true", json={"fields": [], "indexes": []}, headers=su
    )
    assert r.status_code == 400
    assert client.get(URL, headers=su).status_code == 200  # still a superuser


def test_hostile_collection_inputs(client: TestClient, su: H) -> None:
    client.post(URL, json={"name": "authors"}, headers=su)
    bad = {"collections": [{"name": "authors", "fields": [{"name": {}, "type": "text"}]}]}
    assert client.put(f"{URL}/import", json=bad, headers=su).status_code == 400
    # as PocketBase: a 64-bit page is served (clamped), a larger number is a 400
    assert client.get(URL, params={"page": str(2**63 - 1)}, headers=su).status_code == 200
    assert client.get(URL, params={"page": "99999999999999999999"}, headers=su).status_code == 400


def test_import_rejects_malformed_items(client: TestClient, su: H) -> None:
    for body in (
        {
            "collections": [
                {"name": "A", "fields": None, "indexes": ["CREATE UNIQUE INDEX i ON posts (slug)"]}
            ]
        },
        {"collections": [{"name": {}}]},
        {"collections": [{"name": "x", "id": []}]},
        {"collections": "nope"},
    ):
        r = client.put(f"{URL}/import", json=body, headers=su)
        assert r.status_code == 400, (body, r.text)
    # a refused import leaves nothing half-created
    assert client.get(f"{URL}/A", headers=su).status_code == 404
