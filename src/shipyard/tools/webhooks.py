"""Outgoing webhook requests: Standard Webhooks signatures and a guard against SSRF.

Signing follows https://www.standardwebhooks.com: the secret is `whsec_` + base64 key
bytes; the signed content is `{webhook-id}.{webhook-timestamp}.{body}`; the signature
header is `v1,` + base64(HMAC-SHA256). Receivers can verify with any Standard Webhooks
library (the tests use the `standardwebhooks` package).

SSRF: a destination's host is resolved and every address checked before each delivery; an
address that is not globally routable (loopback, private, link-local, CGNAT, multicast,
reserved, unspecified, IPv4-mapped forms of those) is refused unless the allow-list names
the host, the address or a network containing it. The request then goes to the checked
address itself (TLS still verifies the certificate against the host name), so a DNS answer
that changes between the check and the connection cannot redirect it. Redirects are not
followed.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import ipaddress
import secrets
import socket
import ssl
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

import httpx

MAX_RESPONSE_KEPT = 1024  # bytes of the receiver's answer kept in the delivery log
USER_AGENT = "Shipyard-Webhooks/1"


class Refused(ValueError):
    """The destination is not allowed (scheme, host or address)."""


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


SECRET_BYTES = (24, 64)  # key sizes Standard Webhooks recommends


def decode_secret(secret: str) -> bytes | None:
    """The key bytes of `whsec_` + base64 (padding optional, as Standard Webhooks libraries
    accept it); None for anything else, which receivers' libraries could not verify."""
    if not secret.startswith("whsec_"):
        return None
    b64 = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(b64 + "=" * (-len(b64) % 4), validate=True)
    except ValueError:
        return None


def secret_key(secret: str) -> bytes:
    """The HMAC key of a secret (a string that is not `whsec_…` is used as UTF-8 bytes)."""
    key = decode_secret(secret)
    return secret.encode() if key is None else key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(
    secret: str, msg_id: str, body: bytes, now: float | None = None
) -> dict[str, str]:
    ts = int(time.time() if now is None else now)
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "accept-encoding": "identity",  # the kept start of the answer stays readable
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(secret, msg_id, ts, body),
    }


# ---------------------------------------------------------------------- SSRF


def check_url(url: str) -> urllib.parse.SplitResult:
    """Shape only: http(s), a host, no credentials. Raises Refused."""
    try:
        parts = urllib.parse.urlsplit(url)
        _ = parts.port  # raises on a bad port
    except ValueError:
        raise Refused("the URL is not valid") from None
    if parts.scheme not in ("http", "https"):
        raise Refused("only http and https URLs are allowed")
    if not parts.hostname:
        raise Refused("the URL has no host")
    if parts.username or parts.password:
        raise Refused("credentials in the URL are not allowed; sign with the secret instead")
    if len(url) > 2048:
        raise Refused("the URL is longer than 2048 characters")
    return parts


def _allowed(
    host: str, ip: ipaddress.IPv4Address | ipaddress.IPv6Address, allow: list[str]
) -> bool:
    for entry in allow:
        if entry == host.lower():
            return True
        try:
            if ip in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # well-known prefix; the IPv4 is the last 32 bits
_LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")  # local-use translators: never public


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one reaches through a translator (mapped, 6to4, Teredo,
    NAT64): such a form of 10.0.0.1 or 169.254.169.254 must be refused like the original."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Globally routable unicast. Python 3.11 calls some reserved ranges global (e.g.
    IPv4-compatible `::7f00:1`, site-local `fec0::/10`), hence the extra checks."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_v4(ip)
        if inner is not None and not is_public(inner):
            return False
        if ip.ipv4_mapped is not None:
            return True
        if ip.is_site_local or ip in _LOCAL_NAT64:
            return False
    if ip.is_reserved and not (isinstance(ip, ipaddress.IPv6Address) and ip in _NAT64):
        return False
    return ip.is_global and not ip.is_multicast


async def resolve_checked(url: str, allow: list[str]) -> tuple[urllib.parse.SplitResult, str]:
    """The URL's parts and one address it may be sent to; raises Refused."""
    parts = check_url(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise Refused(f"the host {host!r} does not resolve ({exc.strerror or exc})") from None
    addrs = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addrs:
        raise Refused(f"the host {host!r} does not resolve")
    for a in addrs:
        ip = ipaddress.ip_address(a.split("%", 1)[0])
        if not is_public(ip) and not _allowed(host, ip, allow):
            raise Refused(
                f"{host!r} resolves to {a}, a private, loopback or reserved address; "
                "add it to SHIPYARD_WEBHOOK_ALLOW_PRIVATE to allow it"
            )
    return parts, addrs[0]


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context per process: building one loads the CA bundle, ~20 ms of CPU that
    would block the event loop on every delivery. (Clients are not shared: their pools key
    connections by address, and the pinned address may serve several host names.)"""
    return httpx.create_ssl_context()


async def _read_start(r: httpx.Response, into: bytearray) -> None:
    async for chunk in r.aiter_raw():
        into += chunk
        if len(into) >= MAX_RESPONSE_KEPT:
            return


@dataclass
class Delivery:
    ok: bool
    status: int | None  # the HTTP status, None when no answer came
    duration_ms: float
    error: str
    response: str  # the start of the receiver's answer


async def post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    allow: list[str],
    timeout: float,
) -> Delivery:
    """POST to the checked address of `url`. Raises Refused before sending anything."""
    parts, addr = await resolve_checked(url, allow)
    host = parts.hostname or ""
    netloc = f"[{addr}]" if ":" in addr else addr
    if parts.port:
        netloc += f":{parts.port}"
    pinned = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    host_header = host if not parts.port else f"{host}:{parts.port}"
    if ":" in host and not host.startswith("["):
        host_header = f"[{host}]" + (f":{parts.port}" if parts.port else "")
    extensions: dict[str, Any] = {}
    if parts.scheme == "https":
        extensions["sni_hostname"] = host
    start = time.perf_counter()
    try:
        async with httpx.AsyncClient(
            timeout=timeout, follow_redirects=False, trust_env=False, verify=_tls()
        ) as c:
            req = c.build_request(
                "POST",
                pinned,
                content=body,
                headers={**headers, "host": host_header},
                extensions=extensions,
            )
            # the status is the answer; of the body keep only the start, and never wait
            # long for (or hold in memory) a large, slow or endless one
            r = await asyncio.wait_for(c.send(req, stream=True), timeout)
            kept = bytearray()
            left = max(0.1, timeout - (time.perf_counter() - start))
            try:
                await asyncio.wait_for(_read_start(r, kept), left)
            except (httpx.HTTPError, TimeoutError):
                pass  # the status already came; a broken body does not change it
            finally:
                await r.aclose()
            text = bytes(kept[:MAX_RESPONSE_KEPT]).decode(errors="replace")
    except (httpx.HTTPError, TimeoutError) as exc:
        ms = (time.perf_counter() - start) * 1000
        why = f"no answer in {timeout:g} s" if isinstance(exc, TimeoutError) else str(exc)
        return Delivery(False, None, ms, f"{type(exc).__name__}: {why}"[:500], "")
    ms = (time.perf_counter() - start) * 1000
    ok = 200 <= r.status_code < 300
    err = "" if ok else f"HTTP {r.status_code}"
    return Delivery(ok, r.status_code, ms, err, text)
