"""Collection definitions refused with PocketBase 0.40's field codes and messages (checked
against the binary; the JS SDK's users key on the codes), and the protections an auth
collection's system fields keep through every update — on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

H = dict[str, str]
URL = "/api/collections"
FORMAT = {"code": "validation_match_invalid", "message": "Must be in a valid format."}


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("", {"code": "validation_required", "message": "Cannot be blank."}),
        (None, {"code": "validation_required", "message": "Cannot be blank."}),
        ("a-b", FORMAT),
        ("a b", FORMAT),
        ("posts!", FORMAT),
        ("naïve", FORMAT),
        (5, FORMAT),
        ("9lives", FORMAT),  # PocketBase allows a leading digit; Shipyard's names do not
        (
            "a_via_b",
            {"code": "validation_found_via", "message": 'The value cannot contain "_via_".'},
        ),
        (
            "A_VIA_B",
            {"code": "validation_found_via", "message": 'The value cannot contain "_via_".'},
        ),
        (
            "x" * 56,
            {
                "code": "validation_length_out_of_range",
                "message": "The length must be between 1 and 55.",
            },
        ),
        (
            "_private",
            {
                "code": "validation_collection_name_invalid",
                "message": "Names starting with _ are reserved for system collections.",
            },
        ),
    ],
)
def test_invalid_collection_names(client: TestClient, su: H, name: Any, error: Any) -> None:
    r = client.post(URL, json={"name": name}, headers=su)
    assert r.status_code == 400
    assert r.json() == {
        "status": 400,
        "message": "Failed to create collection.",
        "data": {"name": error},
    }
    assert client.post(URL, json={"name": "x" * 55}, headers=su).status_code == 200


def _error(r: Any) -> Any:
    assert r.status_code == 400, r.text
    return r.json()["data"]


def test_other_definition_errors_use_pocketbase_codes(client: TestClient, su: H) -> None:
    assert _error(client.post(URL, json={"name": "x", "type": "view2"}, headers=su)) == {
        "type": {"code": "validation_in_invalid", "message": "Must be a valid value."}
    }
    assert _error(client.post(URL, json={"name": "x", "id": "bad id!"}, headers=su)) == {
        "id": {"code": "validation_match_invalid", "message": "Must be in a valid format."}
    }
    body = {
        "name": "x",
        "fields": [{"name": "a", "type": "text"}],
        "indexes": ["CREATE INDEX idx_a ON x (a)", "CREATE INDEX IDX_A ON x (a)"],
    }
    assert _error(client.post(URL, json=body, headers=su)) == {
        "indexes": {
            "1": {
                "code": "validation_duplicated_index_name",
                "message": "The index name already exists.",
            }
        }
    }
    body = {"name": "x", "fields": [{"name": "a_via_b", "type": "text"}]}
    assert _error(client.post(URL, json=body, headers=su)) == {
        "fields": {
            "0": {"code": "validation_found_via", "message": 'The value cannot contain "_via_".'}
        }
    }
    for reserved in ("passwordConfirm", "oldPassword"):
        body = {"name": "x", "type": "auth", "fields": [{"name": reserved, "type": "text"}]}
        assert _error(client.post(URL, json=body, headers=su))["fields"]["0"]["code"] == (
            "validation_reserved_field_name"
        )
    body = {
        "name": "x",
        "fields": [
            {"id": "f1", "name": "a", "type": "text"},
            {"id": "f1", "name": "b", "type": "text"},
        ],
    }
    assert _error(client.post(URL, json=body, headers=su)) == {
        "fields": {
            "code": "validation_duplicated_field_id",
            "message": "Duplicated or invalid field id 'f1'.",
        }
    }
    # a base collection may use the auth collections' reserved names
    body = {"name": "x", "fields": [{"name": "passwordConfirm", "type": "text"}]}
    assert client.post(URL, json=body, headers=su).status_code == 200


def test_updates_refused_with_pocketbase_codes(client: TestClient, su: H) -> None:
    r = client.post(URL, json={"name": "members", "type": "auth"}, headers=su)
    assert r.status_code == 200
    fields = r.json()["fields"]
    assert _error(client.patch(f"{URL}/_superusers", json={"name": "admins"}, headers=su)) == {
        "name": {
            "code": "validation_collection_system_name_change",
            "message": "System collection name cannot be changed.",
        }
    }
    r = client.patch(f"{URL}/members", json={"type": "base"}, headers=su)
    assert r.json()["message"] == "Failed to update collection."  # as PocketBase
    assert _error(r) == {
        "type": {
            "code": "validation_collection_type_change",
            "message": "Collection type cannot be changed.",
        }
    }
    renamed = [dict(f, name="mail") if f["name"] == "email" else f for f in fields]
    assert _error(client.patch(f"{URL}/members", json={"fields": renamed}, headers=su)) == {
        "fields": {
            "code": "validation_system_field_change",
            "message": "System fields cannot be deleted or renamed.",
        }
    }
    retyped = [dict(f, type="text") if f["name"] == "email" else f for f in fields]
    data = _error(client.patch(f"{URL}/members", json={"fields": retyped}, headers=su))
    assert data["fields"]["email"]["code"] == "validation_system_field_change"
    assert client.get(f"{URL}/members", headers=su).json()["fields"] == fields


def test_auth_system_fields_keep_their_protections(client: TestClient, su: H) -> None:
    """As PocketBase: left out, they are kept; weakened, they stay system, password and
    tokenKey hidden and required; the unique indexes on email and tokenKey stay."""
    r = client.post(
        URL,
        json={"name": "members", "type": "auth", "fields": [{"name": "nick", "type": "text"}]},
        headers=su,
    )
    created = r.json()
    ids = {f["name"]: f["id"] for f in created["fields"]}
    assert ids == {
        "id": "text3208210256",
        "password": "password901924565",
        "tokenKey": "text2504183744",
        "email": "email3885137012",
        "emailVisibility": "bool1547992806",
        "verified": "bool256245529",
        "nick": "text688598839",
        "created": "autodate2990389176",
        "updated": "autodate3332085495",
    }  # PocketBase's ids: type + CRC-32 of the name
    custom = [f for f in created["fields"] if not f["system"]]
    r = client.patch(f"{URL}/members", json={"fields": custom, "indexes": []}, headers=su)
    assert r.status_code == 200, r.text
    assert r.json()["fields"] == created["fields"]
    assert r.json()["indexes"] == created["indexes"]
    weakened = []
    for f in created["fields"]:
        if f["name"] in ("password", "tokenKey", "email", "verified"):
            f = dict(f, hidden=False, required=False, system=False)
        weakened.append(f)
    r = client.patch(f"{URL}/members", json={"fields": weakened}, headers=su)
    assert r.status_code == 200, r.text
    got = {f["name"]: f for f in r.json()["fields"]}
    for name in ("password", "tokenKey"):
        assert (got[name]["system"], got[name]["hidden"], got[name]["required"]) == (True,) * 3
    assert got["email"]["system"]
    assert not got["email"]["required"]  # optional, as PocketBase
    assert got["verified"]["system"]
    # listed by name only: nothing changes
    by_name = [{"name": n, "type": t} for n, t in (("email", "email"), ("tokenKey", "text"))]
    r = client.patch(f"{URL}/members", json={"fields": custom + by_name}, headers=su)
    assert r.status_code == 200, r.text
    assert {f["name"]: f for f in r.json()["fields"]} == got
