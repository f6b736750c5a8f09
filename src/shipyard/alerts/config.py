"""The `alerts` section of the runtime settings (`/api/settings`): whether alerting runs, its
interval, the rules document and the channels. Each field stands for a start-up setting
(`SHIPYARD_ALERTS_*`, docs/alerts.md), which gives its default and, set explicitly, makes
it read-only here. Channel secrets (the Slack URL, the PagerDuty routing key, the webhook
secret) are written, never returned.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

from shipyard.alerts.rules import RuleError, parse_rules
from shipyard.kernel.errors import FieldError
from shipyard.kernel.runtime import Field, Section, between, one_line
from shipyard.settings import Settings
from shipyard.tools import webhooks as wh

_EMAIL = re.compile(r"^[^@\s,]+@[^@\s,]+\.[^@\s,]+$")
MAX_RECIPIENTS = 20


def recipients(text: str) -> list[str]:
    return [a.strip() for a in text.split(",") if a.strip()]


def _emails(value: Any) -> FieldError | None:
    addrs = recipients(value)
    if len(addrs) > MAX_RECIPIENTS or not all(_EMAIL.match(a) for a in addrs):
        return FieldError(
            "validation_is_email",
            f"Must be up to {MAX_RECIPIENTS} e-mail addresses, separated by commas.",
        )
    return None


def _url(value: Any) -> FieldError | None:
    if not value:
        return None
    try:
        wh.check_url(value)
    except wh.Refused as exc:
        return FieldError("validation_is_url", f"Must be an http(s) URL: {exc}.")
    return None


def _rules_text(raw: Any) -> str:
    """The rules document as JSON text: an object is taken as is, a string as its text."""
    if isinstance(raw, dict):
        return orjson.dumps(raw).decode()
    if isinstance(raw, str):
        return raw
    raise FieldError("validation_invalid_value", "Must be an object (or its JSON text).")


def _rules_ok(value: Any) -> FieldError | None:
    if len(value) > 100_000:
        return FieldError("validation_length_out_of_range", "At most 100000 characters.")
    try:
        parse_rules(value)
    except RuleError as exc:
        return FieldError("validation_invalid_rules", str(exc))
    return None


def _signed(values: Mapping[str, Any]) -> dict[str, FieldError]:
    """The generic webhook is always signed: its URL needs a secret."""
    if values["webhookUrl"] and not values["webhookSecret"]:
        return {"webhookSecret": FieldError("validation_required", "Required with webhookUrl.")}
    return {}


ALERTS = Section(
    "alerts",
    (
        Field("enabled", "boolean", "alerts_enabled", "Evaluate the rules and notify."),
        Field(
            "interval",
            "number",
            "alerts_interval",
            "Seconds between evaluations (one process of the cluster evaluates each).",
            checks=(between(1, 86400),),
        ),
        Field(
            "repeatInterval",
            "number",
            "alerts_repeat_interval",
            "Seconds before a still-firing alert is notified again.",
            checks=(between(1, 30 * 86400),),
        ),
        Field(
            "rules",
            "string",
            "alerts_rules",
            "Overrides of the default rules and new rules: a JSON object keyed by rule name "
            "(sent as an object or as its JSON text; returned as text). See docs/alerts.md.",
            checks=(_rules_ok,),
            parse=_rules_text,
        ),
        Field(
            "emailTo",
            "string",
            "alerts_email_to",
            "E-mail recipients, comma-separated (sent through the `smtp` settings).",
            checks=(_emails,),
        ),
        Field(
            "slackWebhookUrl",
            "string",
            "alerts_slack_webhook_url",
            "A Slack incoming webhook. Write-only: never returned.",
            secret=True,
            checks=(_url,),
        ),
        Field(
            "pagerdutyRoutingKey",
            "string",
            "alerts_pagerduty_routing_key",
            "A PagerDuty Events API v2 integration key. Write-only: never returned.",
            secret=True,
            checks=(one_line,),
        ),
        Field(
            "pagerdutyUrl",
            "string",
            "alerts_pagerduty_url",
            "The PagerDuty Events API v2 endpoint.",
            checks=(_url,),
        ),
        Field(
            "webhookUrl",
            "string",
            "alerts_webhook_url",
            "A generic webhook receiving signed JSON notifications.",
            checks=(_url,),
        ),
        Field(
            "webhookSecret",
            "string",
            "alerts_webhook_secret",
            "The webhook's signing secret (whsec_…). Write-only: never returned.",
            secret=True,
            checks=(one_line,),
        ),
        Field(
            "runbookUrl",
            "string",
            "alerts_runbook_url",
            "Where the runbooks are: rule anchors are appended (#shipyarddiskfreelow).",
            checks=(one_line,),
        ),
    ),
    "Alert rules and notification channels (docs/alerts.md).",
    validate=_signed,
)


def channels(s: Settings) -> list[dict[str, str]]:
    """The configured channels; e-mail is one channel per recipient (a retry resends to
    that recipient only)."""
    out: list[dict[str, str]] = []
    if s.smtp_host:
        out += [{"channel": "email", "to": a} for a in recipients(s.alerts_email_to)]
    if s.alerts_slack_webhook_url:
        out.append({"channel": "slack"})
    if s.alerts_pagerduty_routing_key:
        out.append({"channel": "pagerduty"})
    if s.alerts_webhook_url:
        out.append({"channel": "webhook"})
    return out


__all__ = ["ALERTS", "channels", "recipients"]
