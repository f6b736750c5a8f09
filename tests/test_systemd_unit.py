"""deploy/shipyard.service, the systemd unit of docs/production.md: systemd itself accepts it
(`systemd-analyze verify`, with no warning: an unknown or misspelt key is only a warning
there), and what it runs and sets exists in Shipyard.

Where systemd-analyze is missing, the unit is still read line by line: sections, `Key=value`
lines, the three sections a service needs.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from shipyard.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "deploy" / "shipyard.service"
INSTALLED = "/opt/shipyard/.venv/bin/shipyard"


def _entries() -> list[tuple[str, str, str]]:
    """(section, key, value) of every setting line."""
    out: list[tuple[str, str, str]] = []
    section = ""
    for n, line in enumerate(UNIT.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if m := re.fullmatch(r"\[(\w+)\]", line):
            section = m[1]
            continue
        key, sep, value = line.partition("=")
        assert sep, f"line {n}: {line!r}"
        assert re.fullmatch(r"[A-Za-z]+", key), f"line {n}: {line!r}"
        assert section, f"line {n}: a setting before any [section]"
        out.append((section, key, value))
    return out


def test_the_unit_has_what_a_service_needs() -> None:
    entries = _entries()
    assert {s for s, _, _ in entries} == {"Unit", "Service", "Install"}
    values = {(s, k): v for s, k, v in entries}
    assert values[("Service", "ExecStart")] == f"{INSTALLED} serve"
    assert values[("Service", "User")] != "root"
    assert values[("Install", "WantedBy")] == "multi-user.target"


def test_the_settings_it_sets_exist() -> None:
    names = {f"SHIPYARD_{f.name.upper()}" for f in fields(Settings)}
    for section, key, value in _entries():
        if (section, key) == ("Service", "Environment"):
            name = value.split("=", 1)[0]
            assert name in names, name


def test_the_command_it_runs_exists() -> None:
    shipyard = Path(sys.executable).parent / "shipyard"
    cmd = [str(shipyard)] if shipyard.exists() else [sys.executable, "-m", "shipyard.cli"]
    proc = subprocess.run([*cmd, "serve", "--help"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    """verify checks that ExecStart's program exists: point it at this machine's install."""
    unit = tmp_path / "shipyard.service"
    unit.write_text(UNIT.read_text().replace(INSTALLED, str(Path(sys.executable))))
    proc = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
    )
    assert (proc.returncode, proc.stderr.strip()) == (0, ""), proc.stderr
