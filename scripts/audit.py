"""Audit the locked dependencies with pip-audit, and say plainly when the audit did not happen.

`pip-audit` reports "No known vulnerabilities found" and exits 0 even when its vulnerability
service answered for none of the packages (each one is then only "skipped"): behind a
firewall that passes the package index but not its JSON API, a plain `pip-audit` would be
a green light that checked nothing. This wrapper reads pip-audit's JSON report and tells
the outcomes apart:

* vulnerabilities found: listed, exit 1 (fixing them is upgrading the lock);
* audited, none found: exit 0;
* not audited by the live service (unreachable, or it answered for no package or not for
  all of them): said on stderr, then every pin of the lock is checked offline against
  security/advisories.json, a committed extract of the PyPA advisory database made by
  scripts/advisories.py. A pin it lists as affected fails (exit 1) like a live finding;
  otherwise exit 0 with the snapshot's date, and a warning when the snapshot is more than
  STALE_AFTER_DAYS old. With SHIPYARD_AUDIT_REQUIRED=1 (a CI that must audit), the offline
  check counts as an audit only when the snapshot is fresh (at most STALE_AFTER_DAYS old)
  and covers every pin; anything less exits 1. Without the snapshot file the audit is
  "NOT DONE", as before the fallback existed.

Usage: `python scripts/audit.py [--offline] [--advisories FILE] [LOCK_FILE] [-- extra
pip-audit arguments]`, LOCK_FILE defaulting to requirements-test.lock; `--offline` skips
pip-audit and checks the snapshot only. pip-audit's own environment variables apply, e.g.
`PIP_AUDIT_VULNERABILITY_SERVICE=osv` to ask OSV instead of PyPI. docs/security.md says more.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_LOCK = ROOT / "requirements-test.lock"
LOCKS = (ROOT / "requirements.lock", ROOT / "requirements-test.lock")
ADVISORIES = ROOT / "security" / "advisories.json"
# past this age the offline check warns, and does not count as an audit where one is required
STALE_AFTER_DAYS = 90
PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)")


@dataclass
class Report:
    vulnerable: list[str] = field(default_factory=list)  # "name version: ids"
    skipped: list[str] = field(default_factory=list)  # pip-audit's skip reasons
    audited: int = 0


def read_report(data: dict[str, object]) -> Report:
    """Sort pip-audit's JSON report (`-f json`) into audited, vulnerable and skipped."""
    report = Report()
    deps = data.get("dependencies", [])
    for dep in deps if isinstance(deps, list) else []:
        if dep.get("skip_reason"):
            report.skipped.append(str(dep["skip_reason"]))
            continue
        report.audited += 1
        vulns = dep.get("vulns") or []
        if vulns:
            ids = ", ".join(str(v.get("id")) for v in vulns)
            report.vulnerable.append(f"{dep.get('name')} {dep.get('version')}: {ids}")
    return report


def run_pip_audit(lock: Path, extra: list[str]) -> tuple[Report | None, str]:
    """pip-audit over `lock` (pinned and hashed, so no resolver and no pip); the report, or
    None and why there is none."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "audit.json"
        cmd = [
            sys.executable,
            "-m",
            "pip_audit",
            "--requirement",
            str(lock),
            "--disable-pip",
            "--progress-spinner",
            "off",
            "--format",
            "json",
            "--output",
            str(out),
            *extra,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603  (our own interpreter, fixed arguments)
        if not out.exists() or not out.read_text().strip():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            return None, f"pip-audit exited {proc.returncode}: {tail[0]}"
        return read_report(json.loads(out.read_text())), ""


# ---------------------------------------------------------------- the offline check


def lock_pins(lock: Path) -> list[tuple[str, str]]:
    """(normalized name, version) of every pin of a lock file, each pair once (a name is
    pinned twice when its versions differ by Python version or platform: both are checked)."""
    pins: dict[tuple[str, str], None] = {}
    for line in lock.read_text().splitlines():
        m = PIN.match(line)
        if m:
            pins[(canonicalize_name(m[1]), m[2])] = None
    return list(pins)


def _parse(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def in_range(version: Version, events: list[dict[str, str]]) -> bool | None:
    """Whether `version` lies in an OSV ECOSYSTEM range (its events `introduced`, `fixed`,
    `last_affected`), evaluated as the OSV schema says: events in version order, `introduced`
    opens the range (`"0"`: from the first release), `fixed` closes it before that version,
    `last_affected` after it. None when the range cannot be evaluated (an event's version is
    not PEP 440, or an event of another kind)."""
    parsed: list[tuple[str, Version | None]] = []
    for event in events:
        for kind, text in event.items():
            at = None if kind == "introduced" and text == "0" else _parse(text)
            if kind not in ("introduced", "fixed", "last_affected") or (at is None and text != "0"):
                return None
            parsed.append((kind, at))
    # "introduced: 0" first; stable, so the file's order decides between equal versions
    parsed.sort(key=lambda e: (e[1] is not None, e[1] or Version("0")))
    affected = False
    for kind, at in parsed:
        if kind == "introduced" and (at is None or version >= at):
            affected = True
        elif at is not None and (
            (kind == "fixed" and version >= at) or (kind == "last_affected" and version > at)
        ):
            affected = False
    return affected


def affects(advisory: dict[str, Any], version: str) -> bool | None:
    """Whether an advisory (one entry of security/advisories.json) covers `version`: listed
    among its explicit versions, or inside one of its ranges. None when it is not listed and
    a range that could cover it cannot be evaluated."""
    parsed = _parse(version)
    for listed in advisory.get("versions", []):
        if listed == version or (parsed is not None and _parse(listed) == parsed):
            return True
    if parsed is None:
        return None
    results = [in_range(parsed, events) for events in advisory.get("ranges", [])]
    if any(results):
        return True
    return None if None in results else False


def fixed_in(advisory: dict[str, Any], version: str) -> str:
    """The first release after `version` that a range names as fixed, for the report."""
    parsed = _parse(version)
    fixes = sorted(
        {
            v
            for events in advisory.get("ranges", [])
            for event in events
            if "fixed" in event and (v := _parse(event["fixed"])) is not None
        }
    )
    later = [v for v in fixes if parsed is None or v > parsed]
    return f"fixed in {later[0]}" if later else "no fixed release listed"


@dataclass
class Snapshot:
    commit: str
    date: datetime
    packages: frozenset[str]  # every package the locks pinned when it was made
    advisories: dict[str, list[dict[str, Any]]]  # normalized name -> its advisories

    def age_days(self, now: datetime) -> int:
        return (now - self.date).days


def load_snapshot(path: Path) -> Snapshot:
    """security/advisories.json as scripts/advisories.py writes it."""
    data = json.loads(path.read_text())
    source = data["source"]
    return Snapshot(
        commit=str(source["commit"]),
        date=datetime.fromisoformat(source["date"]).astimezone(UTC),
        packages=frozenset(data["packages"]),
        advisories=data["advisories"],
    )


@dataclass
class OfflineReport:
    checked: set[str] = field(default_factory=set)  # the packages checked
    vulnerable: list[str] = field(default_factory=list)  # "name version: ID (aliases), fixed in …"
    undecided: list[str] = field(default_factory=list)  # "name version: ID" not evaluable
    uncovered: list[str] = field(default_factory=list)  # "name version" absent from the snapshot


def check_offline(pins: list[tuple[str, str]], snapshot: Snapshot) -> OfflineReport:
    """Every pin against the snapshot's advisories."""
    report = OfflineReport()
    for name, version in pins:
        if name not in snapshot.packages:
            report.uncovered.append(f"{name} {version}")
            continue
        report.checked.add(name)
        for adv in snapshot.advisories.get(name, []):
            verdict = affects(adv, version)
            aliases = f" ({', '.join(adv['aliases'])})" if adv.get("aliases") else ""
            if verdict:
                report.vulnerable.append(
                    f"{name} {version}: {adv['id']}{aliases}, {fixed_in(adv, version)}: "
                    f"{adv.get('summary', '')}"
                )
            elif verdict is None:
                report.undecided.append(f"{name} {version}: {adv['id']}{aliases}")
    return report


def _say(text: str) -> None:
    print(text, file=sys.stderr)


def offline_audit(lock: Path, advisories: Path, *, required: bool, now: datetime) -> int:
    """The fallback: the lock's pins against the advisory snapshot; prints the outcome and
    returns the exit status (see the module's docstring)."""
    try:
        snapshot = load_snapshot(advisories)
    except (OSError, ValueError, KeyError, TypeError) as e:
        _say(
            f"*** dependency audit NOT DONE for {lock.name}: no live vulnerability service and "
            f"no usable advisory snapshot ({advisories}: {e.__class__.__name__}: {e}). Nothing "
            "was checked; docs/security.md says how to make the snapshot. ***"
        )
        return 1 if required else 0
    age = snapshot.age_days(now)
    day = snapshot.date.date().isoformat()
    source = (
        f"the PyPA advisory database snapshot of {day} ({snapshot.commit[:12]}, {age} days old)"
    )
    _say(f"offline check of {lock.name} against {source}, {advisories.name}")
    report = check_offline(lock_pins(lock), snapshot)
    if report.vulnerable:
        _say(f"dependency audit of {lock.name}: known vulnerabilities in {source}")
        for line in report.vulnerable:
            _say(f"  {line}")
        _say("upgrade them in the lock files (docs/security.md, 'Dependencies')")
        return 1
    print(
        f"dependency audit of {lock.name}: no known vulnerabilities in the PyPA advisory "
        f"database snapshot of {day} ({len(report.checked)} packages checked)"
    )
    counts = True
    if report.uncovered or report.undecided:
        counts = False
        _say(
            f"*** offline check INCOMPLETE for {lock.name}: regenerate {advisories.name} "
            "(docs/security.md, 'Dependencies') ***"
        )
        for line in report.uncovered:
            _say(f"  not in the snapshot (locked after it was made): {line}")
        for line in report.undecided:
            _say(f"  advisory with a range that cannot be evaluated: {line}")
    if age > STALE_AFTER_DAYS:
        counts = False
        _say(
            f"WARNING: the advisory snapshot is {age} days old (more than {STALE_AFTER_DAYS}): "
            "advisories published since are unknown to this check; refresh it "
            "(docs/security.md, 'Dependencies')"
        )
    if required and not counts:
        _say(
            "*** SHIPYARD_AUDIT_REQUIRED=1: an offline check counts as the audit only with a "
            f"snapshot at most {STALE_AFTER_DAYS} days old that covers every pin ***"
        )
        return 1
    return 0


def main(argv: list[str], now: datetime | None = None) -> int:
    extra: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1 :]
    offline = "--offline" in argv
    argv = [a for a in argv if a != "--offline"]
    advisories = ADVISORIES
    if "--advisories" in argv:
        at = argv.index("--advisories")
        advisories = Path(argv[at + 1])
        argv = argv[:at] + argv[at + 2 :]
    lock = Path(argv[0]) if argv else DEFAULT_LOCK
    required = os.environ.get("SHIPYARD_AUDIT_REQUIRED", "") == "1"
    now = now or datetime.now(UTC)
    if offline:
        _say(f"--offline: pip-audit not asked; {lock.name} checked against {advisories.name} only")
        return offline_audit(lock, advisories, required=required, now=now)
    report, problem = run_pip_audit(lock, extra)
    if report is not None and report.vulnerable:
        _say(f"dependency audit of {lock.name}: known vulnerabilities")
        for line in report.vulnerable:
            _say(f"  {line}")
        _say("upgrade them in the lock files (docs/security.md, 'Dependencies')")
        return 1
    if report is None or report.audited == 0:
        why = problem or (report.skipped[0] if report and report.skipped else "no dependencies")
        _say(
            f"*** live vulnerability service UNREACHABLE for {lock.name}: pip-audit checked no "
            f"package ({why}). Where it is reachable, scripts/audit.py uses it; "
            "PIP_AUDIT_VULNERABILITY_SERVICE=osv asks OSV instead of PyPI. ***"
        )
        return offline_audit(lock, advisories, required=required, now=now)
    print(f"dependency audit of {lock.name}: {report.audited} packages, no known vulnerabilities")
    if report.skipped:
        _say(f"  not audited by the live service ({len(report.skipped)}):")
        for reason in report.skipped:
            _say(f"    {reason}")
        return offline_audit(lock, advisories, required=required, now=now)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
