"""`shipyard backup create|list|verify|restore` on SQLite and PostgreSQL: the same service
as the API, run from the command line against the instance's settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from shipyard.cli import main


@pytest.fixture
def backend() -> str:
    """SQLite only: the CLI calls the same service the API tests run on both engines."""
    return "sqlite"


def test_backup_commands(database_url: str, tmp_path: Path) -> None:
    env = {"SHIPYARD_DATA_DIR": str(tmp_path / "data"), "SHIPYARD_DATABASE_URL": database_url}
    run = CliRunner().invoke
    r = run(main, ["backup", "create", "nightly.zip"], env=env)
    assert r.exit_code == 0, r.output
    made = json.loads(r.output)
    assert made["key"] == "nightly.zip"
    assert made["ok"]
    assert made["verified"]
    assert made["integrity"] == "ok"
    assert made["tables"] > 3

    r = run(main, ["backup", "create", "Nightly.zip"], env=env)
    assert r.exit_code == 2
    assert "must match" in r.output
    r = run(main, ["backup", "create", "nightly.zip"], env=env)
    assert r.exit_code == 1
    assert "exists already" in r.output

    r = run(main, ["backup", "list"], env=env)
    assert r.exit_code == 0
    key, size, modified = r.output.strip().split("\t")
    assert key == "nightly.zip"
    assert int(size) > 0
    assert modified.endswith("Z")

    r = run(main, ["backup", "verify", "nightly.zip"], env=env)
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["verified"] is True
    r = run(main, ["backup", "verify", "missing.zip"], env=env)
    assert r.exit_code == 1
    assert "Missing or invalid backup file." in r.output

    r = run(main, ["backup", "restore", "nightly.zip"], env=env)
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["safetyBackup"].startswith("safety_")
