"""Audit the locked dependencies with pip-audit, and say plainly when the audit did not happen.

`pip-audit` reports "No known vulnerabilities found" and exits 0 even when its vulnerability
service answered for none of the packages (each one is then only "skipped"): behind a
firewall that passes the package index but not its JSON API, a plain `pip-audit` would be
a green light that checked nothing. This wrapper reads pip-audit's JSON report and tells
three outcomes apart:

* vulnerabilities found: listed, exit 1 (fixing them is upgrading the lock);
* audited, none found: exit 0;
* not audited (the service was unreachable, or answered for no package): a loud notice on
  stderr and exit 0, or exit 1 when SHIPYARD_AUDIT_REQUIRED=1 (a CI with internet access
  should set it, so that an audit that silently stops working fails the build).

Usage: `python scripts/audit.py [LOCK_FILE] [-- extra pip-audit arguments]`, LOCK_FILE
defaulting to requirements-test.lock. pip-audit's own environment variables apply, e.g.
`PIP_AUDIT_VULNERABILITY_SERVICE=osv` to ask OSV instead of PyPI. docs/security.md says more.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_LOCK = ROOT / "requirements-test.lock"


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


def main(argv: list[str]) -> int:
    extra: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1 :]
    lock = Path(argv[0]) if argv else DEFAULT_LOCK
    required = os.environ.get("SHIPYARD_AUDIT_REQUIRED", "") == "1"
    report, problem = run_pip_audit(lock, extra)
    if report is not None and report.vulnerable:
        print(f"dependency audit of {lock.name}: known vulnerabilities", file=sys.stderr)
        for line in report.vulnerable:
            print(f"  {line}", file=sys.stderr)
        print("upgrade them in the lock files (docs/security.md, 'Dependencies')", file=sys.stderr)
        return 1
    if report is None or report.audited == 0:
        why = problem or (report.skipped[0] if report and report.skipped else "no dependencies")
        print(
            f"*** dependency audit NOT DONE for {lock.name}: the vulnerability service answered "
            f"for no package ({why}). Nothing was checked; run scripts/audit.py where the "
            "service is reachable, or set PIP_AUDIT_VULNERABILITY_SERVICE=osv. ***",
            file=sys.stderr,
        )
        return 1 if required else 0
    print(f"dependency audit of {lock.name}: {report.audited} packages, no known vulnerabilities")
    if report.skipped:
        print(f"  not audited ({len(report.skipped)}):", file=sys.stderr)
        for reason in report.skipped:
            print(f"    {reason}", file=sys.stderr)
        return 1 if required else 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
