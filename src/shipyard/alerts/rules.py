"""Alert rules: a small set of types, each evaluated here over the cluster's metrics (or
error tracking's activity) and each written as PromQL for teams that run Prometheus.

A rule is `name`, `type`, `params`, `threshold`, `for` (seconds the condition must hold
before it fires), `severity`, `group` (alerts of one group are notified together), extra
`labels`, a `summary` and a runbook link. The defaults (`DEFAULT_RULES`) are on; a team
overrides, disables or adds rules with one JSON object keyed by rule name (the setting
`alerts.rules`, docs/alerts.md):

    {"ShipyardDiskFreeLow": {"threshold": 5e9}, "ShipyardQueueLag": {"enabled": false},
     "Checkout4xx": {"type": "http_error_ratio", "params": {"status": "4"}, "threshold": 0.2}}

Windowed types (ratios, quantiles, increases) need the value of a counter some time ago:
each evaluation stores a compact sample per such rule (`sample`), and the value is the
difference from the sample at the start of the window (`value`), as Prometheus' `rate`.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from shipyard.alerts.series import Sample, Snapshot, delta, extreme, histogram, quantile, total

REQUESTS = "shipyard_http_requests_total"
DURATION = "shipyard_http_request_duration_seconds"
JOBS = "shipyard_jobs_total"
QUEUE_LAG = "shipyard_jobs_queue_lag_seconds"
DISK_FREE = "shipyard_disk_free_bytes"
ERRORS = "shipyard_errors_total"
BACKUP_SUCCESS = "shipyard_backup_last_success_timestamp_seconds"  # docs/backups.md
DRILL_FAILED = "shipyard_backup_drill_failed"  # docs/operations/drills.md
DEAD_STATE = "discarded"  # shipyard_jobs_total{state} of a dead-lettered job (docs/metrics.md)

SEVERITIES = ("critical", "warning", "info")
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
GROUP_RE = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
LABEL_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
RESERVED_LABELS = ("alertname", "severity", "group")
MAX_RULES = 100
MAX_WINDOW = 86400.0


class RuleError(ValueError):
    """A rule (or the rules document) is not valid: `path` names the offending part."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


# ---------------------------------------------------------------------- rule types


@dataclass(frozen=True)
class Rule:
    name: str
    type: str
    threshold: float
    for_: float = 0.0
    severity: str = "warning"
    group: str = "shipyard"
    params: Mapping[str, Any] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    summary: str = ""
    runbook: str = ""  # an anchor of docs/alerts.md, or a URL
    enabled: bool = True

    @property
    def kind(self) -> RuleType:
        return TYPES[self.type]

    def all_labels(self) -> dict[str, str]:
        """The labels an alert of this rule carries (silences match on these)."""
        return {
            **self.labels,
            "alertname": self.name,
            "severity": self.severity,
            "group": self.group,
        }

    @property
    def fingerprint(self) -> str:
        """Stable across evaluations and processes: the rule's name and labels."""
        text = orjson.dumps(self.all_labels(), option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(text).hexdigest()[:20]

    @property
    def sample_key(self) -> str:
        """Samples are shared by rules with the same type and parameters."""
        text = orjson.dumps([self.type, dict(self.params)], option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(text).hexdigest()[:20]

    def param(self, name: str) -> Any:
        return self.params.get(name, self.kind.params.get(name))

    def condition(self, value: float | None) -> bool:
        if value is None or math.isnan(value):
            return False
        return value < self.threshold if self.kind.op == "<" else value > self.threshold

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "enabled": self.enabled,
            "params": {k: self.param(k) for k in self.kind.params},
            "threshold": self.threshold,
            "op": self.kind.op,
            "for": self.for_,
            "severity": self.severity,
            "group": self.group,
            "labels": dict(self.labels),
            "summary": self.summary,
            "runbook": self.runbook,
            "promql": self.kind.promql(self) if self.kind.promql else None,
        }


@dataclass(frozen=True)
class RuleType:
    name: str
    op: str  # ">" fires above the threshold, "<" below
    source: str  # "metrics" or "errors"
    params: Mapping[str, Any]  # defaults; a rule may set only these
    description: str
    # windowed types: what to store per evaluation, and the value from (now, window start)
    sample: Callable[[Snapshot, Rule], Sample | None] | None = None
    windowed: Callable[[Snapshot, Rule, Sample, Sample | None], float | None] | None = None
    # instant types: the value from the snapshot now
    instant: Callable[[Snapshot, Rule], float | None] | None = None
    promql: Callable[[Rule], str] | None = None


def _route(rule: Rule) -> dict[str, Callable[[str], bool]]:
    route = rule.param("route")
    return {"route": lambda v: v == route} if route else {}


def _sel(rule: Rule, **extra: str) -> str:
    """A PromQL label selector for the rule's filters."""
    parts = [f'{k}="{_q(v)}"' for k, v in (("route", rule.param("route") or ""),) if v]
    parts += [f'{k}=~"{v}"' if k == "status" else f'{k}="{_q(v)}"' for k, v in extra.items() if v]
    return "{" + ",".join(parts) + "}" if parts else ""


def _q(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _dur(seconds: Any) -> str:
    return f"{int(seconds)}s"


def _num(value: float) -> str:
    return repr(float(value)) if value != int(value) else str(int(value))


# 5xx (or 4xx…) ratio ------------------------------------------------------------------


def _ratio_sample(snap: Snapshot, rule: Rule) -> Sample | None:
    prefix = str(rule.param("status"))
    everything = total(snap, REQUESTS, _route(rule))
    if everything is None:
        return None
    bad = total(snap, REQUESTS, {**_route(rule), "status": lambda v: v.startswith(prefix)})
    return [everything, bad or 0.0]


def _ratio_value(snap: Snapshot, rule: Rule, now: Sample, then: Sample | None) -> float | None:
    if then is None:  # one sample is no window yet
        return None
    requests, bad = delta(now, then)
    if requests <= 0 or requests < float(rule.param("minRequests")):
        return None
    return bad / requests


def _ratio_promql(rule: Rule) -> str:
    w = _dur(rule.param("window"))
    bad = _sel(rule, status=f"{rule.param('status')}..")
    every = _sel(rule)
    expr = (
        f"sum(rate({REQUESTS}{bad}[{w}])) / sum(rate({REQUESTS}{every}[{w}])) "
        f"> {_num(rule.threshold)}"
    )
    return (
        f"({expr}) and sum(increase({REQUESTS}{every}[{w}])) >= {_num(rule.param('minRequests'))}"
    )


# latency quantile ----------------------------------------------------------------------


def _latency_sample(snap: Snapshot, rule: Rule) -> Sample | None:
    h = histogram(snap, DURATION, _route(rule))
    return None if h is None else h[1]


def _latency_value(snap: Snapshot, rule: Rule, now: Sample, then: Sample | None) -> float | None:
    h = histogram(snap, DURATION, _route(rule))
    if h is None or then is None:
        return None
    counts = delta(now, then)
    if sum(counts) < max(1.0, float(rule.param("minRequests"))):
        return None
    return quantile(float(rule.param("quantile")), h[0], counts)


def _latency_promql(rule: Rule) -> str:
    w = _dur(rule.param("window"))
    sel = _sel(rule)
    q = _num(float(rule.param("quantile")))
    return (
        f"(histogram_quantile({q}, sum by (le) (rate({DURATION}_bucket{sel}[{w}]))) "
        f"> {_num(rule.threshold)}) and sum(increase({DURATION}_count{sel}[{w}])) "
        f">= {_num(rule.param('minRequests'))}"
    )


# job dead letters ----------------------------------------------------------------------


def _kind(rule: Rule) -> dict[str, Callable[[str], bool]]:
    kind = rule.param("kind")
    return {"kind": lambda v: v == kind} if kind else {}


def _dead_sample(snap: Snapshot, rule: Rule) -> Sample | None:
    n = total(snap, JOBS, {**_kind(rule), "state": lambda v: v == DEAD_STATE})
    return None if n is None else [n]


def _increase_value(snap: Snapshot, rule: Rule, now: Sample, then: Sample | None) -> float | None:
    return delta(now, then)[0] if then is not None else None


def _dead_promql(rule: Rule) -> str:
    kind = rule.param("kind")
    sel = f'{{state="{DEAD_STATE}"' + (f',kind="{_q(kind)}"' if kind else "") + "}"
    return f"sum(increase({JOBS}{sel}[{_dur(rule.param('window'))}])) > {_num(rule.threshold)}"


# queue lag, disk free ------------------------------------------------------------------


def _queue(rule: Rule) -> dict[str, Callable[[str], bool]]:
    queue = rule.param("queue")
    return {"queue": lambda v: v == queue} if queue else {}


def _lag_value(snap: Snapshot, rule: Rule) -> float | None:
    return extreme(snap, QUEUE_LAG, _queue(rule), max)


def _lag_promql(rule: Rule) -> str:
    queue = rule.param("queue")
    sel = f'{{queue="{_q(queue)}"}}' if queue else ""
    return f"max({QUEUE_LAG}{sel}) > {_num(rule.threshold)}"


def _disk_value(snap: Snapshot, rule: Rule) -> float | None:
    return extreme(snap, DISK_FREE, {}, min)


def _disk_promql(rule: Rule) -> str:
    return f"min({DISK_FREE}) < {_num(rule.threshold)}"


def _backup_age_value(snap: Snapshot, rule: Rule) -> float | None:
    last = extreme(snap, BACKUP_SUCCESS, {}, max)
    return None if last is None else time.time() - last


def _backup_age_promql(rule: Rule) -> str:
    return f"time() - max({BACKUP_SUCCESS}) > {_num(rule.threshold)}"


def _drill_value(snap: Snapshot, rule: Rule) -> float | None:
    return extreme(snap, DRILL_FAILED, {}, max)


def _drill_promql(rule: Rule) -> str:
    return f"max({DRILL_FAILED}) > {_num(rule.threshold)}"


def _events_promql(rule: Rule) -> str:
    return f"sum(rate({ERRORS}[{_dur(rule.param('window'))}])) * 60 > {_num(rule.threshold)}"


_WINDOWED = {"window": 300.0, "minRequests": 20.0}
TYPES: dict[str, RuleType] = {
    t.name: t
    for t in (
        RuleType(
            "http_error_ratio",
            ">",
            "metrics",
            {**_WINDOWED, "status": "5", "route": ""},
            "Share of HTTP answers with a status of the class `status` (5: 5xx) over `window`.",
            sample=_ratio_sample,
            windowed=_ratio_value,
            promql=_ratio_promql,
        ),
        RuleType(
            "http_latency",
            ">",
            "metrics",
            {**_WINDOWED, "quantile": 0.99, "route": ""},
            "The `quantile` of HTTP request durations (seconds) over `window`.",
            sample=_latency_sample,
            windowed=_latency_value,
            promql=_latency_promql,
        ),
        RuleType(
            "job_dead_letters",
            ">",
            "metrics",
            {"window": 900.0, "kind": ""},
            "Jobs dead-lettered (out of attempts) during `window`.",
            sample=_dead_sample,
            windowed=_increase_value,
            promql=_dead_promql,
        ),
        RuleType(
            "queue_lag",
            ">",
            "metrics",
            {"queue": ""},
            "Seconds the oldest runnable job has waited (the largest over queues).",
            instant=_lag_value,
            promql=_lag_promql,
        ),
        RuleType(
            "disk_free",
            "<",
            "metrics",
            {},
            "Free bytes on the data directory's file system (the least over machines).",
            instant=_disk_value,
            promql=_disk_promql,
        ),
        RuleType(
            "backup_age",
            ">",
            "metrics",
            {},
            "Seconds since the latest verified backup (absent: no schedule and no backup).",
            instant=_backup_age_value,
            promql=_backup_age_promql,
        ),
        RuleType(
            "backup_drill_failed",
            ">",
            "metrics",
            {},
            "1 when the latest restore drill failed, else 0 (absent before the first drill).",
            instant=_drill_value,
            promql=_drill_promql,
        ),
        RuleType(
            "error_new_issue",
            ">",
            "errors",
            {"project": ""},
            "Issues first seen since the previous evaluation.",
        ),
        RuleType(
            "error_regression",
            ">",
            "errors",
            {"project": ""},
            "Resolved issues that happened again since the previous evaluation.",
        ),
        RuleType(
            "error_event_rate",
            ">",
            "errors",
            {"window": 300.0},
            "Error events stored per minute over `window` (all projects).",
            promql=_events_promql,
        ),
    )
}

GIB = 1024.0**3


def _default(
    name: str, type_: str, threshold: float, for_: float, severity: str, summary: str
) -> Rule:
    """A default rule; its runbook is its section of docs/alerts.md (the anchor of its name)."""
    return Rule(name, type_, threshold, for_, severity, summary=summary, runbook=name.lower())


DEFAULT_RULES: tuple[Rule, ...] = (
    _default("ShipyardHigh5xxRatio", "http_error_ratio", 0.05, 300.0, "critical",
             "More than 5 % of HTTP requests answer 5xx."),
    _default("ShipyardHighLatencyP99", "http_latency", 1.0, 600.0, "warning",
             "The 99th percentile of HTTP request durations is above 1 s."),
    _default("ShipyardJobDeadLetters", "job_dead_letters", 0.0, 0.0, "warning",
             "Jobs ran out of attempts and were dead-lettered."),
    _default("ShipyardQueueLag", "queue_lag", 300.0, 300.0, "warning",
             "Runnable jobs have waited more than 5 minutes."),
    _default("ShipyardDiskFreeLow", "disk_free", GIB, 300.0, "critical",
             "Less than 1 GiB is free on the data directory's disk."),
    _default("ShipyardBackupMissing", "backup_age", 2 * 86400.0, 0.0, "critical",
             "No verified backup finished in the last 2 days."),
    _default("ShipyardBackupDrillFailed", "backup_drill_failed", 0.0, 0.0, "critical",
             "The latest restore drill failed: the latest backup may not bring the service back."),
    _default("ShipyardErrorNewIssue", "error_new_issue", 0.0, 0.0, "warning",
             "A new error issue appeared."),
    _default("ShipyardErrorRegression", "error_regression", 0.0, 0.0, "warning",
             "A resolved error issue happened again."),
    _default("ShipyardErrorEventRate", "error_event_rate", 60.0, 300.0, "warning",
             "More than 60 error events a minute."),
)  # fmt: skip


# ---------------------------------------------------------------------- the rules document

_RULE_KEYS = {
    "type", "enabled", "threshold", "for", "severity", "group", "params", "labels", "summary",
    "runbook",
}  # fmt: skip


def _number(path: str, raw: Any, low: float, high: float) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        raise RuleError(path, "must be a number")
    if not low <= raw <= high:
        raise RuleError(path, f"must be between {low:g} and {high:g}")
    return float(raw)


def _text(path: str, raw: Any, limit: int) -> str:
    if not isinstance(raw, str) or len(raw) > limit:
        raise RuleError(path, f"must be a string of at most {limit} characters")
    if any(ord(ch) < 32 and ch not in "\n\t" for ch in raw):
        raise RuleError(path, "must not contain control characters")
    return raw


def _params(path: str, kind: RuleType, raw: Any, base: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise RuleError(path, "must be an object")
    out = dict(base)
    for key, value in raw.items():
        if key not in kind.params:
            allowed = ", ".join(kind.params) or "none"
            raise RuleError(f"{path}.{key}", f"not a parameter of {kind.name} (allowed: {allowed})")
        p = f"{path}.{key}"
        if key == "window":
            out[key] = _number(p, value, 1.0, MAX_WINDOW)
        elif key == "minRequests":
            out[key] = _number(p, value, 0.0, 1e12)
        elif key == "quantile":
            out[key] = _number(p, value, 0.001, 0.999)
        elif key == "status":
            if value not in ("1", "2", "3", "4", "5"):
                raise RuleError(p, 'must be a status class: "1" to "5"')
            out[key] = value
        else:  # route, kind, queue, project: exact label values
            out[key] = _text(p, value, 200)
    return out


def _labels(path: str, raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict) or len(raw) > 20:
        raise RuleError(path, "must be an object of at most 20 labels")
    out = {}
    for k, v in raw.items():
        if not LABEL_RE.match(k) or k in RESERVED_LABELS or k.startswith("__"):
            raise RuleError(f"{path}.{k}", "not a valid label name (or a reserved one)")
        out[k] = _text(f"{path}.{k}", v, 200)
    return out


def apply_override(name: str, base: Rule | None, raw: Any) -> Rule:  # noqa: C901  (one check per key)
    """`base` (a default rule, or None for a new one) changed by the document's entry."""
    if not isinstance(raw, dict):
        raise RuleError(name, "must be an object")
    unknown = sorted(set(raw) - _RULE_KEYS)
    if unknown:
        raise RuleError(f"{name}.{unknown[0]}", "unknown key")
    type_name = raw.get("type", base.type if base else None)
    if type_name not in TYPES:
        raise RuleError(f"{name}.type", "must be one of " + ", ".join(TYPES))
    if base is not None and type_name != base.type:
        base = None  # a new type: nothing of the old rule applies
    kind = TYPES[type_name]
    rule = base or Rule(name, type_name, 0.0, summary="", runbook="")
    changes: dict[str, Any] = {}
    if "params" in raw:
        changes["params"] = _params(f"{name}.params", kind, raw["params"], rule.params)
    if "threshold" in raw:
        changes["threshold"] = _number(f"{name}.threshold", raw["threshold"], -1e18, 1e18)
    elif base is None:
        raise RuleError(f"{name}.threshold", "is required for a new rule")
    if "for" in raw:
        changes["for_"] = _number(f"{name}.for", raw["for"], 0.0, 7 * 86400.0)
    if "enabled" in raw:
        if not isinstance(raw["enabled"], bool):
            raise RuleError(f"{name}.enabled", "must be true or false")
        changes["enabled"] = raw["enabled"]
    if "severity" in raw:
        if raw["severity"] not in SEVERITIES:
            raise RuleError(f"{name}.severity", "must be one of " + ", ".join(SEVERITIES))
        changes["severity"] = raw["severity"]
    if "group" in raw:
        group = raw["group"]
        if not isinstance(group, str) or not GROUP_RE.match(group):
            raise RuleError(f"{name}.group", "1 to 100 letters, digits, _, . or -")
        changes["group"] = group
    if "labels" in raw:
        changes["labels"] = _labels(f"{name}.labels", raw["labels"])
    for key in ("summary", "runbook"):
        if key in raw:
            changes[key] = _text(f"{name}.{key}", raw[key], 1000)
    return replace(rule, **changes)


def parse_rules(raw: Any) -> list[Rule]:
    """The rules in effect: the defaults with the document (a JSON object, or its text)
    applied. Raises RuleError naming the part that is wrong."""
    if isinstance(raw, str):
        if not raw.strip():
            raw = {}
        else:
            try:
                raw = orjson.loads(raw)
            except orjson.JSONDecodeError:
                raise RuleError("rules", "not valid JSON") from None
    if not isinstance(raw, dict):
        raise RuleError("rules", "must be a JSON object keyed by rule name")
    rules = {r.name: r for r in DEFAULT_RULES}
    for name, entry in raw.items():
        if not NAME_RE.match(name):
            raise RuleError(name, "a rule name is a letter or _ then letters, digits or _")
        rules[name] = apply_override(name, rules.get(name), entry)
    if len(rules) > MAX_RULES:
        raise RuleError("rules", f"at most {MAX_RULES} rules")
    return list(rules.values())


def runbook_url(rule: Rule, base: str) -> str:
    """A URL as is; an anchor appended to `base` (the docs' address)."""
    if "://" in rule.runbook:
        return rule.runbook
    return f"{base}#{rule.runbook}" if rule.runbook else base


__all__ = [
    "DEFAULT_RULES",
    "TYPES",
    "Rule",
    "RuleError",
    "RuleType",
    "parse_rules",
    "runbook_url",
]
