"""The backups API answers as PocketBase 0.40 does: the same requests go to the real
binary and to Shipyard, and the statuses and bodies (messages, error codes) must match.
Where PocketBase's answer carries its own detail (a file path in a raw error, a random
stored name in a message), the comparison says so and checks the rest."""

from __future__ import annotations

import io
import re
import uuid
import zipfile
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from tests.helpers.servers import SUPERUSER, pocketbase_server

MODIFIED = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture(scope="module")
def pb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, str]]:
    with pocketbase_server(tmp_path_factory.mktemp("pb") / "pb_data") as url:
        c = httpx.Client(base_url=url, timeout=30)
        r = c.post(
            "/api/collections/_superusers/auth-with-password",
            json={"identity": SUPERUSER[0], "password": SUPERUSER[1]},
        )
        r.raise_for_status()
        yield c, str(r.json()["token"])
        c.close()


def _zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("hello.txt", "hi")
    return out.getvalue()


def _both(pb: tuple[httpx.Client, str], client: TestClient, su: dict[str, str]) -> Any:
    pbc, token = pb

    def call(method: str, url: str, auth: bool = True, **kw: Any) -> tuple[Any, Any]:
        a = pbc.request(method, url, headers={"Authorization": token} if auth else {}, **kw)
        b = client.request(method, url, headers=su if auth else {}, **kw)
        return a, b

    return call


def _body(r: Any) -> Any:
    return r.json() if r.content else None


@pytest.fixture
def backend() -> str:
    """SQLite only: the answers compared do not depend on the engine."""
    return "sqlite"


def test_errors_match_pocketbase(
    pb: tuple[httpx.Client, str], client: TestClient, su: dict[str, str]
) -> None:
    call = _both(pb, client, su)
    same = [
        ("GET", "/api/backups", False, {}),
        ("POST", "/api/backups", False, {"json": {"name": "x.zip"}}),
        ("POST", "/api/backups/upload", False, {}),
        ("DELETE", "/api/backups/x.zip", False, {}),
        ("POST", "/api/backups/x.zip/restore", False, {}),
        ("POST", "/api/backups", True, {"json": {"name": "Bad.zip"}}),
        ("POST", "/api/backups", True, {"json": {"name": "a.ZIP"}}),
        ("POST", "/api/backups", True, {"json": {"name": "../a.zip"}}),
        ("POST", "/api/backups", True, {"json": {"name": "a" * 160 + ".zip"}}),
        ("POST", "/api/backups", True, {"json": {"name": 123}}),
        ("POST", "/api/backups", True, {"json": [1]}),
        ("GET", "/api/backups/x.zip", True, {}),  # a bearer token is not a file token
        ("GET", "/api/backups/x.zip?token=garbage", False, {}),
        ("POST", "/api/backups/missing.zip/restore", True, {}),
        ("POST", "/api/backups/upload", True, {"files": {"other": ("u.zip", _zip())}}),
        ("POST", "/api/backups/upload", True, {"data": {"file": "text"}}),
    ]
    for method, url, auth, kw in same:
        a, b = call(method, url, auth, **kw)
        assert (b.status_code, _body(b)) == (a.status_code, _body(a)), (method, url)


def test_create_list_download_delete_match(
    pb: tuple[httpx.Client, str], client: TestClient, su: dict[str, str]
) -> None:
    call = _both(pb, client, su)
    name = f"compat_{uuid.uuid4().hex[:8]}.zip"
    a, b = call("POST", "/api/backups", json={"name": name})
    assert a.status_code == b.status_code == 204
    a, b = call("POST", "/api/backups", json={"name": name})  # taken
    assert (b.status_code, b.json()) == (a.status_code, a.json())

    a, b = call("GET", "/api/backups")
    mine = [i for i in b.json() if i["key"] == name]
    theirs = [i for i in a.json() if i["key"] == name]
    assert len(mine) == len(theirs) == 1
    assert set(mine[0]) == set(theirs[0]) == {"key", "size", "modified"}
    assert MODIFIED.match(mine[0]["modified"])
    assert MODIFIED.match(theirs[0]["modified"])

    pbc, token = pb
    ft_a = pbc.post("/api/files/token", headers={"Authorization": token}).json()["token"]
    ft_b = client.post("/api/files/token", headers=su).json()["token"]
    for key, status in ((name, 200), ("missing.zip", 404), ("Bad.zip", 404)):
        ra = pbc.get(f"/api/backups/{key}?token={ft_a}")
        rb = client.get(f"/api/backups/{key}?token={ft_b}")
        assert ra.status_code == rb.status_code == status, key
        if status == 200:
            for h in ("content-type", "content-disposition", "content-security-policy"):
                assert rb.headers[h] == ra.headers[h], h
        else:
            assert rb.json() == ra.json()

    # a file token of someone else than a superuser is refused like no token
    a, b = call("DELETE", f"/api/backups/{name}")
    assert a.status_code == b.status_code == 204
    a, b = call("DELETE", f"/api/backups/{name}")  # PocketBase appends its raw error
    assert a.status_code == b.status_code == 400
    assert a.json()["message"].startswith(b.json()["message"])
    assert a.json()["data"] == b.json()["data"] == {}


def test_upload_matches(
    pb: tuple[httpx.Client, str], client: TestClient, su: dict[str, str]
) -> None:
    call = _both(pb, client, su)
    name = f"up_{uuid.uuid4().hex[:8]}.zip"
    a, b = call("POST", "/api/backups/upload", files={"file": (name, _zip(), "application/zip")})
    assert a.status_code == b.status_code == 204
    a, b = call("POST", "/api/backups/upload", files={"file": (name, _zip(), "application/zip")})
    assert (b.status_code, b.json()) == (a.status_code, a.json())
    a, b = call("POST", "/api/backups/upload", files={"file": ("t.zip", b"not a zip")})
    assert a.status_code == b.status_code == 400
    # PocketBase names the randomly renamed stored file in the message: compare the rest
    assert a.json()["data"]["file"]["code"] == b.json()["data"]["file"]["code"]
    assert b.json()["data"]["file"]["message"].endswith(
        "mime type must be one of: application/zip."
    )
    a, b = call("GET", "/api/backups")
    assert name in {i["key"] for i in a.json()}
    assert name in {i["key"] for i in b.json()}


def test_settings_section_matches(
    pb: tuple[httpx.Client, str], client: TestClient, su: dict[str, str]
) -> None:
    """`backups` in /api/settings: PocketBase's keys and types (the secret shown by
    neither), and its answer to a bad schedule."""
    call = _both(pb, client, su)
    a, b = call("GET", "/api/settings")
    theirs, mine = a.json()["backups"], b.json()["backups"]
    assert set(mine) == set(theirs) == {"cron", "cronMaxKeep", "s3"}
    assert set(mine["s3"]) == set(theirs["s3"])
    assert "secret" not in mine["s3"]
    for key in mine["s3"]:
        assert type(mine["s3"][key]) is type(theirs["s3"][key]), key
    a, b = call("PATCH", "/api/settings", json={"backups": {"cron": "every day"}})
    assert (b.status_code, b.json()) == (a.status_code, a.json())
