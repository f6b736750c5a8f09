"""The runbook of point-in-time recovery (docs/operations/pitr-postgresql.md) shows what
`shipyard backup pg-config` prints; the procedure itself is played by
tests/backups/test_pitr_pg.py."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

from click.testing import CliRunner

from shipyard.backups.pgbackrest import DEFAULT_CONFIG, DEFAULT_REPO
from shipyard.cli import main
from tests.helpers.docblocks import block, replace


def test_pg_config_output_is_the_runbooks(tmp_path: Path) -> None:
    conf, repo = tmp_path / "pgbackrest.conf", tmp_path / "repo"
    me = pwd.getpwuid(os.geteuid()).pw_name  # --owner postgres, played by whoever runs this
    r = CliRunner().invoke(
        main,
        ["backup", "pg-config", "--config", str(conf), "--repo", str(repo),
         "--pg-path", "/var/lib/postgresql/15/main", "--owner", me],
        env={"SHIPYARD_DATA_DIR": str(tmp_path / "data")},
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    out = replace(r.output, f"--config={conf} ", "")
    out = replace(out, f"wrote {conf} ", f"wrote {DEFAULT_CONFIG} ")
    out = replace(out, f"repository {repo},", f"repository {DEFAULT_REPO},")
    out = replace(out, f"2. Then, as {me}:", "2. Then, as postgres:")
    assert out == block("pitr-pg-config-output").text
