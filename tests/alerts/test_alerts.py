"""Alerts end to end inside one app, on SQLite and PostgreSQL: a forced condition (HTTP
404s against a rule on the 4xx ratio) fires, is notified through the job queue to real
receivers — a local HTTP server standing in for Slack, PagerDuty and a generic webhook, and
`aiosmtpd` for e-mail — and resolves. Also silences, the repeat interval, the settings API
and secrets.

The evaluation loop is off (SHIPYARD_ALERTS_EVALUATOR=false): the test claims each tick
itself with an explicit time, one interval after the other, so nothing waits on a clock.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook as StandardWebhook
from standardwebhooks.webhooks import WebhookVerificationError
from starlette.testclient import TestClient

from shipyard.alerts.rules import DEFAULT_RULES
from shipyard.settings import Settings, load_settings
from shipyard.tools import webhooks as wh
from tests.helpers.smtp import SMTPServer, smtp_server
from tests.helpers.wait import wait_until
from tests.helpers.webhook_receiver import Received, Receiver, receiver_fixture

H = dict[str, str]
SLACK_TOKEN = "xoxslacktoken0123456789"
ROUTING_KEY = "R0UTINGKEY0123456789abcdef012345"
SECRET = wh.new_secret()
MAILS = ("oncall@example.com", "ops@example.com")
RULE = "Test4xx"
QUIET = {r.name: {"enabled": False} for r in DEFAULT_RULES}  # only the forced rule speaks
FORCED = {
    RULE: {
        "type": "http_error_ratio",
        "params": {"status": "4", "window": 3600, "minRequests": 1},
        "threshold": 0.2,
        "severity": "critical",
        "group": "test",
        "labels": {"team": "core"},
        "summary": "Too many 404s.",
    }
}
SOON = time.time() + 3600
CHANNEL_JOBS = 5  # two mails, Slack, PagerDuty, webhook


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from receiver_fixture()


@pytest.fixture
def mail() -> Iterator[SMTPServer]:
    with smtp_server() as srv:
        yield srv


@pytest.fixture
def settings(database_url: str, tmp_path: Path, receiver: Receiver, mail: SMTPServer) -> Settings:
    env = {
        "SHIPYARD_WEBHOOK_ALLOW_PRIVATE": "127.0.0.1",
        "SHIPYARD_WEBHOOK_BACKOFF_BASE": "0.2",  # notification retries after ~0.2, 0.4 s…
        "SHIPYARD_ALERTS_EVALUATOR": "false",
        "SHIPYARD_SMTP_HOST": "127.0.0.1",
        "SHIPYARD_SMTP_PORT": str(mail.port),
        "SHIPYARD_SMTP_TLS": "off",
        "SHIPYARD_ALERTS_EMAIL_TO": ",".join(MAILS),
        "SHIPYARD_ALERTS_SLACK_WEBHOOK_URL": f"{receiver.url}/slack/T0/B0/{SLACK_TOKEN}",
        "SHIPYARD_ALERTS_PAGERDUTY_URL": f"{receiver.url}/pagerduty",
        "SHIPYARD_ALERTS_PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
        "SHIPYARD_ALERTS_WEBHOOK_URL": f"{receiver.url}/hook",
        "SHIPYARD_ALERTS_WEBHOOK_SECRET": SECRET,
        "SHIPYARD_ALERTS_RUNBOOK_URL": "https://docs.example.com/alerts",
    }
    return load_settings(env=env, data_dir=str(tmp_path / "data"), database_url=database_url)


class Clock:
    """Claims one evaluation tick after the other, an interval apart."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.ext = client.app.state.services.extension("alerts")  # type: ignore[attr-defined]
        self.now = (time.time() // 60) * 60 + 1  # just after a tick's start

    def tick(self) -> bool:
        self.now += 60.0
        return bool(self.client.portal.call(self.ext.evaluator.tick, self.now))  # type: ignore[union-attr]

    def state(self) -> str:
        states = self.client.portal.call(self.ext.store.states)  # type: ignore[union-attr]
        return str(states[RULE].state) if RULE in states else "none"


def _rules(client: TestClient, su: H, doc: dict[str, Any], **more: Any) -> None:
    r = client.patch("/api/settings", json={"alerts": {"rules": doc, **more}}, headers=su)
    assert r.status_code == 200, r.text


def _force(client: TestClient, clock: Clock, n: int = 20) -> None:
    """Misses make the 4xx ratio high; ticks until the rule fires."""
    for _ in range(n):
        assert client.get("/api/no-such-thing").status_code == 404

    def fired() -> bool:
        clock.tick()
        return clock.state() == "firing"

    wait_until(fired, 30.0, 0.1, "the forced rule firing")


def _jobs(client: TestClient, su: H) -> list[dict[str, Any]]:
    r = client.get("/api/jobs?kind=alert_notification&perPage=500", headers=su)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def _by_path(got: list[Received], prefix: str) -> list[Received]:
    return [r for r in got if r.path.startswith(prefix)]


def _wait_deliveries(receiver: Receiver, mail: SMTPServer, n: int) -> list[Received]:
    """Until `n` notifications each reached Slack, the webhook and the mail boxes."""

    def done() -> bool:
        got = receiver.snapshot()
        return (
            len(_by_path(got, "/slack")) >= n
            and len(_by_path(got, "/hook")) >= n
            and len(_by_path(got, "/pagerduty")) >= n
            and len(mail.handler.received) >= n * len(MAILS)
        )

    wait_until(done, 30.0, 0.05, f"{n} notifications on every channel")
    return receiver.snapshot()


def test_a_forced_condition_fires_then_resolves_on_every_channel(
    client: TestClient,
    su: H,
    receiver: Receiver,
    mail: SMTPServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock(client)
    _rules(client, su, {**QUIET, **FORCED})
    assert clock.tick()  # the first sample: no window yet
    assert clock.state() == "inactive"
    _force(client, clock)

    got = _wait_deliveries(receiver, mail, 1)
    # Slack: an incoming webhook's JSON, text and blocks
    slack = _by_path(got, "/slack")[0]
    assert slack.path == f"/slack/T0/B0/{SLACK_TOKEN}"
    body = slack.json()
    assert body["text"].startswith("[FIRING 1] test: Test4xx")
    assert body["blocks"][0]["type"] == "header"
    assert "Too many 404s." in body["blocks"][1]["text"]["text"]
    assert "https://docs.example.com/alerts" in body["blocks"][1]["text"]["text"]
    # PagerDuty: Events API v2 trigger, deduplicated by the alert's fingerprint
    pd = _by_path(got, "/pagerduty")[0].json()
    assert pd["routing_key"] == ROUTING_KEY
    assert pd["event_action"] == "trigger"
    assert pd["payload"]["severity"] == "critical"
    assert pd["payload"]["source"] == "shipyard"
    dedup = pd["dedup_key"]
    assert len(dedup) == 20
    # the generic webhook: signed; the signature verifies, and fails on a changed body
    hook = _by_path(got, "/hook")[0]
    payload = StandardWebhook(SECRET).verify(hook.body, hook.headers)
    with pytest.raises(WebhookVerificationError):
        StandardWebhook(SECRET).verify(hook.body + b" ", hook.headers)
    assert payload["status"] == "firing"
    assert payload["group"] == "test"
    [alert] = payload["alerts"]
    assert (alert["name"], alert["status"], alert["fingerprint"]) == (RULE, "firing", dedup)
    assert alert["labels"] == {"team": "core", "alertname": RULE, "severity": "critical",
                               "group": "test"}  # fmt: skip
    assert alert["value"] > 0.2
    assert alert["runbook"] == "https://docs.example.com/alerts"
    # e-mail: one per recipient
    assert sorted(m.rcpt_tos[0] for m in mail.handler.received) == sorted(MAILS)
    assert all("FIRING" in str(m.message["subject"]) for m in mail.handler.received)
    # the API shows it
    listing = client.get("/api/alerts", headers=su).json()
    item = next(i for i in listing["items"] if i["name"] == RULE)
    assert (item["state"], item["silenced"], item["severity"]) == ("firing", False, "critical")
    assert item["firedAt"]
    assert item["lastNotified"]
    assert sorted(listing["channels"]) == ["email", "pagerduty", "slack", "webhook"]
    assert listing["evaluations"][0]["firing"] == 1

    # the condition goes away (the rule's threshold above any ratio): resolved, notified
    _rules(client, su, {**QUIET, RULE: {**FORCED[RULE], "threshold": 2.0}})
    assert clock.tick()
    assert clock.state() == "resolved"
    got = _wait_deliveries(receiver, mail, 2)
    assert _by_path(got, "/slack")[1].json()["text"].startswith("[RESOLVED 1] test: Test4xx")
    resolve = _by_path(got, "/pagerduty")[1].json()
    assert (resolve["event_action"], resolve["dedup_key"]) == ("resolve", dedup)
    later = _by_path(got, "/hook")[1]
    assert StandardWebhook(SECRET).verify(later.body, later.headers)["status"] == "resolved"
    assert later.headers["webhook-id"] != hook.headers["webhook-id"]
    assert all("RESOLVED" in str(m.message["subject"]) for m in mail.handler.received[2:])

    def completed() -> list[dict[str, Any]]:
        jobs = [j for j in _jobs(client, su) if j["state"] == "completed"]
        return jobs if len(jobs) >= 2 * CHANNEL_JOBS else []

    jobs = wait_until(completed, 15.0, 0.05, "every notification job completed")
    assert len(jobs) == 2 * CHANNEL_JOBS
    # no secret in the jobs API, the settings API or the logs
    shown = client.get("/api/jobs?kind=alert_notification", headers=su).text
    shown += client.get("/api/settings", headers=su).text
    for secret in (SLACK_TOKEN, ROUTING_KEY, SECRET, SECRET.removeprefix("whsec_")):
        assert secret not in shown
        assert secret not in caplog.text


def test_silences_suppress_and_then_let_through(
    client: TestClient, su: H, receiver: Receiver
) -> None:
    clock = Clock(client)
    _rules(client, su, {**QUIET, **FORCED})
    r = client.post(
        "/api/alerts/silences",
        json={
            "matchers": [
                {"name": "alertname", "value": "Test.*", "isRegex": True},
                {"name": "team", "value": "core"},
            ],
            "endsAt": time.time() + 86400,
            "comment": "maintenance",
        },
        headers=su,
    )
    assert r.status_code == 200, r.text
    silence = r.json()
    assert silence["state"] == "active"
    assert silence["createdBy"]
    assert clock.tick()
    _force(client, clock)
    assert clock.tick()
    assert _jobs(client, su) == []  # firing, silenced: nothing enqueued
    item = next(
        i for i in client.get("/api/alerts", headers=su).json()["items"] if i["name"] == RULE
    )
    assert (item["state"], item["silenced"], item["lastNotified"]) == ("firing", True, "")
    # a silence whose matchers do not all match does not silence
    other = client.patch(
        f"/api/alerts/silences/{silence['id']}",
        json={"matchers": [{"name": "team", "value": "core", "isEqual": False}]},
        headers=su,
    )
    assert other.status_code == 200, other.text
    assert clock.tick()
    assert len(_jobs(client, su)) == CHANNEL_JOBS  # the silence ended: notified now
    hooks = receiver.wait_for(lambda g: len(_by_path(g, "/hook")) >= 1, 15.0)
    assert len(_by_path(hooks, "/hook")) == 1
    assert client.delete(f"/api/alerts/silences/{silence['id']}", headers=su).status_code == 204
    assert client.get(f"/api/alerts/silences/{silence['id']}", headers=su).status_code == 404


def test_repeat_interval_while_firing(client: TestClient, su: H) -> None:
    clock = Clock(client)
    _rules(client, su, {**QUIET, **FORCED}, repeatInterval=120)
    assert clock.tick()
    _force(client, clock)
    counts = [len(_jobs(client, su))]
    for _ in range(4):  # +60 s, +120 s (repeat), +180 s, +240 s (repeat)
        assert clock.tick()
        assert clock.state() == "firing"
        counts.append(len(_jobs(client, su)))
    n = CHANNEL_JOBS
    assert counts == [n, n, 2 * n, 2 * n, 3 * n]


def test_the_same_tick_is_evaluated_once(client: TestClient, su: H) -> None:
    clock = Clock(client)
    assert clock.tick()
    ext = clock.ext
    assert not client.portal.call(ext.evaluator.tick, clock.now)  # type: ignore[union-attr]
    assert not client.portal.call(ext.evaluator.tick, clock.now + 30)  # type: ignore[union-attr]
    assert clock.tick()
    evaluations = client.get("/api/alerts", headers=su).json()["evaluations"]
    assert len(evaluations) == 2
    assert all(e["error"] == "" for e in evaluations)


def test_settings_api_checks_rules_and_keeps_secrets(client: TestClient, su: H) -> None:
    r = client.patch(
        "/api/settings", json={"alerts": {"rules": {"X": {"type": "nope"}}}}, headers=su
    )
    assert r.status_code == 400
    assert r.json()["data"]["alerts"]["rules"]["code"] == "validation_invalid_rules"
    assert "X.type" in r.json()["data"]["alerts"]["rules"]["message"]
    r = client.patch("/api/settings", json={"alerts": {"interval": 0}}, headers=su)
    assert r.status_code == 400
    # channel settings set through the environment are read-only here
    r = client.patch("/api/settings", json={"alerts": {"slackWebhookUrl": "https://x.example/y"}},
                     headers=su)  # fmt: skip
    assert r.status_code == 400
    assert r.json()["data"]["alerts"]["slackWebhookUrl"]["code"] == "validation_read_only"
    got = client.get("/api/settings", headers=su).json()["alerts"]
    assert "slackWebhookUrl" not in got
    assert "pagerdutyRoutingKey" not in got
    assert "webhookSecret" not in got
    assert got["webhookUrl"].endswith("/hook")
    # rules sent as an object come back as their JSON text, and apply
    doc = {"ShipyardQueueLag": {"threshold": 60}}
    assert (
        client.patch("/api/settings", json={"alerts": {"rules": doc}}, headers=su).status_code
        == 200
    )
    rules = client.get("/api/alerts", headers=su).json()["items"]
    lag = next(i for i in rules if i["name"] == "ShipyardQueueLag")
    assert lag["threshold"] == 60
    assert lag["promql"] == "max(shipyard_jobs_queue_lag_seconds) > 60"


def test_only_superusers(client: TestClient) -> None:
    assert client.get("/api/alerts").status_code == 401
    assert client.get("/api/alerts/silences").status_code == 401
    assert client.post("/api/alerts/silences", json={}).status_code == 401


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "matchers"),
        ({"matchers": [], "endsAt": SOON}, "matchers"),
        ({"matchers": [{"name": "bad name", "value": "x"}], "endsAt": SOON}, "matchers.0.name"),
        (
            {"matchers": [{"name": "a", "value": "(", "isRegex": True}], "endsAt": SOON},
            "matchers.0.value",
        ),
        ({"matchers": [{"name": "a", "value": "x"}]}, "endsAt"),
        ({"matchers": [{"name": "a", "value": "x"}], "endsAt": "yesterday"}, "endsAt"),
        ({"matchers": [{"name": "a", "value": "x"}], "startsAt": 2e9, "endsAt": 1e9}, "endsAt"),
        ({"matchers": [{"name": "a", "value": "x"}], "endsAt": SOON, "extra": 1}, "extra"),
    ],
)
def test_bad_silences_answer_400(
    client: TestClient, su: H, body: dict[str, Any], field: str
) -> None:
    r = client.post("/api/alerts/silences", json=body, headers=su)
    assert r.status_code == 400, r.text
    assert field in r.json()["data"], r.json()


def test_a_channel_that_is_down_gets_retries_and_nothing_is_lost(
    client: TestClient, su: H, receiver: Receiver
) -> None:
    clock = Clock(client)
    _rules(client, su, {**QUIET, **FORCED})
    assert clock.tick()
    receiver.mode = "503"
    _force(client, clock)
    failed = receiver.wait_for(lambda g: len(_by_path(g, "/hook")) >= 2, 15.0)
    assert [r.answered for r in _by_path(failed, "/hook")][:2] == [503, 503]
    receiver.mode = "ok"
    got = receiver.wait_for(lambda g: any(r.answered == 200 for r in _by_path(g, "/hook")), 20.0)
    hooks = _by_path(got, "/hook")
    assert hooks[-1].answered == 200
    assert len({r.headers["webhook-id"] for r in hooks}) == 1  # the same notification, retried
    assert StandardWebhook(SECRET).verify(hooks[-1].body, hooks[-1].headers)["status"] == "firing"

    def done() -> list[dict[str, Any]]:
        jobs = _jobs(client, su)
        return jobs if jobs and all(j["state"] == "completed" for j in jobs) else []

    jobs = wait_until(done, 20.0, 0.1, "every notification delivered")
    webhook_job = next(j for j in jobs if j["args"]["channel"] == "webhook")
    assert webhook_job["attempt"] >= 3


def _raise(client: TestClient, message: str) -> None:
    """One of Shipyard's own exceptions, to the exception sinks (error tracking records it)."""
    svc = client.app.state.services  # type: ignore[attr-defined]
    try:
        raise RuntimeError(message)
    except RuntimeError as exc:
        svc.telemetry.exception(exc, {"kind": "job", "job": "alerts-test"})


def test_error_rules_fire_on_a_new_issue_and_a_regression(
    client: TestClient, su: H, receiver: Receiver
) -> None:
    """Error tracking stamps issues with the real time, so this test evaluates in real time:
    a 1 s interval, each tick claimed as soon as its slot begins."""
    ext = client.app.state.services.extension("alerts")  # type: ignore[attr-defined]
    errors_rules = ("ShipyardErrorNewIssue", "ShipyardErrorRegression")
    quiet = {n: v for n, v in QUIET.items() if n not in errors_rules}
    _rules(client, su, quiet, interval=1)

    def tick() -> None:
        wait_until(lambda: client.portal.call(ext.evaluator.tick), 5.0, 0.05, "a new tick")  # type: ignore[union-attr]

    def states() -> dict[str, Any]:
        return dict(client.portal.call(ext.store.states))  # type: ignore[union-attr]

    tick()
    _raise(client, "the alerts test broke something")

    def issues() -> list[dict[str, Any]]:
        r = client.get("/api/errors", headers=su)
        assert r.status_code == 200, r.text
        return list(r.json()["items"])

    [issue] = wait_until(issues, 15.0, 0.05, "the issue recorded")
    tick()
    new = states()["ShipyardErrorNewIssue"]
    assert new.state == "firing"
    assert any("the alerts test broke something" in d for d in new.alert["details"])
    assert states()["ShipyardErrorRegression"].state == "inactive"
    got = receiver.wait_for(lambda g: len(_by_path(g, "/hook")) >= 1, 15.0)
    hook = _by_path(got, "/hook")[0]
    body = StandardWebhook(SECRET).verify(hook.body, hook.headers)
    assert [a["name"] for a in body["alerts"]] == ["ShipyardErrorNewIssue"]
    tick()  # nothing new since the previous evaluation: resolved
    assert states()["ShipyardErrorNewIssue"].state == "resolved"

    # resolved by a human, then it happens again: a regression
    r = client.patch(f"/api/errors/{issue['id']}", json={"status": "resolved"}, headers=su)
    assert r.status_code == 200, r.text
    _raise(client, "the alerts test broke something")

    def regressed() -> bool:
        tick()
        return bool(states()["ShipyardErrorRegression"].state == "firing")

    wait_until(regressed, 15.0, 0.05, "the regression alert firing")
    assert states()["ShipyardErrorNewIssue"].state == "resolved"  # the same issue: not new
