"""docs/assets.md: the build example run with bash as written, its output as printed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers.docblocks import all_blocks, block

BIN = str(Path(sys.executable).parent)


def test_build_example(tmp_path: Path) -> None:
    example = block("assets-build")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    env["PATH"] = BIN + os.pathsep + env["PATH"]
    r = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + example.text],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    following = next(b for b in all_blocks() if b.file == example.file and b.line > example.line)
    assert r.stdout.replace(str(tmp_path) + "/", "") == following.text
