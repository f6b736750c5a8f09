"""/api/settings against the oracle: the same requests to the real PocketBase binary and to
a real `shipyard serve` get the same statuses, and the same bodies for the guard and
validation answers; the settings object has PocketBase's shape for the fields Shipyard has,
with the SMTP password left out by both."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.servers import SUPERUSER, pocketbase_server, start_server, stop_server

USER = ("member@example.com", "member-pass-1")
SHIPYARD_ONLY = {"smtp": {"timeout"}}  # fields PocketBase has no counterpart for
Headers = dict[str, dict[str, str]]


@pytest.fixture(scope="module")
def pocketbase(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Headers]]:
    """A PocketBase server, its guest, user and superuser headers."""
    with pocketbase_server(tmp_path_factory.mktemp("pb") / "pb_data") as url:
        yield url, _headers(url, False)


def _token(url: str, collection: str, identity: str, password: str) -> str:
    r = httpx.post(
        f"{url}/api/collections/{collection}/auth-with-password",
        json={"identity": identity, "password": password},
    )
    assert r.status_code == 200, r.text
    return str(r.json()["token"])


def _headers(url: str, make_users: bool) -> Headers:
    """Guest, user and superuser headers (PocketBase has a `users` collection already)."""
    su = {"Authorization": _token(url, "_superusers", *SUPERUSER)}
    if make_users:
        r = httpx.post(url + "/api/collections", headers=su, json={"name": "users", "type": "auth"})
        assert r.status_code == 200, r.text
    body = {"email": USER[0], "password": USER[1], "passwordConfirm": USER[1]}
    r = httpx.post(url + "/api/collections/users/records", headers=su, json=body)
    assert r.status_code == 200, r.text
    user = {"Authorization": _token(url, "users", *USER)}
    return {"guest": {}, "user": user, "superuser": su}


# (who, method, path, body, compare): "body" compares the whole answer, "message" its
# status and message (Shipyard adds a `data` entry where PocketBase leaves it empty)
CASES: list[tuple[str, str, str, Any, str]] = [
    ("guest", "GET", "/api/settings", None, "body"),
    ("guest", "PATCH", "/api/settings", {"meta": {"appName": "x"}}, "body"),
    ("guest", "POST", "/api/settings/test/email", {}, "body"),
    ("user", "GET", "/api/settings", None, "body"),
    ("user", "PATCH", "/api/settings", {"meta": {"appName": "x"}}, "body"),
    ("user", "POST", "/api/settings/test/email", {}, "body"),
    ("superuser", "PATCH", "/api/settings", {"meta": {"appName": ""}}, "body"),
    (
        "superuser",
        "PATCH",
        "/api/settings",
        {"meta": {"appURL": "notaurl", "senderAddress": "bad"}},
        "body",
    ),
    ("superuser", "PATCH", "/api/settings", {"smtp": {"host": "bad host!"}}, "body"),
    ("superuser", "PATCH", "/api/settings", {"smtp": {"enabled": True, "host": ""}}, "body"),
    ("superuser", "PATCH", "/api/settings", {"smtp": {"port": "abc"}}, "message"),
    ("superuser", "PATCH", "/api/settings", {"meta": {"appName": 123}}, "message"),
    ("superuser", "POST", "/api/settings/test/email", {}, "body"),
    (
        "superuser",
        "POST",
        "/api/settings/test/email",
        {"email": "bad", "template": "nope", "collection": "nosuch"},
        "body",
    ),
]


def test_answers_match_pocketbase(
    pocketbase: tuple[str, Headers], database_url: str, tmp_path: Path
) -> None:
    srv = start_server(tmp_path / "srv", database_url)
    try:
        pb_url, pb_headers = pocketbase
        who = {"pb": pb_headers, "sy": _headers(srv.url, True)}
        for role, method, path, body, compare in CASES:
            pb = httpx.request(method, pb_url + path, headers=who["pb"][role], json=body)
            sy = httpx.request(method, srv.url + path, headers=who["sy"][role], json=body)
            case = (role, method, path, body)
            assert sy.status_code == pb.status_code, (case, pb.text, sy.text)
            if compare == "body":
                assert sy.json() == pb.json(), case
            else:
                got, want = sy.json(), pb.json()
                assert (got["status"], got["message"]) == (want["status"], want["message"]), case

        # the settings object: PocketBase's sections and names for what Shipyard has
        change = {"smtp": {"username": "mailer", "password": "Secret-123"}}
        for url, headers in ((pb_url, who["pb"]), (srv.url, who["sy"])):
            r = httpx.patch(url + "/api/settings", headers=headers["superuser"], json=change)
            assert r.status_code == 200, r.text
        pb_doc = httpx.get(pb_url + "/api/settings", headers=who["pb"]["superuser"]).json()
        sy_doc = httpx.get(srv.url + "/api/settings", headers=who["sy"]["superuser"]).json()
        # PocketBase has no alerting: that section is Shipyard's own (docs/alerts.md)
        assert "alerts" not in pb_doc
        assert set(sy_doc) - {"readOnly", "alerts"} <= set(pb_doc)
        for section in ("meta", "smtp", "logs"):
            extra = set(sy_doc[section]) - set(pb_doc[section])
            assert extra == SHIPYARD_ONLY.get(section, set()), section
            assert "password" not in pb_doc[section]
            assert "password" not in sy_doc[section]
            for name in set(sy_doc[section]) & set(pb_doc[section]) - {"tls"}:
                assert type(sy_doc[section][name]) is type(pb_doc[section][name]), name
        assert sy_doc["smtp"]["username"] == pb_doc["smtp"]["username"] == "mailer"
    finally:
        stop_server(srv)
