"""`/api/settings` on SQLite and PostgreSQL: superusers only (PocketBase's 401/403), the
GET shape, PATCH stored in `_params` and checked with PocketBase's error shape, values set
at start-up read-only, the SMTP password never returned nor logged, changes seen at once
by another app on the same database, mail sent with the settings in effect, and
`POST /api/settings/test/email`."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from starlette.routing import Route
from starlette.testclient import TestClient

from shipyard.app import create_app
from shipyard.auth import superusers
from shipyard.http import settings_api
from shipyard.ratelimit.rules import DEFAULT_RULES
from shipyard.settings import load_settings
from tests.helpers.openapi import assert_valid_document
from tests.helpers.servers import SUPERUSER
from tests.helpers.smtp import SMTPServer, smtp_server
from tests.helpers.wait import wait_until

H = dict[str, str]
SECRET = "smtp-Secret-7f3a"
LOADING = "An error occurred while loading the submitted data."
SAVING = "An error occurred while saving the new settings."

DEFAULTS: dict[str, Any] = {
    "meta": {
        "appName": "Shipyard",
        "appURL": "http://127.0.0.1:8090",
        "senderName": "Shipyard",
        "senderAddress": "noreply@example.com",
    },
    "smtp": {
        "enabled": False,
        "host": "",
        "port": 587,
        "username": "",
        "tls": "starttls",
        "timeout": 10.0,
    },
    "logs": {"maxDays": 5, "minLevel": 0, "logIP": True, "logAuthId": False},
    "alerts": {  # alerting (docs/alerts.md); the channel secrets are never shown
        "enabled": True,
        "interval": 60.0,
        "repeatInterval": 14400.0,
        "rules": "",
        "emailTo": "",
        "pagerdutyUrl": "https://events.pagerduty.com/v2/enqueue",
        "webhookUrl": "",
        "runbookUrl": "docs/alerts.md",
    },
    "rateLimits": {  # rate limits (docs/ratelimit.md), on by default
        "rules": DEFAULT_RULES,
        "excludedIPs": [],
        "enabled": True,
        "exemptSuperusers": True,
    },
    "s3": {  # file storage (docs/files.md); the secret is never shown
        "enabled": False,
        "bucket": "",
        "region": "",
        "endpoint": "",
        "accessKey": "",
        "forcePathStyle": False,
    },
    "batch": {"enabled": False, "maxRequests": 50, "timeout": 3, "maxBodySize": 0},
    "backups": {  # scheduled backups (docs/backups.md); the secret is never shown
        "cron": "",
        "cronMaxKeep": 3,
        "s3": {
            "enabled": False,
            "bucket": "",
            "region": "",
            "endpoint": "",
            "accessKey": "",
            "forcePathStyle": False,
        },
    },
    "readOnly": {},
}


@contextmanager
def app(
    tmp_path: Path, database_url: str, env: dict[str, str] | None = None
) -> Iterator[tuple[TestClient, H]]:
    """An app on the test's database (several may share it) and superuser headers."""
    settings = load_settings(
        env=env or {}, data_dir=str(tmp_path / "data"), database_url=database_url
    )
    with TestClient(create_app(settings)) as c:
        svc = c.app.state.services  # type: ignore[attr-defined]
        c.portal.call(superusers.upsert, svc, *SUPERUSER)  # type: ignore[union-attr]
        yield c, login(c)


def login(c: TestClient) -> H:
    r = c.post(
        "/api/collections/_superusers/auth-with-password",
        json={"identity": SUPERUSER[0], "password": SUPERUSER[1]},
    )
    return {"Authorization": r.json()["token"]}


def ok(r: Any, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json() if r.content else None


def bad(r: Any, message: str = SAVING) -> dict[str, Any]:
    assert r.status_code == 400, r.text
    body = r.json()
    assert (body["status"], body["message"]) == (400, message), body
    return dict(body["data"])


# ------------------------------------------------------------------ who may


def _user_headers(c: TestClient, su: H) -> H:
    ok(c.post("/api/collections", headers=su, json={"name": "members", "type": "auth"}))
    body = {
        "email": "m@example.com",
        "password": "member-pass-1",
        "passwordConfirm": "member-pass-1",
    }
    ok(c.post("/api/collections/members/records", headers=su, json=body))
    r = c.post(
        "/api/collections/members/auth-with-password",
        json={"identity": "m@example.com", "password": "member-pass-1"},
    )
    return {"Authorization": ok(r)["token"]}


def test_superusers_only(tmp_path: Path, database_url: str) -> None:
    with app(tmp_path, database_url) as (c, su):
        user = _user_headers(c, su)
        calls = [
            ("GET", "/api/settings", None),
            ("PATCH", "/api/settings", {"meta": {"appName": "Hacked"}}),
            ("POST", "/api/settings/test/email", {"email": "a@b.co", "template": "verification"}),
        ]
        for method, path, body in calls:
            for headers, status, message in (
                ({}, 401, "The request requires valid record authorization token."),
                ({"Authorization": "not-a-token"}, 401, None),
                (user, 403, "The authorized record is not allowed to perform this action."),
            ):
                r = c.request(method, path, headers=headers, json=body)
                assert r.status_code == status, (method, path, r.text)
                got = r.json()
                assert (got["status"], got["data"]) == (status, {})
                assert message is None or got["message"] == message
        assert ok(c.get("/api/settings", headers=su))["meta"]["appName"] == "Shipyard"


# ------------------------------------------------------------------ GET and PATCH


def test_get_shape_and_patch_persists(tmp_path: Path, database_url: str) -> None:
    with app(tmp_path, database_url) as (c, su):
        assert ok(c.get("/api/settings", headers=su)) == DEFAULTS
        change = {
            "meta": {"appName": "Acme", "senderAddress": "team@acme.test"},
            "smtp": {"enabled": True, "host": "mail.acme.test", "port": 2525, "tls": True},
        }
        got = ok(c.patch("/api/settings", headers=su, json=change))
        want = {
            **DEFAULTS,
            "meta": {**DEFAULTS["meta"], "appName": "Acme", "senderAddress": "team@acme.test"},
            "smtp": {
                **DEFAULTS["smtp"],
                "enabled": True,
                "host": "mail.acme.test",
                "port": 2525,
                "tls": "implicit",  # PocketBase's `tls: true`
            },
        }
        assert got == want
        assert ok(c.get("/api/settings", headers=su)) == want
        # a GET sent back whole changes nothing; an empty PATCH neither
        assert ok(c.patch("/api/settings", headers=su, json=want)) == want
        assert ok(c.patch("/api/settings", headers=su, json={})) == want
        svc = c.app.state.services  # type: ignore[attr-defined]
        current = c.portal.call(svc.runtime.current)  # type: ignore[union-attr]
        assert (current.app_name, current.smtp_host, current.smtp_tls) == (
            "Acme",
            "mail.acme.test",
            "implicit",
        )
        assert svc.settings.app_name == "Shipyard"  # the start-up object stays as it was
    with app(tmp_path, database_url) as (c, su):  # a restart keeps them
        assert ok(c.get("/api/settings", headers=su)) == want
        # null forgets a stored value (a section: all of them): back to the default
        got = ok(c.patch("/api/settings", headers=su, json={"meta": {"appName": None}}))
        assert got["meta"] == {**want["meta"], "appName": "Shipyard"}
        got = ok(c.patch("/api/settings", headers=su, json={"smtp": None, "meta": None}))
        assert got == DEFAULTS


def test_validation_errors_in_pocketbase_shape(tmp_path: Path, database_url: str) -> None:
    with app(tmp_path, database_url) as (c, su):

        def patch(body: Any) -> Any:
            return c.patch("/api/settings", headers=su, json=body)

        # these three answers are PocketBase's, byte for byte in `data`
        assert bad(patch({"meta": {"appName": ""}})) == {
            "meta": {"appName": {"code": "validation_required", "message": "Cannot be blank."}}
        }
        assert bad(patch({"meta": {"appURL": "notaurl", "senderAddress": "bad"}})) == {
            "meta": {
                "appURL": {"code": "validation_is_url", "message": "Must be a valid URL."},
                "senderAddress": {
                    "code": "validation_is_email",
                    "message": "Must be a valid email address.",
                },
            }
        }
        assert bad(patch({"smtp": {"host": "bad host!"}})) == {
            "smtp": {
                "host": {
                    "code": "validation_is_host",
                    "message": "Must be a valid IP address or DNS name.",
                }
            }
        }
        errors = bad(patch({"smtp": {"enabled": True, "port": 0, "tls": "ssl"}}))
        assert errors == {
            "smtp": {
                "host": {"code": "validation_required", "message": "Cannot be blank."},
                "port": {
                    "code": "validation_min_greater_equal_than_required",
                    "message": "Must be no less than 1.",
                },
                "tls": {"code": "validation_in_invalid", "message": "Must be a valid value."},
            }
        }
        assert bad(patch({"smtp": {"port": 70000}}))["smtp"]["port"]["code"] == (
            "validation_max_less_equal_than_required"
        )
        assert bad(patch({"meta": {"appName": "x" * 256}}))["meta"]["appName"]["code"] == (
            "validation_length_out_of_range"
        )
        assert bad(patch({"meta": {"senderName": "A\r\nBcc: x@y.z"}}))["meta"]["senderName"] == {
            "code": "validation_invalid_value",
            "message": "Must not contain control characters.",
        }
        # wrong types and unknown names: PocketBase's message for a body it cannot load
        errors = bad(
            patch(
                {
                    "meta": {"appName": 5, "hideControls": True},
                    "smtp": {"port": "25", "enabled": "yes", "timeout": -1},
                    "superuserIPs": ["10.0.0.1"],
                    "trustedProxy": 3,
                }
            ),
            LOADING,
        )
        assert errors == {
            "meta": {
                "appName": {"code": "validation_invalid_value", "message": "Must be a string."},
                "hideControls": {
                    "code": "validation_unknown_field",
                    "message": "Shipyard has no such setting.",
                },
            },
            "smtp": {
                "port": {"code": "validation_invalid_value", "message": "Must be an integer."},
                "enabled": {
                    "code": "validation_invalid_value",
                    "message": "Must be true or false.",
                },
            },
            "superuserIPs": {
                "code": "validation_unknown_field",
                "message": "Shipyard has no settings of this name.",
            },
            "trustedProxy": {
                "code": "validation_unknown_field",
                "message": "Shipyard has no settings of this name.",
            },
        }
        assert bad(patch({"meta": []}), LOADING)["meta"]["code"] == "validation_invalid_value"
        assert bad(patch({"smtp": {"timeout": 0}}))["smtp"]["timeout"]["code"] == (
            "validation_min_greater_equal_than_required"
        )
        assert bad(patch({"smtp": {"timeout": 1e300}}))["smtp"]["timeout"]["code"] == (
            "validation_max_less_equal_than_required"
        )
        r = c.patch(
            "/api/settings", headers={**su, "content-type": "application/json"}, content=b"{"
        )
        assert r.status_code == 400
        assert r.json()["data"] == {}
        assert ok(c.get("/api/settings", headers=su)) == DEFAULTS  # nothing was written


# ------------------------------------------------------------------ precedence


def test_values_set_at_start_up_are_read_only(tmp_path: Path, database_url: str) -> None:
    with app(tmp_path, database_url) as (c, su):  # stored first, before the environment says
        ok(c.patch("/api/settings", headers=su, json={"meta": {"appName": "Stored"}}))
        ok(c.patch("/api/settings", headers=su, json={"smtp": {"host": "stored.test"}}))
    (tmp_path / "shipyard.toml").write_text('app_name = "From file"\n')
    env = {
        "SHIPYARD_SMTP_HOST": "env.test",
        "SHIPYARD_SMTP_PASSWORD": SECRET,
        "SHIPYARD_CONFIG": str(tmp_path / "shipyard.toml"),
    }
    with app(tmp_path, database_url, env) as (c, su):
        got = ok(c.get("/api/settings", headers=su))
        assert got["readOnly"] == {
            "meta.appName": f"app_name in {tmp_path / 'shipyard.toml'}",
            "smtp.enabled": "SHIPYARD_SMTP_HOST",
            "smtp.host": "SHIPYARD_SMTP_HOST",
            "smtp.password": "SHIPYARD_SMTP_PASSWORD",
        }
        assert got["meta"]["appName"] == "From file"  # the file wins over the stored value
        assert (got["smtp"]["host"], got["smtp"]["enabled"]) == ("env.test", True)
        assert "password" not in got["smtp"]
        # sending one back unchanged is fine (a GET sent back whole); changing it is not
        assert ok(c.patch("/api/settings", headers=su, json=got)) == got
        errors = bad(
            c.patch(
                "/api/settings",
                headers=su,
                json={"smtp": {"host": "other.test", "enabled": False, "port": 25}},
            )
        )
        assert errors == {
            "smtp": {
                "host": {
                    "code": "validation_read_only",
                    "message": "Read-only: set by SHIPYARD_SMTP_HOST, which takes precedence "
                    "over stored settings.",
                },
                "enabled": {
                    "code": "validation_read_only",
                    "message": "Read-only: set by SHIPYARD_SMTP_HOST, which takes precedence "
                    "over stored settings.",
                },
            }
        }
        # a secret set at start-up cannot be sent at all, not even its own value
        for value in (SECRET, "guess"):
            errors = bad(c.patch("/api/settings", headers=su, json={"smtp": {"password": value}}))
            assert errors["smtp"]["password"]["code"] == "validation_read_only"
        got = ok(c.get("/api/settings", headers=su))
        assert got["smtp"]["port"] == 587  # the refused PATCH wrote nothing
        svc = c.app.state.services  # type: ignore[attr-defined]
        current = c.portal.call(svc.runtime.current)  # type: ignore[union-attr]
        assert (current.smtp_host, current.smtp_password) == ("env.test", SECRET)
    with app(tmp_path, database_url) as (c, su):  # the environment gone, the stored values apply
        got = ok(c.get("/api/settings", headers=su))
        assert (got["meta"]["appName"], got["smtp"]["host"], got["readOnly"]) == (
            "Stored",
            "stored.test",
            {},
        )


def test_the_smtp_password_is_never_returned_nor_logged(
    tmp_path: Path, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with app(tmp_path, database_url) as (c, su):
        change = {"smtp": {"enabled": True, "host": "127.0.0.1", "port": 1, "password": SECRET}}
        change["smtp"]["username"] = "mailer"
        r = c.patch("/api/settings", headers=su, json=change)
        assert r.status_code == 200
        assert SECRET not in r.text
        assert "password" not in r.json()["smtp"]
        r = c.get("/api/settings", headers=su)
        assert SECRET not in r.text
        assert "password" not in r.json()["smtp"]
        svc = c.app.state.services  # type: ignore[attr-defined]
        assert SECRET not in repr(svc.runtime) + repr(svc.settings)
        current = c.portal.call(svc.runtime.current)  # type: ignore[union-attr]
        assert current.smtp_password == SECRET
        assert SECRET not in repr(current)
        # omitted in a PATCH (as a GET sent back has it): kept
        ok(c.patch("/api/settings", headers=su, json=r.json()))
        assert c.portal.call(svc.runtime.current).smtp_password == SECRET  # type: ignore[union-attr]
        # a failing test mail names the server and the user, never the password
        r = c.post(
            "/api/settings/test/email",
            headers=su,
            json={"email": "a@b.co", "template": "verification"},
        )
        assert r.status_code == 400
        assert SECRET not in r.text
        assert "127.0.0.1:1" in r.json()["message"]
        # an empty string clears it (as in PocketBase)
        ok(c.patch("/api/settings", headers=su, json={"smtp": {"password": ""}}))
        assert c.portal.call(svc.runtime.current).smtp_password == ""  # type: ignore[union-attr]
    assert SECRET not in caplog.text


# ------------------------------------------------------------------ every process


def test_another_app_on_the_database_sees_a_change_at_once(
    tmp_path: Path, database_url: str
) -> None:
    if not database_url:  # two apps on one SQLite file
        database_url = f"sqlite:///{tmp_path / 'shared.db'}"
    with (
        app(tmp_path / "a", database_url) as (a, _),
        app(tmp_path / "b", database_url) as (b, su_b),
    ):
        su_a = login(a)  # b's start-up upserted the superuser: a fresh token
        assert ok(b.get("/api/settings", headers=su_b))["meta"]["appName"] == "Shipyard"
        for name in ("First", "Second", "Third"):
            ok(a.patch("/api/settings", headers=su_a, json={"meta": {"appName": name}}))
            assert ok(b.get("/api/settings", headers=su_b))["meta"]["appName"] == name
            page = b.get("/_/")  # the account pages show the name too
            assert f"<title>{name}</title>" in page.text
        # both write: each PATCH starts from what the other committed
        ok(b.patch("/api/settings", headers=su_b, json={"meta": {"senderName": "B"}}))
        got = ok(a.patch("/api/settings", headers=su_a, json={"meta": {"senderAddress": "a@x.io"}}))
        assert (got["meta"]["appName"], got["meta"]["senderName"]) == ("Third", "B")
        assert ok(b.get("/api/settings", headers=su_b)) == got


# ------------------------------------------------------------------ mail


@pytest.fixture
def inbox() -> Iterator[SMTPServer]:
    with smtp_server() as server:
        yield server


def _smtp_change(server: SMTPServer) -> dict[str, Any]:
    return {
        "meta": {"appName": "Runtime App", "senderName": "Runtime Sender"},
        "smtp": {"enabled": True, "host": "127.0.0.1", "port": server.port, "tls": "off"},
    }


def test_account_mails_use_the_settings_in_effect(
    tmp_path: Path, database_url: str, inbox: SMTPServer
) -> None:
    with app(tmp_path, database_url) as (c, su):
        ok(c.post("/api/collections", headers=su, json={"name": "members", "type": "auth"}))
        body = {"email": "m@example.com", "password": "member-pass-1"}
        ok(
            c.post(
                "/api/collections/members/records",
                headers=su,
                json={**body, "passwordConfirm": body["password"]},
            )
        )
        ok(c.patch("/api/settings", headers=su, json=_smtp_change(inbox)))
        reset = {"email": "m@example.com"}
        assert (
            c.post("/api/collections/members/request-password-reset", json=reset).status_code == 204
        )
        (got,) = wait_until(lambda: list(inbox.handler.received), 30, what="the mail")
        assert got.message["Subject"] == "Reset your Runtime App password"
        assert got.message["From"] == "Runtime Sender <noreply@example.com>"
        ok(c.patch("/api/settings", headers=su, json={"meta": {"appName": "Renamed"}}))
        assert (
            c.post("/api/collections/members/request-password-reset", json=reset).status_code == 204
        )
        wait_until(lambda: len(inbox.handler.received) == 2 or None, 30, what="the 2nd mail")
        assert inbox.handler.received[1].message["Subject"] == "Reset your Renamed password"


def test_test_email(tmp_path: Path, database_url: str, inbox: SMTPServer) -> None:
    with app(tmp_path, database_url) as (c, su):

        def send(body: dict[str, Any]) -> Any:
            return c.post("/api/settings/test/email", headers=su, json=body)

        failed = "Failed to send the test email."
        # PocketBase's answers
        assert bad(send({}), failed) == {
            "email": {"code": "validation_required", "message": "Cannot be blank."},
            "template": {"code": "validation_required", "message": "Cannot be blank."},
        }
        assert bad(send({"email": "bad", "template": "nope", "collection": "nosuch"}), failed) == {
            "collection": {
                "code": "validation_invalid_auth_collection",
                "message": "Must be a valid auth collection id or name.",
            },
            "email": {"code": "validation_is_email", "message": "Must be a valid email address."},
            "template": {"code": "validation_in_invalid", "message": "Must be a valid value."},
        }
        # mail off: the reason, in PocketBase's words
        body = {"email": "to@example.com", "template": "verification"}
        r = send(body)
        assert r.status_code == 400
        assert r.json()["message"] == (
            f"{failed} Raw error: \nmail is disabled: set SHIPYARD_SMTP_HOST to send mails"
        )
        assert r.json()["data"] == {}
        ok(c.patch("/api/settings", headers=su, json=_smtp_change(inbox)))
        for template in ("verification", "password-reset", "email-change"):
            assert send({**body, "template": template}).status_code == 204
        subjects = [m.message["Subject"] for m in inbox.handler.received]
        assert subjects == [
            "Verify your Runtime App email",
            "Reset your Runtime App password",
            "Confirm your Runtime App new email address",
        ]
        assert [m.rcpt_tos for m in inbox.handler.received] == [["to@example.com"]] * 3
        ok(c.post("/api/collections", headers=su, json={"name": "members", "type": "auth"}))
        assert send({**body, "collection": "members"}).status_code == 204
        ok(c.patch("/api/settings", headers=su, json={"smtp": {"enabled": False}}))
        assert send(body).status_code == 400  # off again, the host kept
        assert ok(c.get("/api/settings", headers=su))["smtp"]["host"] == "127.0.0.1"


# ------------------------------------------------------------------ OpenAPI


def test_openapi_describes_the_routes_to_superusers_only(client: TestClient, su: H) -> None:
    svc = client.app.state.services  # type: ignore[attr-defined]
    paths = settings_api.openapi_paths(svc.runtime.sections)
    for route in settings_api.routes:
        assert isinstance(route, Route)
        for method in route.methods or ():
            if method != "HEAD":
                assert method.lower() in paths[route.path], (method, route.path)
    doc = ok(client.get("/api/openapi.json", headers=su))
    assert_valid_document(doc)
    assert {p: doc["paths"][p] for p in paths} == paths
    assert "meta" in str(paths["/api/settings"]["get"]["responses"]["200"])
    guest = ok(client.get("/api/openapi.json"))
    assert not any(p.startswith("/api/settings") for p in guest["paths"])
