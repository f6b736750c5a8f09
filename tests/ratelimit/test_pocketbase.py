"""The `rateLimits` settings and the 429 answer against the oracle: the same requests to the
real PocketBase binary and to Shipyard get the same statuses, the same validation bodies,
the same settings shape (Shipyard adds `exemptSuperusers`) and the same 429 body."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from shipyard.app import create_app
from shipyard.auth import superusers
from shipyard.settings import load_settings
from tests.helpers.servers import SUPERUSER, pocketbase_server

# (body of a PATCH /api/settings, compare): "body" compares the whole answer, "message" its
# status and message (Shipyard says which field failed to load where PocketBase says nothing)
CASES: list[tuple[dict[str, Any], str]] = [
    ({"rateLimits": {"enabled": True, "rules": []}}, "body"),
    (
        {
            "rateLimits": {
                "enabled": True,
                "rules": [
                    {"label": "bad label!", "audience": "x", "duration": 0, "maxRequests": 0},
                    {"label": "/api/", "maxRequests": 5, "duration": 1},
                    {"label": "/api/", "maxRequests": 5, "duration": 1},
                    {"label": "a:b:c", "maxRequests": -1, "duration": -5},
                ],
            }
        },
        "body",
    ),
    ({"rateLimits": {"rules": [{"label": "/x"}, {"label": "/x", "audience": "@guest"}]}}, "body"),
    (
        {
            "rateLimits": {
                "rules": [
                    {"label": "/api/", "duration": 1, "maxRequests": 5},
                    {"label": "users:auth", "audience": "@auth", "duration": 1, "maxRequests": 5},
                    {"label": "/api/", "audience": "@auth", "duration": 1, "maxRequests": 5},
                ]
            }
        },
        "body",
    ),
    ({"rateLimits": {"excludedIPs": ["x", "", "10.0.0.0/33"]}}, "body"),
    ({"rateLimits": {"rules": "x"}}, "message"),
    ({"rateLimits": {"rules": [{"label": "/api/", "maxRequests": 1.5, "duration": 1}]}}, "message"),
    ({"rateLimits": {"rules": [{"label": "/api/", "maxRequests": 1, "duration": "1"}]}}, "message"),
    (
        {
            "rateLimits": {
                "enabled": True,
                "excludedIPs": ["10.0.0.0/8", "192.0.2.1"],
                "rules": [
                    {"label": "GET /api/health", "duration": 60, "maxRequests": 1},
                    {"label": "*:create", "audience": "@guest", "duration": 5, "maxRequests": 20},
                    {"label": "/api/", "audience": "@auth", "duration": 10, "maxRequests": 300},
                ],
            }
        },
        "body",
    ),
]


@pytest.fixture(scope="module")
def pocketbase(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with pocketbase_server(tmp_path_factory.mktemp("pb") / "pb_data") as url:
        yield url


def _login(post: Any) -> dict[str, str]:
    r = post(
        "/api/collections/_superusers/auth-with-password",
        json={"identity": SUPERUSER[0], "password": SUPERUSER[1]},
    )
    assert r.status_code == 200, r.text
    return {"Authorization": r.json()["token"]}


def test_settings_and_429_match_pocketbase(
    pocketbase: str, database_url: str, tmp_path: Path
) -> None:
    settings = load_settings(env={}, data_dir=str(tmp_path / "data"), database_url=database_url)
    with TestClient(create_app(settings)) as sy, httpx.Client(base_url=pocketbase) as pb:
        sy.portal.call(superusers.create, sy.app.state.services, *SUPERUSER)  # type: ignore[attr-defined, union-attr]
        pb_su, sy_su = _login(pb.post), _login(sy.post)
        for body, compare in CASES:
            want = pb.patch("/api/settings", json=body, headers=pb_su)
            got = sy.patch("/api/settings", json=body, headers=sy_su)
            assert got.status_code == want.status_code, (body, want.text, got.text)
            if want.status_code != 200:
                if compare == "body":
                    assert got.json() == want.json(), body
                else:
                    w, g = want.json(), got.json()
                    assert (g["status"], g["message"]) == (w["status"], w["message"]), body

        # the section: PocketBase's fields and values, and Shipyard's exemptSuperusers
        want = pb.get("/api/settings", headers=pb_su).json()["rateLimits"]
        got = sy.get("/api/settings", headers=sy_su).json()["rateLimits"]
        assert got.pop("exemptSuperusers") is True
        assert got == want

        # the last case left `GET /api/health` at one a minute, on both
        answers = [(pb.get("/api/health"), sy.get("/api/health")) for _ in range(2)]
        assert [(p.status_code, s.status_code) for p, s in answers] == [(200, 200), (429, 429)]
        assert answers[1][1].json() == answers[1][0].json()
