"""Auth record ids are unique across auth collections, superusers included, under
concurrency: rules compare `@request.auth.id` with plain ids, so a twin account in another
auth collection would act as its twin. Before, a sign-up looked for the id in the other
tables and then inserted; two concurrent sign-ups choosing one id both passed on
PostgreSQL (15 rounds of 30). Now a registry keyed by the id refuses the second, as
PocketBase does (400 `validation_invalid_auth_id`), on both engines, across processes.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from shipyard.app import create_app
from shipyard.auth import superusers
from shipyard.services import Services
from shipyard.settings import load_settings
from tests.helpers.security import PW
from tests.helpers.servers import SUPERUSER, Server, start_server, stop_server

H = dict[str, str]
ROUNDS = 30
TWIN = {
    "status": 400,
    "message": "Failed to create record.",
    "data": {
        "id": {
            "code": "validation_invalid_auth_id",
            "message": "Invalid or duplicated auth record id.",
        }
    },
}
AUTH = {"type": "auth", "createRule": ""}


def new_id() -> str:
    return uuid.uuid4().hex[:15]


def account(rid: str) -> dict[str, Any]:
    email = f"{uuid.uuid4().hex[:12]}@example.com"
    return {"id": rid, "email": email, "password": PW, "passwordConfirm": PW}


def su_headers(url: str) -> H:
    r = httpx.post(
        url + "/api/collections/_superusers/auth-with-password",
        json={"identity": SUPERUSER[0], "password": SUPERUSER[1]},
    )
    assert r.status_code == 200, r.text
    return {"Authorization": r.json()["token"]}


@pytest.fixture
def two_servers(database_url: str, tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    """Two `shipyard serve` processes on one database, as behind a load balancer."""
    first = start_server(tmp_path / "one", database_url)
    try:
        su = su_headers(first.url)
        for name in ("users", "staff"):
            r = httpx.post(first.url + "/api/collections", json={"name": name, **AUTH}, headers=su)
            assert r.status_code == 200, r.text
        # on SQLite the database is the data directory's file: both processes share it
        second = start_server(tmp_path / ("one" if not database_url else "two"), database_url)
        try:
            yield first, second
        finally:
            stop_server(second)
    finally:
        stop_server(first)


async def _race(
    one: httpx.AsyncClient, two: httpx.AsyncClient, first: str, second: str, su: H, rid: str
) -> list[httpx.Response]:
    def post(client: httpx.AsyncClient, coll: str) -> Any:
        headers = su if coll == "_superusers" else {}
        return client.post(f"/api/collections/{coll}/records", json=account(rid), headers=headers)

    return list(await asyncio.gather(post(one, first), post(two, second)))


def test_concurrent_sign_ups_with_one_id(two_servers: tuple[Server, Server]) -> None:
    """Each round two sign-ups choosing the same id hit two processes at once, in two auth
    collections (every third round one is a superuser created by a superuser): exactly
    one account gets the id, the other gets PocketBase's answer."""
    a, b = two_servers
    su = su_headers(a.url)
    pairs = [("users", "staff"), ("staff", "users"), ("users", "_superusers")]

    async def rounds() -> list[tuple[str, list[int], list[Any]]]:
        out = []
        async with (
            httpx.AsyncClient(base_url=a.url, timeout=30) as one,
            httpx.AsyncClient(base_url=b.url, timeout=30) as two,
        ):
            for i in range(ROUNDS):
                first, second = pairs[i % len(pairs)]
                rid = new_id()
                got = await _race(one, two, first, second, su, rid)
                out.append((rid, [r.status_code for r in got], [r.json() for r in got]))
        return out

    results = asyncio.run(rounds())
    for i, (rid, codes, bodies) in enumerate(results):
        first, second = pairs[i % len(pairs)]
        assert sorted(codes) == [200, 400], (i, codes, bodies)
        loser = bodies[codes.index(400)]
        assert loser == TWIN, (i, loser)
        winner = (first, second)[codes.index(200)]
        assert bodies[codes.index(200)]["id"] == rid
        # the id lives in the winner's collection only
        for coll in (first, second):
            r = httpx.get(f"{a.url}/api/collections/{coll}/records/{rid}", headers=su)
            assert r.status_code == (200 if coll == winner else 404), (i, coll, r.text)


@pytest.fixture
def app_settings(database_url: str, tmp_path: Path) -> Any:
    return load_settings(env={}, data_dir=str(tmp_path / "data"), database_url=database_url)


def open_client(settings: Any) -> tuple[TestClient, H]:
    c = TestClient(create_app(settings))
    c.__enter__()
    svc = c.app.state.services  # type: ignore[attr-defined]
    if c.portal.call(svc.db.fetchone, 'SELECT 1 FROM "_superusers"') is None:  # type: ignore[union-attr]
        c.portal.call(superusers.create, svc, *SUPERUSER)  # type: ignore[union-attr]
    r = c.post(
        "/api/collections/_superusers/auth-with-password",
        json={"identity": SUPERUSER[0], "password": SUPERUSER[1]},
    )
    assert r.status_code == 200, r.text
    return c, {"Authorization": r.json()["token"]}


def sign_up(c: TestClient, coll: str, rid: str, h: H | None = None) -> Any:
    return c.post(f"/api/collections/{coll}/records", json=account(rid), headers=h or {})


def test_deleted_ids_are_free_again_and_superusers_count(client: TestClient, su: H) -> None:
    c = client
    for name in ("users", "staff"):
        assert (
            c.post("/api/collections", json={"name": name, **AUTH}, headers=su).status_code == 200
        )
    rid = new_id()
    assert sign_up(c, "users", rid).status_code == 200
    assert sign_up(c, "staff", rid).json() == TWIN
    assert sign_up(c, "_superusers", rid, su).json() == TWIN
    # the same id in the same collection stays a plain uniqueness error
    r = sign_up(c, "users", rid)
    assert r.json()["data"] == {
        "id": {"code": "validation_not_unique", "message": "Value must be unique."}
    }
    # a delete frees the id: another auth collection may take it
    assert c.delete(f"/api/collections/users/records/{rid}", headers=su).status_code == 204
    assert sign_up(c, "_superusers", rid, su).status_code == 200
    assert sign_up(c, "users", rid).json() == TWIN
    assert c.delete(f"/api/collections/_superusers/records/{rid}", headers=su).status_code == 204
    assert sign_up(c, "staff", rid).status_code == 200
    # dropping a whole auth collection frees its ids too
    assert c.delete("/api/collections/staff", headers=su).status_code == 204
    assert sign_up(c, "users", rid).status_code == 200
    # a superuser's id cannot be taken by a sign-up
    me = c.post("/api/collections/_superusers/auth-refresh", headers=su).json()["record"]["id"]
    assert sign_up(c, "users", me).json() == TWIN


async def _as_before_the_registry(svc: Services, twin_of: str) -> None:
    """Turn the database into one written by a version without the registry: no triggers,
    no registry, no mark; and the twin that version let a sign-up create."""
    db = svc.db
    async with db.transaction() as tx:
        if db.dialect == "postgres":
            for c in svc.store.all():
                if c.type == "auth":
                    await tx.execute(f'DROP TRIGGER IF EXISTS "_auth_ids" ON "{c.table}"')
        else:
            rows = await tx.fetchall("SELECT name FROM sqlite_master WHERE type = 'trigger'")
            for (name,) in rows:
                await tx.execute(f'DROP TRIGGER "{name}"')
        await tx.execute('DROP TABLE "_auth_ids"')
        await tx.execute("""DELETE FROM "_meta" WHERE "key" = 'auth_ids_registered'""")
    await db.execute(
        'INSERT INTO "staff" ("id", "email", "password", "tokenKey", "emailVisibility", '
        '"verified", "created", "updated") VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
        (twin_of, "old-twin@example.com", "x", "k" * 50, False, False, "", ""),
    )


def test_existing_databases_are_backfilled_at_start(
    app_settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    c, su = open_client(app_settings)
    try:
        for name in ("users", "staff"):
            r = c.post("/api/collections", json={"name": name, **AUTH}, headers=su)
            assert r.status_code == 200, r.text
        kept, twin = new_id(), new_id()
        assert sign_up(c, "users", kept).status_code == 200
        assert sign_up(c, "users", twin).status_code == 200
        svc = c.app.state.services  # type: ignore[attr-defined]
        c.portal.call(_as_before_the_registry, svc, twin)  # type: ignore[union-attr]
    finally:
        c.__exit__(None, None, None)
    # the upgraded version starts on that database
    with caplog.at_level(logging.WARNING, logger="shipyard.schema"):
        c, su = open_client(app_settings)
    try:
        warned = [r.getMessage() for r in caplog.records if "share their id" in r.getMessage()]
        assert warned == [
            "1 record(s) of auth collection staff share their id with an account of another "
            "auth collection: rules that compare ids cannot tell them apart; delete or "
            "re-create them"
        ]
        # ids from before the upgrade are registered: no new twin of them
        assert sign_up(c, "staff", kept).json() == TWIN
        assert sign_up(c, "_superusers", kept, su).json() == TWIN
        me = c.post("/api/collections/_superusers/auth-refresh", headers=su).json()["record"]
        assert sign_up(c, "staff", me["id"]).json() == TWIN
        # new sign-ups register too, and deletes of old records free their ids
        fresh = new_id()
        assert sign_up(c, "staff", fresh).status_code == 200
        assert sign_up(c, "users", fresh).json() == TWIN
        assert c.delete(f"/api/collections/users/records/{kept}", headers=su).status_code == 204
        assert sign_up(c, "staff", kept).status_code == 200
    finally:
        c.__exit__(None, None, None)


def test_the_registry_survives_schema_changes(client: TestClient, su: H) -> None:
    """The triggers belong to the table: renaming the collection and adding, renaming,
    retyping and dropping its fields keep ids registered and released."""
    c = client
    body = {"name": "users", **AUTH, "fields": [{"name": "nick", "type": "text"}]}
    assert c.post("/api/collections", json=body, headers=su).status_code == 200
    assert c.post("/api/collections", json={"name": "staff", **AUTH}, headers=su).status_code == 200
    before = new_id()
    assert sign_up(c, "users", before).status_code == 200
    fields = c.get("/api/collections/users", headers=su).json()["fields"]
    nick = next(f for f in fields if f["name"] == "nick")
    changed = [f for f in fields if f["name"] != "nick"]
    changed += [{**nick, "name": "alias", "type": "number"}, {"name": "age", "type": "number"}]
    r = c.patch(
        "/api/collections/users?confirmDataLoss=true",
        json={"name": "members", "fields": changed},
        headers=su,
    )
    assert r.status_code == 200, r.text
    fields = [f for f in r.json()["fields"] if f["name"] != "alias"]
    r = c.patch(
        "/api/collections/members?confirmDataLoss=true", json={"fields": fields}, headers=su
    )
    assert r.status_code == 200, r.text
    assert sign_up(c, "staff", before).json() == TWIN
    after = new_id()
    assert sign_up(c, "members", after).status_code == 200
    assert sign_up(c, "staff", after).json() == TWIN
    assert c.delete(f"/api/collections/members/records/{after}", headers=su).status_code == 204
    assert sign_up(c, "staff", after).status_code == 200
