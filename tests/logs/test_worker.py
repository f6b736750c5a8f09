"""`shipyard worker` writes Shipyard's own events as JSON lines on stdout too, on SQLite
and PostgreSQL, and stops cleanly with its request-log writer running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.wait import wait_until

pytestmark = pytest.mark.timeout(120)


def test_the_worker_writes_json_lines(database_url: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "SHIPYARD_DATA_DIR": str(tmp_path / "data"),
        "SHIPYARD_DATABASE_URL": database_url,
        "SHIPYARD_LOG_LEVEL": "info",
        "PYTHONUNBUFFERED": "1",
    }
    out = tmp_path / "worker.log"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "shipyard.cli", "worker"],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:

        def started() -> dict[str, Any] | None:
            for line in out.read_text(errors="replace").splitlines():
                if line.startswith("{"):
                    record = json.loads(line)
                    if record.get("logger") == "shipyard.jobs" and "started" in record["msg"]:
                        return dict(record)
            return None

        record = wait_until(started, timeout=60, what="the worker's JSON start line")
        assert record["level"] == "info"
        assert record["time"].endswith("Z")
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    assert code == 0, out.read_text(errors="replace")
