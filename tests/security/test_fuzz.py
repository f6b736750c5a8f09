"""A few seconds of coverage-guided fuzzing (atheris, libFuzzer) of each parser that reads
untrusted input: filters and sorts, request bodies, auth tokens (harnesses in fuzz/).

Each harness runs in its own process, from its seed corpus (fuzz/corpus/<name>, always
replayed first) for SHIPYARD_FUZZ_SECONDS (default 5); any exception other than the
documented 4xx errors, and any input that takes over 10 s, is a failure that shows the
input. Longer runs: docs/security.md ("Fuzzing").
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parents[2] / "fuzz"
SECONDS = int(os.environ.get("SHIPYARD_FUZZ_SECONDS", "5"))
HARNESSES = ("filter", "body", "token")

# atheris publishes wheels for Linux only (the test extra installs it there)
pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="atheris: Linux wheels only")


@pytest.mark.timeout(SECONDS + 180)
@pytest.mark.parametrize("name", HARNESSES)
def test_fuzzing_finds_no_crash(name: str, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"  # what this run finds; the seeds stay as they are
    corpus.mkdir()
    cmd = [
        sys.executable,
        str(FUZZ / f"fuzz_{name}.py"),
        f"-max_total_time={SECONDS}",
        "-timeout=10",
        "-rss_limit_mb=2048",
        f"-artifact_prefix={tmp_path}/",
        str(corpus),
        str(FUZZ / "corpus" / name),
    ]
    dictionary = FUZZ / f"{name}.dict"
    if dictionary.exists():
        cmd.insert(2, f"-dict={dictionary}")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=SECONDS + 150, check=False)
    found = sorted(p for p in tmp_path.iterdir() if p.is_file())
    report = "\n".join(f"{p.name}: {p.read_bytes()[:500]!r}" for p in found)
    assert not found, f"{report}\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Done" in proc.stderr  # libFuzzer ran to its time limit, not into an early exit


def test_the_seeds_cover_each_decoder() -> None:
    """The body harness picks its decoder with the first byte (kernel/web.py parse_body for
    JSON, multipart, urlencoded and no type; errors/envelope.py for the ingestion), so the
    seed corpus starts every one of them."""
    kinds = {p.read_bytes()[0] % 5 for p in (FUZZ / "corpus" / "body").iterdir()}
    assert kinds == {0, 1, 2, 3, 4}
