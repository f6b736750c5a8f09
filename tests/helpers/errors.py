"""Shared by the error-tracking tests: the server's settings, the superusers' error API of
a server, and running the real sentry-sdk app (tests/helpers/sentry_app.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.helpers.servers import Server
from tests.helpers.wait import wait_until

SERVER_SETTINGS = {
    "SHIPYARD_ERRORS_RATE_LIMIT": "100000",
    "SHIPYARD_ERRORS_MAX_BODY_SIZE": "300000",
    "SHIPYARD_ERRORS_MAX_UNCOMPRESSED_SIZE": "2000000",
    # the API allows one origin only; ingestion must allow any (the CORS exemption)
    "SHIPYARD_CORS_ORIGINS": "http://allowed.example",
    "SHIPYARD_EXTENSIONS": "tests.helpers.boom_ext:extension",
}


class Api:
    """The superusers' error API of a server."""

    def __init__(self, server: Server) -> None:
        self.url = server.url
        self.headers = {"Authorization": server.superuser_token()}

    def get(self, path: str, **params: Any) -> Any:
        r = httpx.get(self.url + path, headers=self.headers, params=params, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()

    def project(self, name: str, **extra: Any) -> dict[str, Any]:
        r = httpx.post(self.url + "/api/errors/projects", headers=self.headers,
                       json={"name": name, **extra}, timeout=30)  # fmt: skip
        assert r.status_code == 200, r.text
        return dict(r.json())

    def issues(self, project: int, **params: Any) -> list[dict[str, Any]]:
        return list(self.get("/api/errors", project=project, perPage=500, **params)["items"])

    def set_status(self, issue: str, status: str) -> dict[str, Any]:
        r = httpx.patch(self.url + f"/api/errors/{issue}", headers=self.headers,
                        json={"status": status}, timeout=30)  # fmt: skip
        assert r.status_code == 200, r.text
        return dict(r.json())

    def wait_count(self, project: int, total: int) -> list[dict[str, Any]]:
        """The project's issues once their counts add up to `total`."""

        def done() -> list[dict[str, Any]] | None:
            items = self.issues(project)
            return items if sum(i["count"] for i in items) >= total else None

        return wait_until(done, timeout=60, step=0.1, what=f"{total} events")


def run_sdk(dsn: str, *args: str) -> list[str]:
    """Run tests/helpers/sentry_app.py (the real sentry-sdk) and return the event ids it sent."""
    r = subprocess.run(
        [sys.executable, "-m", "tests.helpers.sentry_app", dsn, *args],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    return [i for i in json.loads(r.stdout.strip().splitlines()[-1])["ids"] if i]


def _export_target(value: Any) -> str | None:
    """The file an `exports` entry names for a browser importing an ES module."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        for condition in ("browser", "import", "default"):
            if condition in value:
                found = _export_target(value[condition])
                if found:
                    return found
    return None


def browser_import_map(node_modules: Path, prefix: str) -> dict[str, Any]:
    """An import map resolving the bare specifiers of @sentry/* (and web-vitals) to their
    ES module files under `prefix`, as a bundler would: the npm package of @sentry/browser
    ships ES modules, not a browser bundle."""
    imports: dict[str, str] = {}
    packages = [p for p in (node_modules / "@sentry").iterdir() if p.is_dir()]
    packages.append(node_modules / "web-vitals")
    for pkg in packages:
        meta = json.loads((pkg / "package.json").read_text())
        name = meta["name"]
        base = f"{prefix}/{pkg.relative_to(node_modules).as_posix()}"
        exports = meta.get("exports") or {".": meta.get("module") or meta.get("main")}
        if isinstance(exports, str):
            exports = {".": exports}
        for sub, value in exports.items():
            target = _export_target(value)
            if target and not sub.endswith(".json") and "*" not in sub:
                imports[name + sub[1:]] = f"{base}/{target.removeprefix('./')}"
    return {"imports": imports}
