"""Forwarding headers are believed only from configured proxies, and then give the
rightmost address that is not one of ours (a client may prepend anything)."""

from __future__ import annotations

from typing import Any

import pytest

from shipyard.kernel.proxies import TrustedProxies
from shipyard.settings import SettingsError, load_settings


def scope(peer: str, *headers: tuple[str, str], scheme: str = "http") -> dict[str, Any]:
    return {
        "type": "http",
        "client": (peer, 4711),
        "scheme": scheme,
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
    }


def applied(proxies: str, s: dict[str, Any]) -> tuple[str, str]:
    TrustedProxies.parse(proxies).apply(s)
    return s["client"][0], s["scheme"]


def test_no_trusted_proxies_ignores_every_forwarding_header() -> None:
    s = scope("10.0.0.2", ("X-Forwarded-For", "1.2.3.4"), ("X-Forwarded-Proto", "https"))
    assert applied("", s) == ("10.0.0.2", "http")


def test_an_untrusted_peer_cannot_claim_an_address() -> None:
    s = scope("203.0.113.9", ("X-Forwarded-For", "1.2.3.4"), ("X-Real-IP", "5.6.7.8"))
    assert applied("10.0.0.0/8", s) == ("203.0.113.9", "http")


def test_a_trusted_proxy_gives_the_client_and_the_scheme() -> None:
    s = scope("10.0.0.2", ("X-Forwarded-For", "198.51.100.7"), ("X-Forwarded-Proto", "https"))
    assert applied("10.0.0.0/8", s) == ("198.51.100.7", "https")


def test_a_spoofed_left_part_of_the_chain_is_not_believed() -> None:
    # the client wrote "1.1.1.1" itself; our proxy appended the real peer it saw
    s = scope("10.0.0.2", ("X-Forwarded-For", "1.1.1.1, 198.51.100.7, 10.0.0.3"))
    assert applied("10.0.0.0/8", s)[0] == "198.51.100.7"


def test_repeated_headers_are_one_chain() -> None:
    s = scope("10.0.0.2", ("X-Forwarded-For", "1.1.1.1"), ("X-Forwarded-For", "198.51.100.7"))
    assert applied("10.0.0.2", s)[0] == "198.51.100.7"


def test_rfc7239_forwarded_with_ipv6_and_ports() -> None:
    s = scope(
        "127.0.0.1",
        ("Forwarded", 'for="[2001:db8::1]:4711";proto=https, for=127.0.0.1'),
    )
    assert applied("127.0.0.1", s) == ("2001:db8::1", "https")


def test_x_real_ip_when_there_is_no_chain() -> None:
    s = scope("::1", ("X-Real-IP", "192.0.2.44"))
    assert applied("::1", s)[0] == "192.0.2.44"


def test_garbage_in_the_chain_stops_the_walk() -> None:
    s = scope("10.0.0.2", ("X-Forwarded-For", "198.51.100.7, not-an-ip, 10.0.0.3"))
    # nothing left of the garbage is believed: the last trusted hop is the answer
    assert applied("10.0.0.0/8", s)[0] == "10.0.0.3"


def test_a_bad_setting_is_refused_with_its_name() -> None:
    with pytest.raises(SettingsError, match="SHIPYARD_TRUSTED_PROXIES"):
        load_settings(env={"SHIPYARD_TRUSTED_PROXIES": "10.0.0.0/8, nope"}, toml_path=None)
