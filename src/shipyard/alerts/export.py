"""`shipyard alerts export`: the metric rules in effect as a Prometheus rule file, and an
Alertmanager configuration whose receiver has the configured channels — for teams that run
Prometheus and Alertmanager instead of (or beside) Shipyard's own evaluation.

Rules on error tracking's activity (new issue, regression) have no metric behind them and
stay in Shipyard; the rule file names them in a comment. Secrets are not written into the
Alertmanager file: it names files (`api_url_file`, `routing_key_file`,
`auth_password_file`) that the export writes beside it with mode 0600.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from shipyard.alerts.config import recipients
from shipyard.alerts.rules import Rule, parse_rules, runbook_url
from shipyard.settings import Settings


def _dur(seconds: float) -> str:
    return f"{max(0, round(seconds))}s"


def prometheus_rules(s: Settings) -> tuple[dict[str, Any], list[str]]:
    """The rule file's content, and the names of the enabled rules it cannot hold."""
    groups: dict[str, list[dict[str, Any]]] = {}
    left: list[str] = []
    for rule in parse_rules(s.alerts_rules):
        if not rule.enabled:
            continue
        if rule.kind.promql is None:
            left.append(rule.name)
            continue
        groups.setdefault(rule.group, []).append(_alerting_rule(rule, s))
    out = {
        "groups": [
            {"name": name, "interval": _dur(s.alerts_interval), "rules": rules}
            for name, rules in sorted(groups.items())
        ]
    }
    return out, left


def _alerting_rule(rule: Rule, s: Settings) -> dict[str, Any]:
    assert rule.kind.promql is not None  # noqa: S101  (the caller checked)
    labels = {k: v for k, v in rule.all_labels().items() if k != "alertname"}
    entry: dict[str, Any] = {"alert": rule.name, "expr": rule.kind.promql(rule)}
    if rule.for_ > 0:
        entry["for"] = _dur(rule.for_)
    entry["labels"] = labels
    entry["annotations"] = {
        "summary": rule.summary or rule.name,
        "description": f"{rule.type}: {{{{ $value | humanize }}}} "
        f"(fires when {rule.kind.op} {rule.threshold:.12g})",
        "runbook_url": runbook_url(rule, s.alerts_runbook_url),
    }
    return entry


def alertmanager_config(s: Settings, secrets_dir: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """The Alertmanager configuration, and the secret files it names (path → content)."""
    receiver: dict[str, Any] = {"name": "shipyard"}
    files: dict[str, str] = {}
    glob: dict[str, Any] = {"resolve_timeout": "5m"}
    emails = recipients(s.alerts_email_to)
    if emails and s.smtp_host:
        glob["smtp_smarthost"] = f"{s.smtp_host}:{s.smtp_port}"
        glob["smtp_from"] = s.mail_sender_address
        glob["smtp_require_tls"] = s.smtp_tls != "off"
        if s.smtp_username:
            glob["smtp_auth_username"] = s.smtp_username
            path = secrets_dir / "smtp_password"
            files[str(path)] = s.smtp_password
            glob["smtp_auth_password_file"] = str(path)
        receiver["email_configs"] = [{"to": a, "send_resolved": True} for a in emails]
    if s.alerts_slack_webhook_url:
        path = secrets_dir / "slack_webhook_url"
        files[str(path)] = s.alerts_slack_webhook_url
        receiver["slack_configs"] = [
            {
                "api_url_file": str(path),
                "send_resolved": True,
                "title": "{{ .Status | toUpper }}: {{ .CommonLabels.alertname }}",
                "text": "{{ range .Alerts }}{{ .Annotations.summary }} "
                "({{ .Annotations.runbook_url }})\n{{ end }}",
            }
        ]
    if s.alerts_pagerduty_routing_key:
        path = secrets_dir / "pagerduty_routing_key"
        files[str(path)] = s.alerts_pagerduty_routing_key
        receiver["pagerduty_configs"] = [
            {"routing_key_file": str(path), "url": s.alerts_pagerduty_url, "send_resolved": True}
        ]
    if s.alerts_webhook_url:
        # Alertmanager does not sign its webhooks: its own JSON, unsigned (docs/alerts.md)
        receiver["webhook_configs"] = [{"url": s.alerts_webhook_url, "send_resolved": True}]
    config = {
        "global": glob,
        "route": {
            "receiver": "shipyard",
            "group_by": ["group"],
            "group_wait": "30s",
            "group_interval": _dur(max(s.alerts_interval, 60.0) * 5),
            "repeat_interval": _dur(s.alerts_repeat_interval),
        },
        "receivers": [receiver],
    }
    return config, files


def _dump(data: Any) -> str:
    return str(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=10_000))


def export(s: Settings, rules_path: Path | None, am_path: Path | None) -> list[str]:
    """Write the files asked for; what was written, for the command to print."""
    done: list[str] = []
    if rules_path is not None:
        content, left = prometheus_rules(s)
        head = "# Shipyard alert rules (shipyard alerts export). Check: promtool check rules FILE\n"
        if left:
            head += (
                "# Evaluated by Shipyard only (no metric behind them): " + ", ".join(left) + "\n"
            )
        rules_path.write_text(head + _dump(content))
        n = sum(len(g["rules"]) for g in content["groups"])
        done.append(f"{rules_path}: {n} rules")
    if am_path is not None:
        secrets_dir = am_path.parent / "secrets"
        config, files = alertmanager_config(s, secrets_dir.resolve())
        if files:
            secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            for path, value in files.items():
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(value)
        head = "# Alertmanager configuration (shipyard alerts export). Check: amtool check-config FILE\n"
        am_path.write_text(head + _dump(config))
        channels = [k.removesuffix("_configs") for k in config["receivers"][0] if k != "name"]
        done.append(f"{am_path}: receiver with {', '.join(channels) or 'no channels'}")
        if files:
            done.append(f"{secrets_dir}: {len(files)} secret files (mode 0600)")
    return done


__all__ = ["alertmanager_config", "export", "prometheus_rules"]
