"""The security suite's shared app: one running app per backend and session, the users
collection every module builds on, actors, and hand-made JWTs (fixtures in
tests/security/conftest.py; why the app is shared is explained there)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
from starlette.testclient import TestClient

from shipyard.app import create_app
from shipyard.services import Services
from shipyard.settings import load_settings
from tests.helpers.servers import SUPERUSER, fresh_pg_database

H = dict[str, str]
PW = "correct-horse-battery-1"
BACKENDS = ("sqlite", "postgres")
SUPERUSERS_ID = "pbc_3142635823"
T = TypeVar("T")

# The one "users" auth collection of a shared app. Sign-up is open but may not set `role`
# (PocketBase lets a createRule of "" set every non-protected field, so `role` needs the
# guard); users see, change and delete only themselves and may not change their own role.
# `flag` is hidden: an internal mark about the user that the user must not learn.
USERS: dict[str, Any] = {
    "name": "users",
    "type": "auth",
    "createRule": "@request.body.role:isset = false",
    "listRule": "id = @request.auth.id",
    "viewRule": "id = @request.auth.id",
    "updateRule": "id = @request.auth.id && @request.body.role:isset = false",
    "deleteRule": "id = @request.auth.id",
    "fields": [
        {"name": "role", "type": "text"},
        {"name": "nick", "type": "text"},
        {"name": "flag", "type": "text", "hidden": True},  # set by superusers only
    ],
}


@dataclass
class Actor:
    """Someone who sends requests: a user (id, e-mail, token headers) or nobody."""

    name: str
    id: str = ""
    email: str = ""
    h: H = field(default_factory=dict)

    @property
    def token(self) -> str:
        return self.h.get("Authorization", "")


@dataclass
class SharedApp:
    backend: str
    client: TestClient
    su: H
    users_id: str
    worlds: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------ in-process access

    @property
    def services(self) -> Services:
        svc: Services = self.client.app.state.services  # type: ignore[attr-defined]
        return svc

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a coroutine function of the app on the app's own event loop."""
        portal = self.client.portal
        assert portal is not None
        return portal.call(fn, *args)

    def world(self, name: str, build: Callable[[SharedApp], T]) -> T:
        """A module's world, built once per app however often pytest asks for it."""
        if name not in self.worlds:
            self.worlds[name] = build(self)
        got: T = self.worlds[name]
        return got

    # ------------------------------------------------------------ set-up helpers

    def collection(self, body: dict[str, Any]) -> dict[str, Any]:
        r = self.client.post("/api/collections", json=body, headers=self.su)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def record(self, coll: str, body: dict[str, Any], h: H | None = None) -> dict[str, Any]:
        r = self.client.post(f"/api/collections/{coll}/records", json=body, headers=h or self.su)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def su_view(self, coll: str, rid: str) -> dict[str, Any] | None:
        r = self.client.get(f"/api/collections/{coll}/records/{rid}", headers=self.su)
        assert r.status_code in (200, 404), r.text
        return dict(r.json()) if r.status_code == 200 else None

    def su_count(self, coll: str, filt: str) -> int:
        r = self.client.get(
            f"/api/collections/{coll}/records", params={"filter": filt}, headers=self.su
        )
        assert r.status_code == 200, r.text
        return int(r.json()["totalItems"])

    def signup(self, name: str, coll: str = "users", **extra: Any) -> Actor:
        """A new account (unique e-mail) that is logged in with its password."""
        email = f"{name}-{uuid.uuid4().hex[:10]}@example.com"
        r = self.client.post(
            f"/api/collections/{coll}/records",
            json={"email": email, "password": PW, "passwordConfirm": PW, **extra},
        )
        assert r.status_code == 200, r.text
        return Actor(name, r.json()["id"], email, {"Authorization": self.login(email, coll)})

    def pair(self) -> tuple[Actor, Actor]:
        """Two users shared by every module of this app (sign-ups are costly). Tests may use
        them for attacks that must fail, never for changes that must succeed."""
        return self.world("pair", lambda app: (app.signup("a"), app.signup("b")))

    def login(self, email: str, coll: str = "users", password: str = PW) -> str:
        r = self.client.post(
            f"/api/collections/{coll}/auth-with-password",
            json={"identity": email, "password": password},
        )
        assert r.status_code == 200, r.text
        return str(r.json()["token"])

    def auth_record(self, coll: str, rid: str) -> dict[str, Any]:
        """The stored auth record, tokenKey included (read in-process; never over HTTP)."""
        svc = self.services
        c = svc.store.require(coll)
        rec = self.call(svc.auth.auth_record_by, c, "id", rid)
        assert rec is not None
        return dict(rec)


class SharedApps:
    """Lazily started apps, one per backend, closed at the end of the session."""

    def __init__(self, tmp: pytest.TempPathFactory, pg_admin_url: str) -> None:
        self.tmp = tmp
        self.pg_admin_url = pg_admin_url
        self.apps: dict[str, SharedApp] = {}
        self.stack = contextlib.ExitStack()

    def get(self, backend: str) -> SharedApp:
        if backend not in self.apps:
            database_url = ""
            if backend == "postgres":
                database_url = fresh_pg_database(self.pg_admin_url)
            data_dir: Path = self.tmp.mktemp(f"security-{backend}") / "data"
            # the rules and guards under test, not the rate limits (tests/ratelimit has those):
            # many sign-ins from one test client would hit PocketBase's default `*:auth` rule
            settings = load_settings(
                env={},
                data_dir=str(data_dir),
                database_url=database_url,
                ratelimit_enabled=False,
            )
            client = self.stack.enter_context(
                TestClient(create_app(settings), raise_server_exceptions=False)
            )
            from shipyard.auth import superusers

            svc = client.app.state.services  # type: ignore[attr-defined]
            client.portal.call(superusers.create, svc, *SUPERUSER)  # type: ignore[union-attr]
            r = client.post(
                "/api/collections/_superusers/auth-with-password",
                json={"identity": SUPERUSER[0], "password": SUPERUSER[1]},
            )
            assert r.status_code == 200, r.text
            su = {"Authorization": r.json()["token"]}
            r = client.post("/api/collections", json=USERS, headers=su)
            assert r.status_code == 200, r.text
            self.apps[backend] = SharedApp(backend, client, su, r.json()["id"])
        return self.apps[backend]


# ---------------------------------------------------------------- token crafting


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def token_parts(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """(header, claims, signature) of a JWT, without checking anything."""
    head, body, sig = token.split(".")
    return orjson.loads(unb64url(head)), orjson.loads(unb64url(body)), sig


def assemble(header: dict[str, Any], claims: dict[str, Any], sig: str) -> str:
    return f"{b64url(orjson.dumps(header))}.{b64url(orjson.dumps(claims))}.{sig}"


def sign_hs(claims: dict[str, Any], key: str, alg: str = "HS256") -> str:
    """An HMAC-signed JWT made by hand (no library checks on key length or claims)."""
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    head = b64url(orjson.dumps({"alg": alg, "typ": "JWT"}))
    body = b64url(orjson.dumps(claims))
    sig = hmac.new(key.encode(), f"{head}.{body}".encode(), digest).digest()
    return f"{head}.{body}.{b64url(sig)}"
