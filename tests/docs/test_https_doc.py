"""docs/https.md: its curl examples run with bash against `shipyard serve --self-signed
--redirect-http` (started as the page says), their output compared with the page's, and
its settings file loaded."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from shipyard.settings import load_settings
from shipyard.tools.certs import local_cert
from tests.helpers.docblocks import block, replace
from tests.helpers.servers import free_port, start_server, stop_server


@pytest.mark.e2e
def test_curl_examples_against_a_self_signed_server(tmp_path: Path) -> None:
    http_port = free_port()
    srv = start_server(
        tmp_path / "data",
        "",
        args=("--self-signed", "--redirect-http", str(http_port)),
        ca=tmp_path / "data" / "tls" / "ca.pem",
    )
    try:
        port = srv.url.rsplit(":", 1)[1]
        script = block("https-curl").text
        script = replace(script, "shipyard_data/tls/ca.pem", str(tmp_path / "data/tls/ca.pem"))
        script = replace(script, "8090", port)
        script = replace(script, "8080", str(http_port))
        expected = [line[2:] for line in script.splitlines() if line.startswith("# ")]
        for _ in range(300):  # the redirect listener is a process of its own
            r = subprocess.run(
                ["bash", "-c", "set -euo pipefail\n" + script],
                capture_output=True,
                text=True,
                timeout=60,
                env=os.environ,
            )
            if r.returncode == 0:
                break
            time.sleep(0.1)
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines() == expected
    finally:
        stop_server(srv)


def test_the_settings_file_example(tmp_path: Path) -> None:
    made = local_cert(tmp_path / "tls", ["localhost"])
    text = block("https-settings").text
    text = replace(text, "/etc/shipyard/fullchain.pem", str(made.cert))
    text = replace(text, "/etc/shipyard/privkey.pem", str(made.key))
    (tmp_path / "shipyard.toml").write_text(text)
    s = load_settings(env={}, toml_path=tmp_path / "shipyard.toml")
    assert (s.tls_cert, s.tls_key) == (str(made.cert), str(made.key))
    assert (s.redirect_http_port, s.hsts_preload) == (80, True)
    assert (s.cors_origins, s.cors_credentials, s.cors_max_age) == (
        "https://app.example.com",
        True,
        600,
    )
