"""The lock files and the dependency audit.

requirements.lock (the server) and requirements-test.lock (the server and the test tools)
pin every package with its hashes; `./run demo` and `./run test` install from them. They
must cover pyproject.toml (a dependency added there and not locked would make `./run`
fail) and agree with each other. scripts/audit.py runs pip-audit over them (or, where its
service cannot be reached, checks them against the committed advisory snapshot: the offline
check is tested in tests/test_audit_offline.py) and must never report "clean" for an audit
that did not happen.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.helpers.scripts import load_script

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def _pins(lock: str) -> dict[str, list[tuple[str, str]]]:
    """name -> [(version, marker)] of a lock file (a name is pinned twice when the versions
    differ by Python version or platform)."""
    out: dict[str, list[tuple[str, str]]] = {}
    lines = (ROOT / lock).read_text().splitlines()
    for line, after in zip(lines, [*lines[1:], ""], strict=True):
        m = PIN.match(line)
        if m:
            assert after.strip().startswith("--hash=sha256:"), f"{lock}: {m[1]} has no hash"
            out.setdefault(canonicalize_name(m[1]), []).append((m[2], m[3] or ""))
    assert out, f"no pins in {lock}"
    return out


def _project() -> dict[str, object]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert isinstance(project, dict)
    return project


def _assert_locked(requirements: list[str], pins: dict[str, list[tuple[str, str]]]) -> None:
    for text in requirements:
        req = Requirement(text)
        versions = pins.get(canonicalize_name(req.name), [])
        assert versions, f"{req.name} is in pyproject.toml but not locked"
        assert any(req.specifier.contains(v, prereleases=True) for v, _ in versions), (
            f"{req.name}: locked {versions}, pyproject.toml asks for {req.specifier}"
        )


def test_the_server_lock_covers_the_dependencies() -> None:
    deps = _project()["dependencies"]
    assert isinstance(deps, list)
    _assert_locked(deps, _pins("requirements.lock"))


def test_the_test_lock_covers_the_dependencies_and_the_test_extra() -> None:
    project = _project()
    deps, extras = project["dependencies"], project["optional-dependencies"]
    assert isinstance(deps, list)
    assert isinstance(extras, dict)
    _assert_locked([*deps, *extras["test"]], _pins("requirements-test.lock"))


def test_the_two_locks_agree() -> None:
    server, full = _pins("requirements.lock"), _pins("requirements-test.lock")
    for name, versions in server.items():
        assert {v for v, _ in versions} <= {v for v, _ in full.get(name, [])}, name


def test_the_audit_tells_vulnerable_audited_and_skipped_apart() -> None:
    """pip-audit's JSON report (`-f json`), as it writes it."""
    audit = load_script("audit")
    report = audit.read_report(
        {
            "dependencies": [
                {"name": "jinja2", "version": "2.10", "vulns": [{"id": "PYSEC-2019-217"}]},
                {"name": "orjson", "version": "3.11.0", "vulns": []},
                {"name": "private-lib", "skip_reason": "Dependency not found on PyPI"},
            ],
            "fixes": [],
        }
    )
    assert report.vulnerable == ["jinja2 2.10: PYSEC-2019-217"]
    assert report.audited == 2
    assert report.skipped == ["Dependency not found on PyPI"]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("required", ["", "1"])
def test_a_known_vulnerability_is_never_reported_clean(tmp_path: Path, required: str) -> None:
    """A release with published advisories fails the audit naming it, whether the live
    vulnerability service answers or not: where it cannot be reached, the offline check
    against the committed PyPA advisory snapshot (security/advisories.json) finds it.
    Never a quiet pass, with or without SHIPYARD_AUDIT_REQUIRED=1."""
    lock = tmp_path / "old.lock"
    lock.write_text("jinja2==2.10\n")
    env = {**os.environ, "SHIPYARD_AUDIT_REQUIRED": required}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "audit.py"), str(lock), "--", "--no-deps"],
        capture_output=True,
        text=True,
        env=env,
        timeout=150,
        check=False,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "jinja2 2.10" in proc.stderr
