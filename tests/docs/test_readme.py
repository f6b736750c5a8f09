"""The README's curl examples, run as written with curl against a real `shipyard serve`
with the demo data set (what `./run demo` starts), only the address put in."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.servers import Server, start_server, stop_server

README = Path(__file__).resolve().parents[2] / "README.md"
BASE = "http://127.0.0.1:8090"
_SH_BLOCK = re.compile(r"^```sh\n(.*?)^```", re.M | re.S)


def curl_lines() -> list[str]:
    """Every `curl …` line of the README's sh blocks."""
    lines = []
    for block in _SH_BLOCK.findall(README.read_text()):
        lines += [line for line in block.splitlines() if line.startswith("curl ")]
    return lines


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("readme") / "srv", "", {"SHIPYARD_DEMO": "1"})
    try:
        yield srv
    finally:
        stop_server(srv)


@pytest.fixture(scope="module")
def demo_uvicorn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The demo on uvicorn (SHIPYARD_HTTP_SERVER), which takes a raw `"` in the query."""
    srv = start_server(
        tmp_path_factory.mktemp("readme") / "srv",
        "",
        {"SHIPYARD_DEMO": "1", "SHIPYARD_HTTP_SERVER": "uvicorn"},
    )
    try:
        yield srv
    finally:
        stop_server(srv)


def run_curl(line: str, server: Server) -> object:
    assert BASE in line, f"the example does not call {BASE}: {line}"
    r = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + line.replace(BASE, server.url)],
        env={**os.environ, "CURL_HOME": "/nonexistent"},  # no ~/.curlrc options
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, f"{line}\nexit {r.returncode}: {r.stderr}"
    return json.loads(r.stdout)


def test_the_readme_has_curl_examples() -> None:
    assert curl_lines()


@pytest.mark.parametrize("line", curl_lines())
def test_readme_curl_example(line: str, demo: Server) -> None:
    check_example(line, demo)


def double_quoted(line: str) -> str:
    """The line with the filter's strings in double quotes (as PocketBase's docs write
    them), escaped for the shell: curl then sends a raw `"` in the query."""
    return re.sub(r"'([^']*)'", r'\\"\1\\"', line)


def test_the_double_quoted_variant_has_raw_quotes() -> None:
    line = double_quoted(curl_lines()[0])
    assert 'filter=status=\\"published\\"&' in line, line


@pytest.mark.parametrize("line", [double_quoted(line) for line in curl_lines()])
def test_readme_curl_example_with_double_quotes_on_uvicorn(line: str, demo_uvicorn: Server) -> None:
    """What PocketBase answers, Shipyard on uvicorn answers too (docs/limits.md)."""
    check_example(line, demo_uvicorn)


def check_example(line: str, server: Server) -> None:
    # `--fail-with-body`: any 4xx or 5xx fails the command, as a reader would notice
    body = run_curl(line.replace("curl ", "curl -sS --fail-with-body ", 1), server)
    assert isinstance(body, dict)
    if "/records?" in line and "filter=status=" in line:
        items = body["items"]
        assert 0 < len(items) <= 5
        assert {p["status"] for p in items} == {"published"}
        views = [p["views"] for p in items]
        assert views == sorted(views, reverse=True)
        assert all("author" in p["expand"] for p in items)
