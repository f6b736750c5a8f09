"""The `rateLimits` section of the runtime settings (`/api/settings`), as PocketBase keeps
it: `enabled`, `rules` (a list of `{label, audience, duration, maxRequests}`) and
`excludedIPs` (addresses and CIDR networks never limited), with PocketBase's checks and
error codes; plus Shipyard's `exemptSuperusers` (PocketBase always exempts them).

Each field stands for a start-up setting (`SHIPYARD_RATELIMIT_*`) that gives its default
and, set explicitly, makes it read-only here. The lists are text there (rules as JSON,
addresses comma-separated), so `overlay` writes them back as text.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

import orjson

from shipyard.kernel.errors import FieldError
from shipyard.kernel.runtime import Field, Section

from .rules import ItemErrors, decode_rules, parse_rules, rules_problem

NAME = "rateLimits"


def _rules_ok(value: Any) -> FieldError | None:
    return rules_problem(value)


def _addresses(raw: Any) -> list[str]:
    if not isinstance(raw, list) or not all(isinstance(a, str) for a in raw):
        raise FieldError("validation_invalid_value", "Must be a list of strings.")
    return list(raw)


def network_problem(entry: str) -> dict[str, str] | None:
    """PocketBase's check of one excluded IP (its code keeps PocketBase's spelling)."""
    if not entry:
        return {"code": "validation_required", "message": "Cannot be blank."}
    try:
        ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return {"code": "validation_invlaid_ip_or_subnet", "message": "Invalid IP or CIDR subnet."}
    return None


def _addresses_ok(value: Any) -> FieldError | None:
    errors = {str(i): p for i, a in enumerate(value) if (p := network_problem(a))}
    return ItemErrors(errors) if errors else None


def _rules_required(values: Mapping[str, Any]) -> dict[str, FieldError]:
    if values["enabled"] and not values["rules"]:
        return {"rules": FieldError("validation_required", "Cannot be blank.")}
    return {}


def addresses_of(text: str) -> list[str]:
    return [a.strip() for a in text.split(",") if a.strip()]


def _as_settings(values: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "ratelimit_enabled": values["enabled"],
        "ratelimit_rules": orjson.dumps(values["rules"]).decode(),
        "ratelimit_excluded_ips": ",".join(values["excludedIPs"]),
        "ratelimit_exempt_superusers": values["exemptSuperusers"],
    }


RATE_LIMITS = Section(
    NAME,
    (
        Field(
            "rules",
            "array",
            "ratelimit_rules",
            "Rules `{label, audience, duration, maxRequests}`: at most maxRequests requests per "
            "duration seconds per client (IP address for guests, auth record for users) for "
            "the requests the label names (docs/ratelimit.md).",
            checks=(_rules_ok,),
            parse=decode_rules,
            base=lambda s: parse_rules(s.ratelimit_rules),
        ),
        Field(
            "excludedIPs",
            "array",
            "ratelimit_excluded_ips",
            "Client addresses and CIDR networks never limited.",
            checks=(_addresses_ok,),
            parse=_addresses,
            base=lambda s: addresses_of(s.ratelimit_excluded_ips),
        ),
        Field("enabled", "boolean", "ratelimit_enabled", "Apply the rules."),
        Field(
            "exemptSuperusers",
            "boolean",
            "ratelimit_exempt_superusers",
            "Superusers are never limited (PocketBase always exempts them).",
        ),
    ),
    "Rate limits (docs/ratelimit.md).",
    validate=_rules_required,
    overlay=_as_settings,
)
