"""Schemathesis against a real `shipyard serve`, driven by the server's own /api/openapi.json.

Four bounded runs per backend on a seeded data set: as a superuser (everything but the
bulk import), as a guest (everything), as a regular user of an auth collection (everything
but the import, with owner rules in play), then the bulk import as a superuser (last, since
it may delete collections). Each must find no 5xx and no response that breaks the document
(undocumented status, wrong content type, body not matching the schema).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.servers import Server, free_port, start_server, stop_server

# four schemathesis runs, each with a hard stop of its budget + 90 s (455 s together)
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
SEED = "20240131"
MAX_EXAMPLES = 25
USER_MAX_EXAMPLES = 15  # the user run shares the time budget, so it tries fewer per operation
USER_PASSWORD = "fuzz-user-pass-1"
IMPORT_PATH = "/api/collections/import"
NO_STATEFUL = ["--phases", "examples,coverage,fuzzing"]

# Loaded into the schemathesis process (SCHEMATHESIS_HOOKS). A fuzzer holding one login
# must not destroy it or the schema it was given: the superusers collection and the seeded
# collections keep their definitions, and the logins the runs use (the superuser and the
# regular user) survive, by pointing such writes at a name that does not exist (the server
# answers 404, which is still checked). Everything else, including creating and changing
# other data, is fuzzed.
HOOKS = """
import os

import schemathesis

LOGIN_IDS = set(os.environ["SHIPYARD_ST_LOGIN_IDS"].split(","))
PROTECTED = set(os.environ["SHIPYARD_ST_PROTECTED"].split(","))
WRITES = {"PATCH", "DELETE", "PUT"}
MISSING = "st_protected_missing"


@schemathesis.hook
def before_call(context, case, kwargs):
    if case.method.upper() not in WRITES:
        return
    template = case.operation.path
    params = case.path_parameters if case.path_parameters is not None else {}
    parts = template.split("/")
    name = params.get("collection", parts[3] if len(parts) > 3 else "")
    if template in ("/api/collections/{collection}", "/api/collections/{collection}/truncate"):
        if name in PROTECTED:
            params["collection"] = MISSING
    elif "/records/" in template and name in PROTECTED and params.get("id") in LOGIN_IDS:
        params["id"] = MISSING
    elif template == "/api/collections/import" and isinstance(case.body, dict):
        items = case.body.get("collections")
        if isinstance(items, list):
            case.body["collections"] = [
                i for i in items
                if not (isinstance(i, dict) and {str(i.get("id")), str(i.get("name"))} & PROTECTED)
            ]
"""


def _seed(server: Server, token: str) -> dict[str, Any]:
    """Two collections with every common field type, a relation between them, and records."""
    headers = {"Authorization": token}

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        r = httpx.post(server.url + path, json=body, headers=headers, timeout=30)
        assert r.status_code == 200, f"{path}: {r.status_code} {r.text}"
        return dict(r.json())

    authors = post(
        "/api/collections",
        {
            "name": "authors",
            "listRule": "",
            "viewRule": "",
            "createRule": "",
            "fields": [
                {"name": "name", "type": "text", "required": True, "min": 2, "max": 60},
                {"name": "email", "type": "email"},
                {"name": "website", "type": "url"},
                {"name": "age", "type": "number", "min": 0, "max": 150, "onlyInt": True},
                {"name": "active", "type": "bool"},
            ],
        },
    )
    posts = post(
        "/api/collections",
        {
            "name": "posts",
            "listRule": "",
            "viewRule": "",
            "createRule": "",
            "updateRule": "@request.auth.id != ''",
            "deleteRule": None,
            "fields": [
                {"name": "title", "type": "text", "required": True, "max": 100},
                {"name": "body", "type": "editor"},
                {"name": "views", "type": "number"},
                {"name": "featured", "type": "bool"},
                {"name": "status", "type": "select", "values": ["draft", "published"]},
                {
                    "name": "tags",
                    "type": "select",
                    "values": ["news", "tech", "life"],
                    "maxSelect": 3,
                },
                {"name": "meta", "type": "json"},
                {
                    "name": "author",
                    "type": "relation",
                    "collectionId": authors["id"],
                    "maxSelect": 1,
                },
                {
                    "name": "reviewers",
                    "type": "relation",
                    "collectionId": authors["id"],
                    "maxSelect": 5,
                },
                {"name": "published", "type": "date"},
                {"name": "contact", "type": "email"},
                {"name": "link", "type": "url"},
                {"name": "secret", "type": "text", "hidden": True},
            ],
        },
    )
    ids = [
        post(
            "/api/collections/authors/records",
            {
                "name": f"Author {i}",
                "email": f"a{i}@example.com",
                "age": 30 + i,
                "active": i % 2 == 0,
            },
        )["id"]
        for i in range(3)
    ]
    for i in range(5):
        post(
            "/api/collections/posts/records",
            {
                "title": f"Post {i}",
                "views": i * 1.5,
                "featured": i == 0,
                "status": "published" if i % 2 else "draft",
                "tags": ["news", "tech", "life"][: i % 4],
                "meta": {"n": i, "list": [1, 2.5, None]},
                "author": ids[i % 3],
                "reviewers": ids[:2],
                "published": f"2024-01-0{i + 1}T10:00:00Z",
                "contact": "c@example.com",
                "link": "https://example.com/p",
                "secret": "s",
            },
        )
    # a regular user, and a collection whose owner rules let it see and change its own notes
    users = post(
        "/api/collections",
        {
            "name": "users",
            "type": "auth",
            "listRule": "id = @request.auth.id",
            "viewRule": "id = @request.auth.id",
            "createRule": "",
            "updateRule": "id = @request.auth.id",
            "deleteRule": None,
            "fields": [{"name": "name", "type": "text", "max": 50}],
        },
    )
    notes = post(
        "/api/collections",
        {
            "name": "notes",
            "listRule": "owner = @request.auth.id",
            "viewRule": "owner = @request.auth.id",
            "createRule": "@request.auth.id != '' && owner = @request.auth.id",
            "updateRule": "owner = @request.auth.id",
            "deleteRule": "owner = @request.auth.id",
            "fields": [
                {
                    "name": "owner",
                    "type": "relation",
                    "collectionId": users["id"],
                    "maxSelect": 1,
                    "required": True,
                },
                {"name": "text", "type": "text", "max": 200},
                {"name": "pinned", "type": "bool"},
            ],
        },
    )
    user = post(
        "/api/collections/users/records",
        {
            "email": "fuzz-user@example.com",
            "password": USER_PASSWORD,
            "passwordConfirm": USER_PASSWORD,
            "name": "Fuzz",
        },
    )
    # logged in now: the runs' failed logins from this address may block logins later
    user_token = post(
        "/api/collections/users/auth-with-password",
        {"identity": "fuzz-user@example.com", "password": USER_PASSWORD},
    )["token"]
    for i in range(3):
        post("/api/collections/notes/records", {"owner": user["id"], "text": f"note {i}"})
    me = httpx.post(
        server.url + "/api/collections/_superusers/auth-refresh", headers=headers, timeout=30
    ).json()["record"]
    return {
        "login_ids": [me["id"], user["id"]],
        "user_token": user_token,
        "protected": [
            "_superusers",
            me["collectionId"],
            "authors",
            authors["id"],
            "posts",
            posts["id"],
            "users",
            users["id"],
            "notes",
            notes["id"],
        ],
    }


class _LogLines:
    """The server's log file as a list of lines, read afresh on each access."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _lines(self) -> list[str]:
        return self.path.read_text(errors="replace").splitlines(keepends=True)

    def __len__(self) -> int:
        return len(self._lines())

    def __getitem__(self, index: slice) -> list[str]:
        return self._lines()[index]


class _MailSink:
    """An SMTP server that accepts and counts every mail, so the account endpoints that send
    mail (verification, password reset, e-mail change) run their whole path when fuzzed."""

    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.count += 1
        return "250 OK"


@pytest.fixture
def fuzz_server(database_url: str, tmp_path: Path) -> Iterator[tuple[Server, _LogLines]]:
    """A server whose output (a log file, see start_server) is kept so that failures can show
    the server-side tracebacks; its mail goes to a local sink."""
    from aiosmtpd.controller import Controller

    port = free_port()
    sink = Controller(_MailSink(), hostname="127.0.0.1", port=port)
    sink.start()
    mail = {
        "SHIPYARD_SMTP_HOST": "127.0.0.1",
        "SHIPYARD_SMTP_PORT": port,
        "SHIPYARD_SMTP_TLS": "off",
        # tracebacks as text lines, which `server_errors` reads (JSON lines are the default)
        "SHIPYARD_LOG_FORMAT": "text",
    }
    try:
        srv = start_server(tmp_path / "srv", database_url, mail)
        try:
            yield srv, _LogLines(tmp_path / "srv" / "server.log")
        finally:
            stop_server(srv)
    finally:
        sink.stop()


def _schemathesis(
    server: Server,
    cwd: Path,
    args: list[str],
    max_time: int,
    env: dict[str, str] | None = None,
    max_examples: int = MAX_EXAMPLES,
) -> subprocess.CompletedProcess[str]:
    cmd = [
        sys.executable,
        "-c",
        "import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis())",
        "run",
        f"{server.url}/api/openapi.json",
        "--checks",
        CHECKS,
        "--seed",
        SEED,
        "--max-examples",
        str(max_examples),
        "--max-time",
        str(max_time),
        "--workers",
        "1",
        "--request-timeout",
        "20",
        "--generation-database",
        "none",
        "--no-color",
        *args,
    ]
    return subprocess.run(
        cmd,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=max_time + 90,  # a hard stop in case the budget is not honoured
        check=False,
    )


_EXCEPTION = re.compile(r"^[\w.]+(Error|Exception|Warning)\b")
_FRAME = re.compile(r'File "[^"]*/shipyard/([^"]+)", line (\d+), in (\w+)')


def server_errors(log: list[str]) -> list[str]:
    """`request -> exception (innermost Shipyard frame)` for each distinct server-side error,
    so a failure names where to look without digging through the server output."""
    out: list[str] = []
    request, frame = "?", "?"
    for line in log:
        if line.startswith("unhandled error on "):
            request, frame = line[len("unhandled error on ") :].strip(), "?"
        elif (m := _FRAME.search(line)) and (frame == "?" or not m[1].startswith("tools/")):
            frame = f"{m[1]}:{m[2]} {m[3]}"  # the innermost frame above the db layer
        elif _EXCEPTION.match(line):
            entry = f"{request} -> {line.strip()[:200]} (at {frame})"
            if entry not in out:
                out.append(entry)
    return out


def _report(name: str, proc: subprocess.CompletedProcess[str], server_log: list[str]) -> str:
    out = proc.stdout + proc.stderr
    start = out.find("=== FAILURES")
    body = out[start:] if start >= 0 else out[-8000:]
    errors = server_errors(server_log)
    return (
        f"schemathesis run {name!r} exited {proc.returncode}\n{body[-15000:]}\n"
        f"server-side errors ({len(errors)}):\n" + "\n".join(errors[:40])
    )


def test_schemathesis_finds_no_errors_and_no_schema_violations(
    fuzz_server: tuple[Server, _LogLines], tmp_path: Path
) -> None:
    server, server_log = fuzz_server
    token = server.superuser_token()
    seeded = _seed(server, token)
    hooks = tmp_path / "st_hooks.py"
    hooks.write_text(HOOKS)
    auth_env = {
        "SCHEMATHESIS_HOOKS": str(hooks),
        "SHIPYARD_ST_LOGIN_IDS": ",".join(seeded["login_ids"]),
        "SHIPYARD_ST_PROTECTED": ",".join(seeded["protected"]),
    }
    auth = ["--header", f"Authorization: {token}"]
    user = ["--header", f"Authorization: {seeded['user_token']}"]
    # (name, arguments, time budget in seconds, environment, examples per operation)
    runs: list[tuple[str, list[str], int, dict[str, str] | None, int]] = [
        ("superuser", [*auth, "--exclude-path", IMPORT_PATH], 45, auth_env, MAX_EXAMPLES),
        ("guest", [], 20, None, MAX_EXAMPLES),
        ("user", [*user, "--exclude-path", IMPORT_PATH], 20, auth_env, USER_MAX_EXAMPLES),
        # one operation has no links to follow, so no stateful phase
        (
            "superuser import",
            [*auth, "--include-path", IMPORT_PATH, *NO_STATEFUL],
            10,
            auth_env,
            MAX_EXAMPLES,
        ),
    ]
    failures = []
    for name, args, budget, env, examples in runs:
        mark = len(server_log)
        proc = _schemathesis(server, tmp_path, args, budget, env, examples)
        if proc.returncode != 0:
            failures.append(_report(name, proc, server_log[mark:]))
    # the user's login survived the fuzzing, so the user run was not just a run of 401s
    r = httpx.post(
        server.url + "/api/collections/users/auth-refresh",
        headers={"Authorization": seeded["user_token"]},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    assert not failures, "\n\n".join(failures)
