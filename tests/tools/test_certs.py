"""The local authority and server certificate of `shipyard serve --self-signed`, checked
with cryptography's own path validation (what a TLS client does), and kept across starts."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store

from shipyard.tools.certs import local_cert

HOSTS = ["localhost", "127.0.0.1", "::1"]


def _verify(ca: Path, cert: Path, name: x509.GeneralName) -> None:
    store = Store([x509.load_pem_x509_certificate(ca.read_bytes())])
    verifier = PolicyBuilder().store(store).build_server_verifier(name)
    verifier.verify(x509.load_pem_x509_certificate(cert.read_bytes()), [])


def test_a_server_certificate_that_its_authority_vouches_for(tmp_path: Path) -> None:
    made = local_cert(tmp_path / "tls", HOSTS)
    _verify(made.ca, made.cert, x509.DNSName("localhost"))
    _verify(made.ca, made.cert, x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    _verify(made.ca, made.cert, x509.IPAddress(ipaddress.ip_address("::1")))
    assert os.stat(made.key).st_mode & 0o077 == 0  # the private keys: the owner's only
    assert os.stat(tmp_path / "tls" / "ca-key.pem").st_mode & 0o077 == 0
    cert = x509.load_pem_x509_certificate(made.cert.read_bytes())
    assert cert.not_valid_after_utc - dt.datetime.now(dt.UTC) > dt.timedelta(days=300)


def test_kept_across_starts_and_reissued_under_the_same_authority(tmp_path: Path) -> None:
    first = local_cert(tmp_path, HOSTS)
    ca, cert = first.ca.read_bytes(), first.cert.read_bytes()
    again = local_cert(tmp_path, ["localhost"])  # names it covers already
    assert (again.ca.read_bytes(), again.cert.read_bytes()) == (ca, cert)
    more = local_cert(tmp_path, [*HOSTS, "shipyard.test"])  # a new name: a new certificate…
    assert more.cert.read_bytes() != cert
    assert more.ca.read_bytes() == ca  # … from the authority the browser already trusts
    _verify(more.ca, more.cert, x509.DNSName("shipyard.test"))
