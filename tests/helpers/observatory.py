"""MDN HTTP Observatory's own scanner (npm `@mdn/mdn-http-observatory`, pinned in
tests/e2e/js/package.json), run through its command-line entry point.

Its CLI takes one host name and scans `http://<host>/` and `https://<host>/`; a host with a
port and a path (`127.0.0.1:8443/api/docs`) makes it scan that page on that port. It
checks certificates for real (a certificate it cannot verify costs the HSTS and redirection
points), so the authority of a local server is handed to node in `NODE_EXTRA_CA_CERTS`.
The package's `bin` wrapper would replace that variable with a Mozilla bundle that its
install script downloads, so `src/scan.js`, which the wrapper runs, is run directly.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

PACKAGE = (
    Path(__file__).parents[1] / "e2e" / "js" / "node_modules" / "@mdn" / "mdn-http-observatory"
)


def scan(target: str, ca: Path) -> dict[str, Any]:
    """The scan's JSON result for `target` (host[:port][/path])."""
    if not (PACKAGE / "src" / "scan.js").is_file():
        pytest.fail(f"{PACKAGE} missing: run `npm ci` in tests/e2e/js")
    # Its install script downloads Chromium's HSTS preload list (tests/e2e/js/.npmrc turns
    # install scripts off: no network needed). The scanner only asks whether the scanned
    # host is on that list, and a loopback address never is: an empty list answers the same.
    preload = PACKAGE / "conf" / "hsts-preload.json"
    if not preload.is_file():
        preload.write_text("{}")
    proc = subprocess.run(
        ["node", str(PACKAGE / "src" / "scan.js"), target],
        env={**os.environ, "NODE_EXTRA_CA_CERTS": str(ca)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    try:
        result: dict[str, Any] = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"no JSON from the scanner: {proc.stdout}\n{proc.stderr}") from None
    assert "error" not in result, (result, proc.stderr)
    assert proc.returncode == 0, proc.stderr
    return result


def assert_a_plus(result: dict[str, Any]) -> None:
    """Grade A+ (score ≥ 100), every test passed, and the certificate trusted (a scanner
    that fell back to an unverified connection marks HSTS `hsts-invalid-cert`)."""
    tests = {name: t["result"] for name, t in result["tests"].items()}
    failed = {name: t["result"] for name, t in result["tests"].items() if not t["pass"]}
    assert failed == {}, failed
    assert result["scan"]["grade"] == "A+", (result["scan"], tests)
    assert result["scan"]["score"] >= 100, (result["scan"], tests)
    assert tests["strict-transport-security"] == "hsts-implemented-max-age-at-least-six-months"
    assert tests["content-security-policy"] == "csp-implemented-with-no-unsafe-default-src-none"
