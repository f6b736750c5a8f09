"""Evaluation: once per interval, across every process and machine, exactly one process
claims the tick (alerts/store.py), reads the cluster's metrics and error activity, moves
each rule's state machine and enqueues the notifications — states, samples and jobs in one
transaction, so a notification exists exactly when the state change that caused it does.

State machine per rule, with `for` (seconds) and the repeat interval:

    inactive/resolved --condition--> pending --held `for`--> firing --quiet--> resolved
                    (with `for` 0 straight to firing)  pending --quiet--> inactive

A firing alert is notified when it starts firing and again every repeat interval while it
still fires; a resolved notification follows one that was sent. Alerts that an active
silence matches are not notified (and, never notified, send no resolved either).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from shipyard.alerts.config import channels
from shipyard.alerts.rules import Rule, parse_rules, runbook_url
from shipyard.alerts.series import Snapshot
from shipyard.alerts.silences import Silence, Silences, iso
from shipyard.alerts.store import AlertState, AlertStore
from shipyard.errors.activity import ErrorActivity, IssueSummary
from shipyard.settings import Settings
from shipyard.tools.tasks import cancel

log = logging.getLogger("shipyard.alerts")

NOTIFY_KIND = "alert_notification"
MAX_DETAILS = 10


@dataclass
class Outcome:
    """A rule's value at one evaluation; `details` name what fired (issue titles…)."""

    value: float | None
    details: list[str] = field(default_factory=list)


def step(
    prev: AlertState | None, rule: Rule, active: bool, now: float, repeat: float
) -> tuple[AlertState, str | None]:
    """The rule's next state, and what to notify: "firing", "resolved" or None (before
    silences are considered)."""
    s = replace(prev) if prev is not None else AlertState(rule.name)
    if active:
        if s.state in ("inactive", "resolved"):
            s.state, s.since, s.notified_at = "pending", now, None
        if s.state == "pending" and now - (s.since or now) >= rule.for_:
            s.state, s.fired_at, s.resolved_at = "firing", now, None
        if s.state == "firing" and (s.notified_at is None or now - s.notified_at >= repeat):
            return s, "firing"
        return s, None
    if s.state == "pending":
        s.state, s.since = "inactive", None
    elif s.state == "firing":
        s.state, s.resolved_at = "resolved", now
        return s, "resolved" if s.notified_at is not None else None
    return s, None


def alert_of(rule: Rule, s: AlertState, out: Outcome, runbooks: str) -> dict[str, Any]:
    """What a notification says about one alert (and what the API shows)."""
    status = "firing" if s.state in ("firing", "pending") else "resolved"
    op = rule.kind.op
    value = "no data" if out.value is None else f"{out.value:.6g}"
    return {
        "name": rule.name,
        "status": status,
        "severity": rule.severity,
        "group": rule.group,
        "labels": rule.all_labels(),
        "summary": rule.summary or f"{rule.name} ({rule.type})",
        "description": f"{rule.type}: {value} (fires when {op} {rule.threshold:.6g})",
        "runbook": runbook_url(rule, runbooks),
        "value": out.value,
        "threshold": rule.threshold,
        "startsAt": iso(s.fired_at or s.since or time.time()),
        "endsAt": iso(s.resolved_at) if status == "resolved" and s.resolved_at else "",
        "fingerprint": rule.fingerprint,
        "details": out.details[:MAX_DETAILS],
    }


def silenced(labels: Mapping[str, str], silences: list[Silence], now: float) -> bool:
    return any(s.silences(labels, now) for s in silences)


class Evaluator:
    def __init__(self, services: Any, store: AlertStore, silences: Silences) -> None:
        self.services = services
        self.store = store
        self.silences = silences
        self._task: asyncio.Task[None] | None = None

    # -------------------------------------------------------------- inputs

    async def snapshot(self) -> Snapshot:
        """The cluster's merged metrics (the metrics capability); without it, this
        process's own (a single-process deployment sees everything that way)."""
        try:
            cluster = self.services.extension("metrics").cluster
        except (KeyError, AttributeError):
            snap: Snapshot = self.services.telemetry.metrics.snapshot()
            return snap
        got = cluster.read()
        if inspect.isawaitable(got):
            got = await got
        return dict(got)

    async def activity(self, since: float) -> ErrorActivity | None:
        try:
            tracker = self.services.extension("errors").tracker
        except (KeyError, AttributeError):
            return None
        out: ErrorActivity = await tracker.activity(since)
        return out

    async def outcomes(
        self, rules: list[Rule], snap: Snapshot, now: float, prev: float, interval: float
    ) -> tuple[dict[str, Outcome], dict[str, list[float]]]:
        """Every rule's value, and the samples this evaluation stores."""
        out: dict[str, Outcome] = {}
        samples: dict[str, list[float]] = {}
        since = prev if 0 < prev < now else now - interval
        since = max(since, now - 86400.0)
        activities: dict[float, ErrorActivity | None] = {}

        async def activity(at: float) -> ErrorActivity | None:
            if at not in activities:
                activities[at] = await self.activity(at)
            return activities[at]

        for rule in rules:
            kind = rule.kind
            try:
                if kind.sample is not None and kind.windowed is not None:
                    now_sample = kind.sample(snap, rule)
                    if now_sample is None:
                        out[rule.name] = Outcome(None)
                        continue
                    samples[rule.sample_key] = now_sample
                    window = float(rule.param("window"))
                    then = await self.store.baseline(rule.sample_key, now - window)
                    out[rule.name] = Outcome(kind.windowed(snap, rule, now_sample, then))
                elif kind.instant is not None:
                    out[rule.name] = Outcome(kind.instant(snap, rule))
                elif rule.type == "error_event_rate":
                    window = float(rule.param("window"))
                    a = await activity(now - window)
                    out[rule.name] = Outcome(None if a is None else a.events / window * 60.0)
                else:  # new issues, regressions since the previous evaluation
                    a = await activity(since)
                    out[rule.name] = _issues(rule, a)
            except Exception:  # one rule's trouble must not stop the others
                log.exception("alert rule %s could not be evaluated", rule.name)
                out[rule.name] = Outcome(None)
        return out, samples

    # -------------------------------------------------------------- one tick

    async def tick(self, now: float | None = None) -> bool:
        """Evaluate if this process wins the tick `now` falls in; whether it did."""
        now = time.time() if now is None else now
        settings: Settings = await self.services.runtime.current()
        if not settings.alerts_enabled:
            return False
        interval = settings.alerts_interval
        tick = math.floor(now / interval) * interval
        prev = await self.store.claim(tick, now)
        if prev is None:
            return False
        started = time.perf_counter()
        firing = notes = 0
        error = ""
        try:
            firing, notes = await self.evaluate(settings, now, prev)
        except Exception as exc:
            log.exception("alert evaluation failed")
            error = f"{type(exc).__name__}: {exc}"
        ms = (time.perf_counter() - started) * 1000
        keep = float(settings.alerts_history_retention)
        try:
            await self.store.log_evaluation(tick, ms, firing, notes, error, keep)
            await self.silences.prune(now, keep)
        except Exception as exc:
            log.warning("could not log the alert evaluation: %s", exc)
        return True

    async def evaluate(self, s: Settings, now: float, prev: float) -> tuple[int, int]:
        """One evaluation; (alerts firing, notifications enqueued)."""
        rules = [r for r in parse_rules(s.alerts_rules) if r.enabled]
        snap = await self.snapshot()
        outcomes, samples = await self.outcomes(rules, snap, now, prev, s.alerts_interval)
        active_silences = await self.silences.active(now)
        windows = [float(r.param("window")) for r in rules if "window" in r.kind.params]
        keep = max(windows, default=0.0) * 1.5 + 2 * s.alerts_interval
        groups: dict[str, list[dict[str, Any]]] = {}
        firing = 0
        db = self.store.db
        async with db.transaction() as tx:
            states = await self.store.states(tx)
            await self.store.add_samples(tx, now, samples, keep)
            for rule in rules:
                o = outcomes[rule.name]
                new, what = step(
                    states.pop(rule.name, None), rule, rule.condition(o.value), now,
                    s.alerts_repeat_interval,
                )  # fmt: skip
                new.value = o.value
                new.alert = alert_of(rule, new, o, s.alerts_runbook_url)
                firing += new.state == "firing"
                if what is not None and not silenced(new.alert["labels"], active_silences, now):
                    groups.setdefault(rule.group, []).append(new.alert)
                    if what == "firing":
                        new.notified_at = now
                await self.store.save_state(tx, new, now)
            for old in states.values():  # rules removed or disabled: they stop firing
                if old.state == "firing" and old.notified_at is not None and old.alert:
                    alert = {**old.alert, "status": "resolved", "endsAt": iso(now)}
                    if not silenced(alert.get("labels", {}), active_silences, now):
                        groups.setdefault(str(alert.get("group", "shipyard")), []).append(alert)
                await self.store.forget_state(tx, old.rule)
            notes = await self._enqueue(tx, s, groups, now)
        return firing, notes

    async def _enqueue(
        self, tx: Any, s: Settings, groups: dict[str, list[dict[str, Any]]], now: float
    ) -> int:
        """One job per group and channel, in the evaluation's transaction."""
        n = 0
        jobs = self.services.jobs
        for group, alerts in sorted(groups.items()):
            nid = f"{int(now * 1000)}-{group}"
            for ch in channels(s):
                await jobs.enqueue(
                    NOTIFY_KIND,
                    {**ch, "id": nid, "group": group, "alerts": alerts},
                    tx=tx,
                    max_attempts=s.alerts_delivery_attempts,
                    # PagerDuty sends one request per alert
                    timeout=s.alerts_delivery_timeout * (len(alerts) + 2) + 5,
                    meta={"group": group, "channel": ch["channel"]},
                )
                n += 1
        return n

    # -------------------------------------------------------------- the loop

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="alerts-evaluator")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    async def _run(self) -> None:
        """Every process wakes at each tick's start and tries to claim it."""
        while True:
            interval = 60.0
            try:
                interval = (await self.services.runtime.current()).alerts_interval
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is away: try at the next tick
                log.warning("alert evaluation skipped: %s", exc)
            now = time.time()
            wake = (math.floor(now / interval) + 1) * interval
            await asyncio.sleep(max(wake - now, 0.05) + 0.01)


def _issues(rule: Rule, a: ErrorActivity | None) -> Outcome:
    if a is None:
        return Outcome(None)
    found: list[IssueSummary] = a.new_issues if rule.type == "error_new_issue" else a.regressions
    project = rule.param("project")
    if project:
        found = [i for i in found if i.project == project]
    details = [f"[{i.project}] {i.title} ({i.level}, {i.count} events)" for i in found]
    return Outcome(float(len(found)), details)


__all__ = ["NOTIFY_KIND", "Evaluator", "Outcome", "alert_of", "step"]
