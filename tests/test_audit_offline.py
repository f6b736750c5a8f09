"""The offline dependency audit: scripts/audit.py's check of the lock files against
security/advisories.json, the PyPA advisory database extract that scripts/advisories.py makes.

Where pip-audit's vulnerability service cannot be reached (this project's build machines
pass the package index but not its JSON API), that check is the audit. The ranges are
evaluated as the OSV schema says; the advisories used are real ones of the PyPA database
(the committed snapshot, or YAML copied from it), never made-up verdicts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from packaging.version import Version

from tests.helpers.scripts import ROOT, load_script

audit = load_script("audit")
advisories = load_script("advisories")

SNAPSHOT = audit.load_snapshot(audit.ADVISORIES)
FRESH = SNAPSHOT.date + timedelta(days=1)  # "now" for which the committed snapshot is fresh


def _advisory(name: str, ident: str) -> dict[str, Any]:
    found = [a for a in SNAPSHOT.advisories[name] if a["id"] == ident]
    assert found, f"{ident} is not in the committed snapshot"
    advisory: dict[str, Any] = found[0]
    return advisory


# ------------------------------------------------------------------ range evaluation


@pytest.mark.parametrize(
    ("version", "expected"),
    [("1.0", True), ("2.10", True), ("2.10.1rc1", True), ("2.10.1", False), ("3.1.6", False)],
)
def test_introduced_zero_to_fixed(version: str, expected: bool) -> None:
    """PYSEC-2019-217 (jinja2): introduced 0, fixed 2.10.1; a pre-release of the fix is
    still before it."""
    events = _advisory("jinja2", "PYSEC-2019-217")["ranges"][0]
    assert events == [{"introduced": "0"}, {"fixed": "2.10.1"}]
    assert audit.in_range(Version(version), events) is expected


@pytest.mark.parametrize(
    ("version", "expected"), [("1.4.0", False), ("1.5.0", True), ("1.9", True), ("2.0", False)]
)
def test_introduced_at_a_version(version: str, expected: bool) -> None:
    assert audit.in_range(Version(version), [{"introduced": "1.5.0"}, {"fixed": "2.0"}]) is expected


@pytest.mark.parametrize(
    ("version", "expected"), [("1.10.0", True), ("1.11.0", True), ("1.11.1", False)]
)
def test_last_affected_is_inclusive(version: str, expected: bool) -> None:
    """PYSEC-2022-42969 (py, ReDoS): introduced 0, last_affected 1.11.0, no fixed release."""
    events = [{"introduced": "0"}, {"last_affected": "1.11.0"}]
    assert audit.in_range(Version(version), events) is expected


@pytest.mark.parametrize(
    ("version", "expected"),
    [("1.0", True), ("1.2", False), ("1.5", False), ("2.0", True), ("2.3", False), ("9", False)],
)
def test_several_intervals_in_one_range_in_any_order(version: str, expected: bool) -> None:
    """[1.0, 1.2) and [2.0, 2.3), the events listed out of order: sorted before walking."""
    events = [{"fixed": "2.3"}, {"introduced": "2.0"}, {"fixed": "1.2"}, {"introduced": "1.0"}]
    assert audit.in_range(Version(version), events) is expected


def test_a_range_that_cannot_be_evaluated_is_undecided_not_clean() -> None:
    """A fixed version that is not PEP 440 (binderhub's PYSEC-2021-371: 0.2.0-n653)."""
    events = [{"introduced": "0"}, {"fixed": "0.2.0-n653"}]
    assert audit.in_range(Version("0.1"), events) is None
    assert audit.affects({"ranges": [events], "versions": []}, "0.1") is None
    # listed explicitly: affected whatever its ranges say
    assert audit.affects({"ranges": [events], "versions": ["0.1"]}, "0.1") is True


def test_explicit_versions() -> None:
    """An advisory without ranges covers exactly its listed versions, compared as versions
    (2.10 is 2.10.0), and legacy names that are not PEP 440 by their text."""
    adv = {"ranges": [], "versions": ["2.10", "0.7.10p1"]}
    assert audit.affects(adv, "2.10") is True
    assert audit.affects(adv, "2.10.0") is True
    assert audit.affects(adv, "0.7.10p1") is True
    assert audit.affects(adv, "2.10.1") is False
    assert audit.affects(adv, "2.9") is False


def test_the_snapshots_ranges_agree_with_its_listed_versions() -> None:
    """Over the whole committed snapshot: every listed version lies in a range, and no
    fixed release is inside one (so the evaluation reads the real data as it is meant)."""
    listed = 0
    for name, advs in SNAPSHOT.advisories.items():
        for adv in advs:
            for text in adv["versions"]:
                listed += 1
                ranges_only = {"ranges": adv["ranges"], "versions": []}
                assert audit.affects(ranges_only, text) is not False, (name, adv["id"], text)
            for events in adv["ranges"]:
                for event in events:
                    if "fixed" in event:
                        assert not audit.affects(ranges_only, event["fixed"]), (name, adv["id"])
    assert listed > 1000


# ------------------------------------------------------------------ the offline audit


def _lock(tmp_path: Path, *pins: str) -> Path:
    lock = tmp_path / "test.lock"
    lock.write_text("".join(f"{pin} \\\n    --hash=sha256:{'0' * 64}\n" for pin in pins))
    return lock


@pytest.mark.parametrize("required", [False, True])
def test_a_vulnerable_pin_fails_naming_the_advisory_and_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], required: bool
) -> None:
    lock = _lock(tmp_path, "Jinja2==2.10", "orjson==3.11.0")
    assert audit.offline_audit(lock, audit.ADVISORIES, required=required, now=FRESH) == 1
    err = capsys.readouterr().err
    assert (
        "jinja2 2.10: PYSEC-2019-217 (CVE-2019-10906, GHSA-462w-v97r-4m45), fixed in 2.10.1" in err
    )
    assert "orjson" not in err
    assert "jinja2 2.10: PYSEC-2021-66 (CVE-2020-28493, " in err  # fixed in 2.11.3, so 2.10 too
    assert "PYSEC-2014-8" not in err  # fixed in 2.7.2


def test_a_stale_snapshot_still_fails_a_vulnerable_pin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lock = _lock(tmp_path, "jinja2==2.10")
    later = SNAPSHOT.date + timedelta(days=audit.STALE_AFTER_DAYS + 400)
    assert audit.offline_audit(lock, audit.ADVISORIES, required=False, now=later) == 1
    assert "PYSEC-2019-217" in capsys.readouterr().err


@pytest.mark.parametrize("lock_name", ["requirements.lock", "requirements-test.lock"])
def test_our_locks_against_a_fresh_snapshot(
    lock_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Clean (the state of the locks when this snapshot was committed; a refresh that finds
    an advisory for a pin fails here until the lock is upgraded), and it counts as the audit
    even where one is required."""
    lock = ROOT / lock_name
    assert audit.offline_audit(lock, audit.ADVISORIES, required=True, now=FRESH) == 0
    out, err = capsys.readouterr()
    packages = len({name for name, _ in audit.lock_pins(lock)})
    day = SNAPSHOT.date.date().isoformat()
    assert out == (
        f"dependency audit of {lock_name}: no known vulnerabilities in the PyPA advisory "
        f"database snapshot of {day} ({packages} packages checked)\n"
    )
    assert "WARNING" not in err
    assert "INCOMPLETE" not in err


@pytest.mark.parametrize(("required", "status"), [(False, 0), (True, 1)])
def test_a_stale_snapshot_warns_and_is_no_audit_where_one_is_required(
    capsys: pytest.CaptureFixture[str], required: bool, status: int
) -> None:
    now = SNAPSHOT.date + timedelta(days=audit.STALE_AFTER_DAYS + 1)
    lock = ROOT / "requirements.lock"
    assert audit.offline_audit(lock, audit.ADVISORIES, required=required, now=now) == status
    out, err = capsys.readouterr()
    assert "no known vulnerabilities" in out
    assert f"WARNING: the advisory snapshot is {audit.STALE_AFTER_DAYS + 1} days old" in err
    assert ("SHIPYARD_AUDIT_REQUIRED=1" in err) is required


@pytest.mark.parametrize(("required", "status"), [(False, 0), (True, 1)])
def test_a_missing_snapshot_is_not_done(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], required: bool, status: int
) -> None:
    lock = _lock(tmp_path, "jinja2==2.10")
    missing = tmp_path / "advisories.json"
    assert audit.offline_audit(lock, missing, required=required, now=FRESH) == status
    out, err = capsys.readouterr()
    assert out == ""
    assert "*** dependency audit NOT DONE for test.lock" in err
    assert "FileNotFoundError" in err


@pytest.mark.parametrize(("required", "status"), [(False, 0), (True, 1)])
def test_a_pin_the_snapshot_does_not_cover_is_incomplete(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], required: bool, status: int
) -> None:
    """A package locked after the snapshot was made: its advisories were never extracted,
    so "no advisory" says nothing about it."""
    lock = _lock(tmp_path, "jinja2==3.1.6", "not-in-our-locks==1.0")
    assert audit.offline_audit(lock, audit.ADVISORIES, required=required, now=FRESH) == status
    err = capsys.readouterr().err
    assert "offline check INCOMPLETE" in err
    assert "not in the snapshot (locked after it was made): not-in-our-locks 1.0" in err


def test_the_snapshot_covers_every_locked_package() -> None:
    """A package added to a lock needs the snapshot made again (docs/security.md)."""
    locked = {name for lock in audit.LOCKS for name, _ in audit.lock_pins(lock)}
    assert locked <= SNAPSHOT.packages, sorted(locked - SNAPSHOT.packages)


def test_the_command_line_offline(tmp_path: Path) -> None:
    """`scripts/audit.py --offline`: no pip-audit, the snapshot only."""
    lock = _lock(tmp_path, "jinja2==2.10")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "audit.py"), "--offline", str(lock)],
        capture_output=True,
        text=True,
        env={**os.environ, "SHIPYARD_AUDIT_REQUIRED": ""},
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert "--offline: pip-audit not asked" in proc.stderr
    assert "jinja2 2.10: PYSEC-2019-217" in proc.stderr


# ------------------------------------------------------------------ making the snapshot

# Real advisories of the PyPA database (commit 3ccb612, references and most listed
# versions left out): one that applies, one withdrawn since (its range would cover every
# aiohttp release), one for a package outside the lock.
JINJA2 = """\
id: PYSEC-2019-217
details: In Pallets Jinja before 2.10.1, str.format_map allows a sandbox escape.
affected:
- package:
    name: jinja2
    ecosystem: PyPI
    purl: pkg:pypi/jinja2
  ranges:
  - type: ECOSYSTEM
    events:
    - introduced: '0'
    - fixed: 2.10.1
  - type: GIT
    repo: https://github.com/pallets/jinja
    events:
    - introduced: '0'
    - fixed: a2a6c930bcca591a25d2b316fcfd2d6793897b26
  versions:
  - '2.0'
  - '2.10'
  - 2.9.6
aliases:
- GHSA-462w-v97r-4m45
- CVE-2019-10906
modified: '2021-11-22T04:57:52.862665Z'
published: '2019-04-07T00:29:00Z'
"""
AIOHTTP_WITHDRAWN = """\
id: PYSEC-2022-43059
details: 'AIOHTTP 3.8.1 can report a "ValueError: Invalid IPv6 URL" outcome, which
  can lead to a Denial of Service (DoS).'
aliases:
- CVE-2022-33124
withdrawn: '2023-11-08T00:54:24Z'
affected:
- package:
    name: aiohttp
    ecosystem: PyPI
  ranges:
  - type: ECOSYSTEM
    events:
    - introduced: '0'
"""
PY = """\
id: PYSEC-2022-42969
details: The py library through 1.11.0 for Python allows remote attackers to
  conduct a ReDoS (Regular expression Denial of Service) attack.
affected:
- package:
    name: py
    ecosystem: PyPI
  ranges:
  - type: ECOSYSTEM
    events:
    - introduced: '0'
    - last_affected: '1.11.0'
"""


def _git(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **(env or {})},
    ).stdout.strip()


def test_the_generator_extracts_the_locked_packages_advisories(tmp_path: Path) -> None:
    repo = tmp_path / "advisory-database"
    for path, text in [
        ("vulns/Jinja2/PYSEC-2019-217.yaml", JINJA2),
        ("vulns/aiohttp/PYSEC-2022-43059.yaml", AIOHTTP_WITHDRAWN),
        ("vulns/py/PYSEC-2022-42969.yaml", PY),
    ]:
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    stamp = "2026-11-30T10:00:00+01:00"
    who = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com"}
    who |= {"GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    _git(repo, "commit", "-qm", "advisories", env={**who, "GIT_COMMITTER_DATE": stamp})
    commit = _git(repo, "rev-parse", "HEAD")
    lock = _lock(tmp_path, "jinja2==2.10", "aiohttp==3.14.5", "orjson==3.11.0")
    out = tmp_path / "advisories.json"

    assert advisories.main([str(repo), "--lock", str(lock), "--out", str(out)]) == 0

    data = json.loads(out.read_text())
    assert data["source"] == {
        "repository": "https://github.com/pypa/advisory-database",
        "commit": commit,
        "date": "2026-11-30T09:00:00+00:00",
    }
    assert data["packages"] == ["aiohttp", "jinja2", "orjson"]
    assert data["advisories"] == {  # the withdrawn one and py's left out, GIT ranges dropped
        "jinja2": [
            {
                "id": "PYSEC-2019-217",
                "aliases": ["CVE-2019-10906", "GHSA-462w-v97r-4m45"],
                "summary": "In Pallets Jinja before 2.10.1, str.format_map allows a sandbox escape.",
                "ranges": [[{"introduced": "0"}, {"fixed": "2.10.1"}]],
                "versions": ["2.0", "2.10", "2.9.6"],
            }
        ]
    }
    # and the audit reads it: jinja2 2.10 fails; once upgraded, clean and fresh
    now = datetime(2026, 12, 5, tzinfo=UTC)
    assert audit.offline_audit(lock, out, required=True, now=now) == 1
    upgraded = _lock(tmp_path, "jinja2==3.1.6", "aiohttp==3.14.5", "orjson==3.11.0")
    assert audit.offline_audit(upgraded, out, required=True, now=now) == 0
