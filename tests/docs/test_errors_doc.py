"""docs/errors.md's examples, run for real against `shipyard serve` on SQLite and
PostgreSQL: the CLI prints a DSN, curl creates a project, the Python example (the real
sentry-sdk) reports to it, the issue it makes has the documented shape, and curl lists and
resolves it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.docblocks import block, replace
from tests.helpers.docsapp import same_shape
from tests.helpers.servers import Server, start_server, stop_server
from tests.helpers.wait import wait_until

BIN = str(Path(sys.executable).parent)
BASE = "http://127.0.0.1:8090"
# `shipyard` as this interpreter's module, whether or not the console script is installed
PRELUDE = f'set -euo pipefail\nshipyard() {{ "{sys.executable}" -m shipyard.cli "$@"; }}\n'


@pytest.fixture
def srv(tmp_path: Path, database_url: str) -> Iterator[Server]:
    s = start_server(tmp_path / "srv", database_url)
    try:
        yield s
    finally:
        stop_server(s)


def sh(script: str, env: dict[str, str]) -> str:
    r = subprocess.run(
        ["bash", "-c", PRELUDE + script],
        env={**os.environ, "PATH": BIN + os.pathsep + os.environ["PATH"], **env},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, f"{script}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r.stdout


def curl(script: str, srv: Server, **env: str) -> Any:
    script = replace(script, "curl ", "curl -sS --fail-with-body ").replace(BASE, srv.url)
    return json.loads(sh(script, {"TOKEN": srv.superuser_token(), **env}))


def test_errors_doc_examples(srv: Server) -> None:
    dsn = sh(block("errors-cli-dsn").text, srv.env).strip()
    assert dsn.startswith("http://")
    assert dsn.endswith("/2")  # after the built-in project

    project = curl(block("errors-create-project").text, srv)
    assert project["name"] == "mobile-api"
    assert project["rateLimit"] == 120

    example = block("errors-python").text
    dsn_in_doc = example.split('dsn="', 1)[1].split('"', 1)[0]
    code = replace(example, dsn_in_doc, project["dsn"])
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr

    listed = wait_until(
        lambda: curl(block("errors-list-issues").text.replace("project=2", f"project={project['id']}"), srv)["items"],
        what="the example's issue",
    )  # fmt: skip
    [issue] = listed
    assert issue["title"] == "RuntimeError: card declined for order 42"
    same_shape(json.loads(block("errors-issue-json").text), issue)
    assert issue["culprit"] == "__main__ in charge"

    resolved = curl(block("errors-resolve").text, srv, ISSUE=issue["id"])
    assert resolved["status"] == "resolved"
