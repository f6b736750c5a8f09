"""Make security/advisories.json: the advisories of the PyPA advisory database that concern
the packages of our lock files, for the offline check of scripts/audit.py.

The PyPA advisory database (https://github.com/pypa/advisory-database) holds one OSV file
per advisory, `vulns/<package>/PYSEC-*.yaml`. This script reads them from a clone (its work
tree or its git directory, at REF: the files are read with git, so the commit and its date
are known exactly), keeps the advisories of packages pinned in requirements.lock or
requirements-test.lock (names normalized as PEP 503 says), drops withdrawn ones, and writes
for each: id, aliases, a one-line summary, the ECOSYSTEM ranges (events `introduced`,
`fixed`, `last_affected`) and the explicit affected versions. GIT ranges are left out: the
PYSEC files list the releases they cover as explicit versions.

Usage (docs/security.md, 'Dependencies'):

    git clone --depth 1 https://github.com/pypa/advisory-database /tmp/advisory-database
    python scripts/advisories.py /tmp/advisory-database
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from packaging.utils import canonicalize_name

sys.path.insert(0, str(Path(__file__).resolve().parent))
from audit import ADVISORIES, LOCKS, lock_pins  # a sibling script (sys.path above)

REPOSITORY = "https://github.com/pypa/advisory-database"
SUMMARY_CHARS = 200
Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _git(source: Path, *args: str, data: bytes | None = None) -> bytes:
    # `git -C` finds the repository of a work tree and a bare/mirror git directory alike
    return subprocess.run(  # noqa: S603  (git with fixed arguments)
        ["git", "-C", str(source), *args],  # noqa: S607  (git from PATH)
        input=data,
        capture_output=True,
        check=True,
    ).stdout


def read_advisories(source: Path, ref: str) -> tuple[str, str, list[dict[str, Any]]]:
    """(commit, its date in UTC ISO 8601, every advisory under vulns/ at that commit)."""
    commit = _git(source, "rev-parse", "--verify", f"{ref}^{{commit}}").decode().strip()
    stamp = _git(source, "show", "-s", "--format=%cI", commit).decode().strip()
    date = datetime.fromisoformat(stamp).astimezone(UTC).isoformat()
    listing = _git(source, "ls-tree", "-r", commit, "vulns").decode().splitlines()
    blobs = [line.split()[2] for line in listing if line.endswith((".yaml", ".yml"))]
    out = _git(source, "cat-file", "--batch", data="".join(f"{b}\n" for b in blobs).encode())
    docs, at = [], 0
    for _ in blobs:  # "<sha> blob <size>\n<content>\n", in the order asked
        header_end = out.index(b"\n", at)
        size = int(out[at:header_end].split()[2])
        docs.append(yaml.load(out[header_end + 1 : header_end + 1 + size], Loader=Loader))  # noqa: S506  (a safe loader)
        at = header_end + 1 + size + 1
    return commit, date, docs


def summary(doc: dict[str, Any]) -> str:
    text = str(doc.get("summary") or doc.get("details") or "").strip()
    line = " ".join(text.splitlines()[0].split()) if text else ""
    if len(line) > SUMMARY_CHARS:  # cut at a word
        line = line[: SUMMARY_CHARS - 1].rsplit(" ", 1)[0] + "…"
    return line


def extract(docs: list[dict[str, Any]], packages: set[str]) -> dict[str, list[dict[str, Any]]]:
    """normalized name -> its advisories (the fields the offline check reads), for `packages`."""
    found: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        if doc.get("withdrawn"):
            continue
        per_package: dict[str, dict[str, Any]] = {}
        for affected in doc.get("affected", []):
            pkg = affected.get("package", {})
            name = str(canonicalize_name(str(pkg.get("name", ""))))
            if pkg.get("ecosystem") != "PyPI" or name not in packages:
                continue
            entry = per_package.setdefault(
                name,
                {
                    "id": doc["id"],
                    "aliases": sorted(doc.get("aliases") or []),
                    "summary": summary(doc),
                    "ranges": [],
                    "versions": [],
                },
            )
            for r in affected.get("ranges", []):
                if r.get("type") == "ECOSYSTEM":
                    events = [{str(k): str(v) for k, v in e.items()} for e in r["events"]]
                    entry["ranges"].append(events)
            entry["versions"].extend(str(v) for v in affected.get("versions", []))
        for name, entry in per_package.items():
            found.setdefault(name, []).append(entry)
    return {name: sorted(advs, key=lambda a: a["id"]) for name, advs in sorted(found.items())}


def render(data: dict[str, Any]) -> str:
    """JSON with one advisory a line: compact, and a refresh's diff reads advisory by advisory."""

    def one(value: object) -> str:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))

    lines = ["{", f' "source": {one(data["source"])},']
    lines.append(f' "made_by": {json.dumps(data["made_by"])},')
    lines.append(f' "packages": {one(data["packages"])},')
    lines.append(' "advisories": {')
    packages = list(data["advisories"].items())
    for i, (name, advisories) in enumerate(packages):
        lines.append(f"  {json.dumps(name)}: [")
        lines += [f"   {one(a)}," for a in advisories]
        lines[-1] = lines[-1].rstrip(",")
        lines.append("  ]," if i < len(packages) - 1 else "  ]")
    lines += [" }", "}", ""]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="a clone of " + REPOSITORY)
    parser.add_argument("--ref", default="HEAD", help="the commit to read (default HEAD)")
    parser.add_argument("--out", type=Path, default=ADVISORIES)
    parser.add_argument("--lock", type=Path, action="append", help="default: both lock files")
    args = parser.parse_args(argv)
    packages = {name for lock in args.lock or LOCKS for name, _ in lock_pins(lock)}
    commit, date, docs = read_advisories(args.source, args.ref)
    advisories = extract(docs, packages)
    data = {
        "source": {"repository": REPOSITORY, "commit": commit, "date": date},
        "made_by": "scripts/advisories.py (docs/security.md, 'Dependencies')",
        "packages": sorted(packages),
        "advisories": advisories,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(data))
    count = sum(len(a) for a in advisories.values())
    print(
        f"{args.out}: {count} advisories for {len(advisories)} of {len(packages)} packages, "
        f"from {len(docs)} in {REPOSITORY} at {commit[:12]} ({date})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
