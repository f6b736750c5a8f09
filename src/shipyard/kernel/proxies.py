"""The client's real address and scheme behind reverse proxies.

`X-Forwarded-For`, `Forwarded` and `X-Real-IP` (and `X-Forwarded-Proto` / `proto=`) are
believed only when the connection comes from a configured proxy address
(`SHIPYARD_TRUSTED_PROXIES`, CIDRs; default none): anyone else could write them. The
gateway applies this once per request by rewriting the ASGI scope's `client` and `scheme`,
as uvicorn's proxy-headers middleware does, so every consumer — rate limits, brute-force
counters, request logs, rules' `@request.ip`… — sees one and the same client address.

The client is found walking the forwarded chain from the right, skipping trusted proxies:
the first address not ours is the client (a client may prepend anything, but cannot
forge what our own proxies appended).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, MutableMapping
from typing import Any

from shipyard.settings import parse_networks

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip().strip('"')
    if text.startswith("["):  # Forwarded: for="[2001:db8::1]:4711"
        text = text[1 : text.find("]")] if "]" in text else text[1:]
    elif text.count(":") == 1:  # IPv4 with a port
        text = text.split(":", 1)[0]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _forwarded_pairs(value: str, key: str) -> list[str]:
    """The `key=` values of an RFC 7239 `Forwarded` header, in order."""
    out: list[str] = []
    for element in value.split(","):
        for pair in element.split(";"):
            name, sep, val = pair.partition("=")
            if sep and name.strip().lower() == key:
                out.append(val.strip().strip('"'))
    return out


class TrustedProxies:
    def __init__(self, networks: Iterable[Network]) -> None:
        self.networks = tuple(networks)

    @classmethod
    def parse(cls, text: str) -> TrustedProxies:
        return cls(parse_networks(text, "SHIPYARD_TRUSTED_PROXIES"))

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusted(self, address: str) -> bool:
        addr = _address(address)
        return addr is not None and any(addr in net for net in self.networks)

    def apply(self, scope: MutableMapping[str, Any]) -> None:
        """Rewrite `scope["client"]` and `scope["scheme"]` from the forwarding headers when
        the peer is a trusted proxy; otherwise leave the scope as it is."""
        client = scope.get("client")
        if not self.networks or not client or not self.trusted(str(client[0])):
            return
        xff = forwarded = real_ip = proto = ""
        for key, value in scope.get("headers", ()):
            if key == b"x-forwarded-for":
                xff = f"{xff},{value.decode('latin-1')}" if xff else value.decode("latin-1")
            elif key == b"forwarded":
                v = value.decode("latin-1")
                forwarded = f"{forwarded},{v}" if forwarded else v
            elif key == b"x-real-ip":
                real_ip = value.decode("latin-1")
            elif key == b"x-forwarded-proto":
                proto = value.decode("latin-1")
        chain: list[str] = []
        if forwarded:
            chain = _forwarded_pairs(forwarded, "for")
            protos = _forwarded_pairs(forwarded, "proto")
            proto = protos[-1] if protos else proto
        elif xff:
            chain = [part.strip() for part in xff.split(",") if part.strip()]
        elif real_ip:
            chain = [real_ip]
        ip = self._client_of(chain)
        if ip is not None:
            scope["client"] = (ip, 0)
        proto = proto.split(",")[-1].strip().lower()
        if proto in ("http", "https"):
            scope["scheme"] = proto

    def _client_of(self, chain: list[str]) -> str | None:
        """The rightmost address that is not a trusted proxy (the leftmost when all are)."""
        last: str | None = None
        for text in reversed(chain):
            addr = _address(text)
            if addr is None:  # garbage, or an obfuscated identifier: stop believing the rest
                return last
            last = str(addr)
            if not any(addr in net for net in self.networks):
                return last
        return last


__all__ = ["TrustedProxies"]
