"""Parsers of settings values that several capabilities use (lists of networks, origins,
hosts, per-collection lifetimes); each raises `SettingsError` naming the setting."""

from __future__ import annotations

import re
from typing import Any


class SettingsError(ValueError):
    """A setting has a value Shipyard cannot use; the message names the setting."""


def parse_ttls(text: str) -> dict[str, int]:
    """`"posts=30, logs=0"` → {"posts": 30, "logs": 0}: per-collection cache lifetimes."""
    out: dict[str, int] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        name, sep, raw = part.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError(part)
            ttl = int(raw.strip())
            if ttl < 0:
                raise ValueError(part)
        except ValueError:
            raise SettingsError(
                f"SHIPYARD_CACHE_TTLS: expected name=seconds[,name=seconds…], got {part.strip()!r}"
            ) from None
        out[name.strip()] = ttl
    return out


def parse_allow_list(text: str) -> list[str]:
    """`"127.0.0.1, 10.0.0.0/8, hooks.internal"` → entries: addresses, networks, host names."""
    import ipaddress

    out: list[str] = []
    for part in text.split(","):
        entry = part.strip()
        if not entry:
            continue
        if any(ch.isdigit() for ch in entry[:1]) or ":" in entry:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise SettingsError(
                    f"SHIPYARD_WEBHOOK_ALLOW_PRIVATE: {entry!r} is not an address or network"
                ) from None
        out.append(entry.lower())
    return out


def parse_origins(text: str) -> list[str]:
    """`"*"` or `"https://app.example.com, http://localhost:5173"` → the allowed origins."""
    out = [part.strip() for part in text.split(",") if part.strip()]
    for origin in out:
        if origin != "*" and not re.fullmatch(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s]+", origin):
            raise SettingsError(
                f"SHIPYARD_CORS_ORIGINS: {origin!r} is not an origin (scheme://host[:port]) or *"
            )
    return out


def parse_networks(text: str, name: str) -> list[Any]:
    """`"127.0.0.0/8, ::1"` → the networks (ipaddress objects), each a CIDR or an address."""
    import ipaddress

    out: list[Any] = []
    for part in text.split(","):
        entry = part.strip()
        if not entry:
            continue
        try:
            out.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise SettingsError(f"{name}: {entry!r} is not an address or network (CIDR)") from None
    return out


PILLOW_MAX_PIXELS = 89_478_485  # Pillow's Image.MAX_IMAGE_PIXELS: past it Pillow itself warns


def parse_image_formats(text: str) -> tuple[str, ...]:
    """`"avif,webp"` → ("avif", "webp"): the negotiated thumbnail formats, preferred first."""
    names = [p.strip().lower() for p in text.split(",") if p.strip()]
    for name in names:
        if name not in ("avif", "webp"):
            raise SettingsError(f"SHIPYARD_IMAGE_FORMATS: {name!r} is not one of avif, webp")
    return tuple(dict.fromkeys(names))


def parse_image_widths(text: str) -> tuple[int, ...]:
    """`"320,640"` → (320, 640): the responsive widths served as `?thumb=<W>x0`, ascending."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    for p in parts:
        if not (p.isascii() and p.isdigit() and 1 <= int(p) <= 8192):
            raise SettingsError(f"SHIPYARD_IMAGE_WIDTHS: {p!r} is not a width of 1..8192 pixels")
    return tuple(sorted({int(p) for p in parts}))
