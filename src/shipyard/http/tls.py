"""HTTPS for `shipyard serve`: which certificate granian is given, and the optional
plain-HTTP listener that redirects to it (docs/https.md).

With `SHIPYARD_TLS_CERT`/`SHIPYARD_TLS_KEY` the files are used as they are (a certificate
from Let's Encrypt, say, renewed by certbot). `--self-signed` makes a local authority and a
certificate for this machine's names in `<data_dir>/tls` (tools/certs.py), for development:
trust `ca.pem` once and browsers, curl and Node accept the server.
"""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from shipyard.settings import Settings, SettingsError
from shipyard.tools.certs import local_cert


@dataclass(frozen=True)
class ServerTls:
    cert: Path
    key: Path
    ca: Path | None = None  # the local authority to trust, for a self-signed set-up


def local_hosts(settings: Settings) -> list[str]:
    """The names a self-signed certificate covers: loopback, the bound address unless it
    is a wildcard, and the host of SHIPYARD_APP_URL."""
    hosts = ["localhost", "127.0.0.1", "::1"]
    candidates = [settings.host, urlsplit(settings.app_url).hostname or ""]
    for host in candidates:
        try:
            if ipaddress.ip_address(host).is_unspecified:
                continue
        except ValueError:
            if not host:
                continue
        hosts.append(host)
    return list(dict.fromkeys(hosts))


def server_tls(settings: Settings) -> ServerTls | None:
    """The certificate and key to serve HTTPS with, made first when self-signed; None for
    plain HTTP."""
    if settings.tls_cert:
        for name, path in (("TLS_CERT", settings.tls_cert), ("TLS_KEY", settings.tls_key)):
            if not Path(path).is_file():  # checked here: other commands never read them
                raise SettingsError(f"SHIPYARD_{name}: {path} is not a file")
        return ServerTls(Path(settings.tls_cert), Path(settings.tls_key))
    if settings.tls_self_signed:
        made = local_cert(settings.data_dir / "tls", local_hosts(settings), settings.app_name)
        return ServerTls(made.cert, made.key, made.ca)
    return None


def start_redirect_listener(settings: Settings) -> subprocess.Popen[bytes] | None:
    """The HTTP→HTTPS listener as a child process (it reads the same SHIPYARD_* settings
    from the environment), or None when SHIPYARD_REDIRECT_HTTP_PORT is 0."""
    if not settings.redirect_http_port:
        return None
    return subprocess.Popen([sys.executable, "-m", "shipyard.http.redirect"])


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
