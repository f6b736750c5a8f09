"""The `alert_notification` job: one group's alerts to one channel. Delivered through the
job queue, so a channel that is down gets retries with backoff and, in the end, a dead
letter (`/api/jobs?state=discarded`); nothing is lost. The job's arguments hold no secret:
the Slack URL, the PagerDuty key and the webhook secret are read from the settings in
effect when it runs.

- e-mail: through the mailer the `smtp` settings configure (kernel/mail.py);
- Slack: an incoming webhook, `text` plus Block Kit `blocks`;
- PagerDuty: Events API v2, one `trigger` or `resolve` per alert, `dedup_key` = the alert's
  fingerprint (so repeats update the same incident and a resolve closes it);
- webhook: the JSON notification, signed as Standard Webhooks do (`webhook-id`,
  `webhook-timestamp`, `webhook-signature` = v1,base64(HMAC-SHA256(id.timestamp.body))).

Outgoing URLs go through the same guard as webhooks (tools/webhooks.py): private and
loopback addresses are refused unless SHIPYARD_WEBHOOK_ALLOW_PRIVATE names them.
"""

from __future__ import annotations

import html
import urllib.parse
from typing import Any

import orjson

from shipyard.kernel.mail import mailer_from_settings
from shipyard.settings import Settings, parse_allow_list
from shipyard.tools import webhooks as wh
from shipyard.tools.mailer import MailError, Message
from shipyard.tools.worker import Discard

CHANNELS = ("email", "slack", "pagerduty", "webhook")
_PD_SEVERITY = {"critical": "critical", "warning": "warning", "info": "info"}
_EMOJI = {"firing": ":rotating_light:", "resolved": ":white_check_mark:"}


class NotifyFailed(Exception):
    """The channel did not accept the notification; the job retries it."""


def _check(args: Any) -> tuple[str, str, list[dict[str, Any]]]:
    if not isinstance(args, dict):
        raise Discard("alert_notification: args must be an object")
    channel, nid, alerts = args.get("channel"), args.get("id"), args.get("alerts")
    if channel not in CHANNELS or not isinstance(nid, str) or not isinstance(alerts, list):
        raise Discard("alert_notification: args must be {channel, id, group, alerts}")
    if not all(isinstance(a, dict) for a in alerts):
        raise Discard("alert_notification: alerts must be objects")
    return str(channel), nid, alerts


def title(group: str, alerts: list[dict[str, Any]]) -> str:
    firing = [a for a in alerts if a.get("status") == "firing"]
    resolved = len(alerts) - len(firing)
    parts = []
    if firing:
        parts.append(f"FIRING {len(firing)}")
    if resolved:
        parts.append(f"RESOLVED {resolved}")
    names = ", ".join(sorted({str(a.get("name")) for a in alerts}))
    return f"[{' / '.join(parts)}] {group}: {names}"[:300]


def body(group: str, alerts: list[dict[str, Any]]) -> dict[str, Any]:
    """The generic webhook's JSON (and what every other channel is written from)."""
    status = "firing" if any(a.get("status") == "firing" for a in alerts) else "resolved"
    return {"version": "1", "group": group, "status": status, "title": title(group, alerts),
            "alerts": alerts}  # fmt: skip


def _lines(a: dict[str, Any]) -> list[str]:
    out = [
        f"{str(a.get('status', '')).upper()} {a.get('name')} ({a.get('severity')})",
        str(a.get("summary", "")),
        str(a.get("description", "")),
    ]
    out += [f"  - {d}" for d in a.get("details", [])]
    out.append(f"Runbook: {a.get('runbook', '')}")
    out.append(
        f"Since: {a.get('startsAt', '')}" + (f", ended {a['endsAt']}" if a.get("endsAt") else "")
    )
    return out


def text(group: str, alerts: list[dict[str, Any]]) -> str:
    blocks = ["\n".join(_lines(a)) for a in alerts]
    return title(group, alerts) + "\n\n" + "\n\n".join(blocks) + "\n"


def slack(group: str, alerts: list[dict[str, Any]]) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title(group, alerts)[:150]}}
    ]
    for a in alerts[:40]:  # Slack takes at most 50 blocks
        emoji = _EMOJI.get(str(a.get("status")), "")
        details = "".join(f"\n• {d}" for d in a.get("details", []))
        md = (
            f"{emoji} *{a.get('name')}* ({a.get('severity')}): {a.get('summary')}\n"
            f"{a.get('description')}{details}\n<{a.get('runbook')}|Runbook>"
        )
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": md[:3000]}})
    return {"text": title(group, alerts), "blocks": blocks}


def pagerduty_event(routing_key: str, a: dict[str, Any]) -> dict[str, Any]:
    action = "trigger" if a.get("status") == "firing" else "resolve"
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": str(a.get("fingerprint")),
    }
    if action == "trigger":
        event["payload"] = {
            "summary": f"{a.get('name')}: {a.get('summary')}"[:1024],
            "source": "shipyard",
            "severity": _PD_SEVERITY.get(str(a.get("severity")), "warning"),
            "group": a.get("group"),
            "custom_details": {
                "description": a.get("description"),
                "value": a.get("value"),
                "threshold": a.get("threshold"),
                "labels": a.get("labels"),
                "details": a.get("details"),
            },
        }
        runbook = str(a.get("runbook", ""))
        if runbook.startswith(("http://", "https://")):
            event["links"] = [{"href": runbook, "text": "Runbook"}]
    return event


async def _post(s: Settings, url: str, payload: bytes, headers: dict[str, str]) -> None:
    allow = parse_allow_list(s.webhook_allow_private)
    try:
        d = await wh.post(url, payload, headers, allow=allow, timeout=s.alerts_delivery_timeout)
    except wh.Refused as exc:
        raise Discard(f"refused: {exc}") from None
    if not d.ok:
        # the host only: the URL's path holds a token (Slack) and this is logged
        raise NotifyFailed(f"{urllib.parse.urlsplit(url).hostname}: {d.error}")


_JSON = {"content-type": "application/json", "user-agent": wh.USER_AGENT}


async def deliver(ctx: Any, args: Any) -> dict[str, Any]:
    """The job handler."""
    channel, nid, alerts = _check(args)
    group = str(args.get("group", "shipyard"))
    s: Settings = await ctx.services.runtime.current()
    if channel == "email":
        to = args.get("to")
        if not isinstance(to, str):
            raise Discard("alert_notification: an e-mail notification needs `to`")
        mailer = mailer_from_settings(s)
        if mailer is None:
            raise MailError("mail is disabled: set the smtp settings")  # retried
        plain = text(group, alerts)
        markup = "<pre>" + html.escape(plain) + "</pre>"
        await mailer.send(Message(to, title(group, alerts), markup, plain))
        return {"channel": channel, "alerts": len(alerts)}
    if channel == "slack":
        if not s.alerts_slack_webhook_url:
            raise Discard("the Slack channel is no longer configured")
        await _post(s, s.alerts_slack_webhook_url, orjson.dumps(slack(group, alerts)), _JSON)
    elif channel == "pagerduty":
        if not s.alerts_pagerduty_routing_key:
            raise Discard("the PagerDuty channel is no longer configured")
        for a in alerts:  # PagerDuty deduplicates by dedup_key: a retry resends safely
            event = pagerduty_event(s.alerts_pagerduty_routing_key, a)
            await _post(s, s.alerts_pagerduty_url, orjson.dumps(event), _JSON)
    else:
        if not s.alerts_webhook_url:
            raise Discard("the webhook channel is no longer configured")
        payload = orjson.dumps(body(group, alerts))
        headers = wh.signed_headers(s.alerts_webhook_secret, f"alert_{nid}", payload)
        await _post(s, s.alerts_webhook_url, payload, headers)
    return {"channel": channel, "alerts": len(alerts)}


__all__ = ["CHANNELS", "NotifyFailed", "body", "deliver", "pagerduty_event", "slack", "text"]
