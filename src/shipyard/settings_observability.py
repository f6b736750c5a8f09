"""The observability part of the settings (metrics, logs, error tracking, alerting): a base of
`Settings`, kept apart so that settings.py stays one screen per concern."""

from __future__ import annotations

from dataclasses import dataclass, field

from shipyard.tools.settings_parse import SettingsError


@dataclass(frozen=True)
class ObservabilitySettings:
    # metrics (docs/metrics.md)
    metrics_enabled: bool = True  # off: nothing counted or published, GET /metrics is 404
    metrics_flush_interval: float = 5.0  # seconds between publications of a process's metrics
    # `Authorization: Bearer <token>` that may read GET /metrics; empty: none
    metrics_token: str = field(default="", repr=False)
    metrics_allow: str = "127.0.0.0/8,::1"  # client networks that may read it without a token
    # request and event logs (docs/logs.md)
    access_log: bool = True  # one JSON line per request on stdout
    log_format: str = "json"  # json | text: Shipyard's own log lines (stdout)
    logs_max_days: int = 5  # days `_logs` entries are kept; 0: the request log is off
    logs_min_level: int = 0  # PocketBase levels: -4 debug, 0 info, 4 warning, 8 error
    logs_log_ip: bool = True  # record the client's IP in `_logs`
    logs_log_auth_id: bool = False  # record the auth record's id in `_logs`
    logs_queue_max: int = 20000  # log entries waiting for the writer; more are dropped
    logs_flush_interval: float = 0.25  # seconds between log batch writes (lines and `_logs`)
    otel_endpoint: str = ""  # OTLP/HTTP traces endpoint (http://host:4318); empty: off
    otel_service_name: str = "shipyard"
    # error tracking (docs/errors.md)
    errors_max_body_size: int = 1024 * 1024  # bytes of one ingested body, as sent
    errors_max_uncompressed_size: int = 8 * 1024 * 1024  # the same body decompressed
    errors_rate_limit: int = 600  # events per minute per project (a project may set its own)
    errors_retention_days: int = 30  # events and issues not seen for this long are deleted
    errors_queue_size: int = 1000  # Shipyard's own exceptions waiting to be stored, per process
    # alerting (docs/alerts.md)
    alerts_enabled: bool = True  # evaluate the alert rules and send notifications
    alerts_evaluator: bool = True  # this process takes part in evaluating (claims ticks)
    alerts_interval: float = 60.0  # seconds between evaluations, cluster-wide
    alerts_repeat_interval: float = 4 * 3600.0  # seconds before a firing alert is re-sent
    alerts_rules: str = ""  # JSON object: overrides of the default rules, and new rules
    alerts_email_to: str = ""  # comma-separated recipients (mail through the smtp settings)
    alerts_slack_webhook_url: str = field(default="", repr=False)  # a secret: holds a token
    alerts_pagerduty_routing_key: str = field(default="", repr=False)
    alerts_pagerduty_url: str = "https://events.pagerduty.com/v2/enqueue"
    alerts_webhook_url: str = ""  # a generic webhook (signed like webhooks: Standard Webhooks)
    alerts_webhook_secret: str = field(default="", repr=False)
    alerts_runbook_url: str = "docs/alerts.md"  # rule anchors are appended: #shipyardqueuelag
    alerts_delivery_attempts: int = 10  # tries per notification before it is dead-lettered
    alerts_delivery_timeout: float = 10.0  # seconds per notification request
    alerts_history_retention: int = 7 * 86400  # seconds evaluations and expired silences are kept


def validate_observability(s: ObservabilitySettings) -> None:
    if s.log_format not in ("json", "text"):
        raise SettingsError("SHIPYARD_LOG_FORMAT: must be json or text")
    if s.logs_max_days < 0:
        raise SettingsError("SHIPYARD_LOGS_MAX_DAYS: must be 0 (off) or more days")
    if not s.logs_flush_interval > 0:
        raise SettingsError("SHIPYARD_LOGS_FLUSH_INTERVAL: must be greater than 0")
    if s.otel_endpoint and not s.otel_endpoint.startswith(("http://", "https://")):
        raise SettingsError("SHIPYARD_OTEL_ENDPOINT: must start with http:// or https://")
    _validate_alerts(s)


def _validate_alerts(s: ObservabilitySettings) -> None:
    """The alerting numbers (the rules document is checked by the alerts capability)."""
    if not 1 <= s.alerts_interval <= 86400:  # also refuses nan
        raise SettingsError("SHIPYARD_ALERTS_INTERVAL: must be between 1 and 86400 seconds")
    for name in ("alerts_repeat_interval", "alerts_delivery_timeout"):
        if not getattr(s, name) > 0:
            raise SettingsError(f"SHIPYARD_{name.upper()}: must be greater than 0")
