"""The docs' Python and JSON examples, run for real in an app on SQLite and PostgreSQL:
hooks modules are loaded as the team's hooks module and their jobs must complete at the
first attempt; JSON examples must be what the API answers (the same shape, or the same
value where the example is exact); filter and rule examples must work."""

from __future__ import annotations

import asyncio
import json
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient

from shipyard.settings import load_settings
from tests.helpers.docblocks import DOCS, block, replace
from tests.helpers.docsapp import (
    DATE,
    HEADER,
    Inbox,
    all_completed_first_time,
    app,
    body_of,
    inbox_running,
    ok,
    same_shape,
    wait_jobs,
)
from tests.helpers.webhook_receiver import Receiver

PW = "first-pass-1"
URL = "/api/collections"


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    with inbox_running() as box:
        yield box


def _collection(c: TestClient, su: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = ok(c.post(URL, json=body, headers=su))
    return result


def test_collection_error(tmp_path: Path, database_url: str, inbox: Inbox) -> None:
    with app(tmp_path, database_url, inbox) as (c, su):
        r = c.post(URL, json={"name": "a-b"}, headers=su)
        assert r.status_code == 400
        assert r.json() == json.loads(block("collection-error").text)


def test_index_name_taken(tmp_path: Path, database_url: str, inbox: Inbox) -> None:
    with app(tmp_path, database_url, inbox) as (c, su):
        fields = [{"name": "title", "type": "text"}]
        index = "CREATE INDEX idx_title ON {} (title)"
        body = {"name": "posts", "fields": fields, "indexes": [index.format("posts")]}
        _collection(c, su, body)
        r = c.post(
            URL, json={**body, "name": "news", "indexes": [index.format("news")]}, headers=su
        )
        assert r.status_code == 400
        assert r.json() == json.loads(block("index-name-taken").text)


def test_record_error(tmp_path: Path, database_url: str, inbox: Inbox) -> None:
    with app(tmp_path, database_url, inbox) as (c, su):
        _collection(
            c,
            su,
            {
                "name": "posts",
                "createRule": "",
                "fields": [{"name": "title", "type": "text", "required": True}],
            },
        )
        r = c.post(f"{URL}/posts/records", json={})
        assert r.status_code == 400
        assert r.json() == json.loads(block("record-error").text)


# ------------------------------------------------------------------ hooks modules (jobs.md)


def test_hooks_module(tmp_path: Path, database_url: str, inbox: Inbox) -> None:
    hooks = block("hooks-module").text
    with app(tmp_path, database_url, inbox, hooks) as (c, su):
        _collection(
            c,
            su,
            {
                "name": "users",
                "type": "auth",
                "createRule": "",
                "fields": [{"name": "name", "type": "text"}],
            },
        )
        _collection(
            c,
            su,
            {
                "name": "orders",
                "createRule": "",
                "fields": [{"name": "quantity", "type": "number"}],
            },
        )
        _collection(
            c,
            su,
            {
                "name": "counters",
                "fields": [{"name": "name", "type": "text"}, {"name": "value", "type": "number"}],
            },
        )
        counter = ok(c.post(f"{URL}/counters/records", json={"name": "orders"}, headers=su))
        user = ok(
            c.post(
                f"{URL}/users/records",
                json={
                    "email": "ann@example.com",
                    "name": "Ann",
                    "password": PW,
                    "passwordConfirm": PW,
                },
            )
        )
        ok(c.post(f"{URL}/orders/records", json={"quantity": 3}))
        r = c.post(f"{URL}/orders/records", json={"quantity": 101})
        assert r.status_code == 400
        assert r.json() == {
            "status": 400,
            "message": "At most 100 items per order.",
            "data": {"quantity": {"code": "validation_max_quantity", "message": "At most 100."}},
        }
        # the scheduler's tick of 2025-01-01 03:00 UTC, as jobs.md describes it
        svc = c.app.state.services  # type: ignore[attr-defined]
        cron_job = svc.jobs.functions.crons["nightly_export"]
        c.portal.call(svc.jobs.enqueue_cron, cron_job, 1735700400.0)  # type: ignore[union-attr]
        tick = "2025-01-01 03:00:00.000Z"
        jobs = wait_jobs(c, su)
        all_completed_first_time(jobs)
        by_kind = {j["kind"]: j for j in jobs}
        assert set(by_kind) == {
            "event:users.on_signup",
            "welcome_email",
            "send_email",
            "event:orders.count_order",
            "cron:nightly_export",
            "export_collection",
        }
        assert by_kind["welcome_email"]["args"] == {"user": user["id"]}
        assert by_kind["welcome_email"]["result"] == {"mailed": "ann@example.com"}
        (mail,) = inbox.wait(1)
        assert (mail["To"], mail["Subject"]) == ("ann@example.com", "Welcome!")
        assert "Hello Ann!" in body_of(mail, "text/plain")
        got = ok(c.get(f"{URL}/counters/records/{counter['id']}", headers=su))
        assert got["value"] == 1  # one order saved, the refused one not counted
        # the scheduler's own tick could fire too (between 03:00 and 03:05 UTC): pick ours
        (cron,) = [j for j in jobs if j["uniqueKey"] == "cron:nightly_export:1735700400"]
        assert "`cron:nightly_export:1735700400`" in (DOCS / "jobs.md").read_text()
        assert cron["args"] == {"tick": tick, "schedule": "0 3 * * *"}
        (export,) = [j for j in jobs if j["id"] == cron["result"]["export_job"]]
        assert cron["result"] == {"export_job": export["id"], "tick": tick}
        assert export["result"]["rows"] == 1


def test_record_event(tmp_path: Path, database_url: str, inbox: Inbox) -> None:
    hooks = HEADER + textwrap.dedent(
        """
        @functions.on_record("orders", "update")
        async def capture(ctx, event):
            return event
        """
    )
    doc = json.loads(block("record-event").text)
    with app(tmp_path, database_url, inbox, hooks) as (c, su):
        _collection(c, su, {"name": "users", "type": "auth", "createRule": ""})
        _collection(
            c,
            su,
            {
                "name": "orders",
                "createRule": "",
                "updateRule": "",
                "fields": [{"name": "quantity", "type": "number"}],
            },
        )
        ok(
            c.post(
                f"{URL}/users/records",
                json={"email": "ann@example.com", "password": PW, "passwordConfirm": PW},
            )
        )
        login = ok(
            c.post(
                f"{URL}/users/auth-with-password",
                json={"identity": "ann@example.com", "password": PW},
            )
        )
        order = ok(c.post(f"{URL}/orders/records", json={"quantity": 2}))
        ok(
            c.patch(
                f"{URL}/orders/records/{order['id']}",
                json={"quantity": 3},
                headers={"Authorization": login["token"]},
            )
        )
        (job,) = [j for j in wait_jobs(c, su) if j["kind"] == "event:orders.capture"]
        event = job["result"]
        same_shape(doc, event)
        assert (event["type"], event["action"], event["collection"]) == (
            doc["type"],
            "update",
            "orders",
        )
        assert event["id"].startswith("evt_")
        assert doc["id"].startswith("evt_")
        assert event["auth"] == {"collection": "users", "id": login["record"]["id"]}
        assert (event["record"]["quantity"], event["oldRecord"]["quantity"]) == (3, 2)
        iso = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        assert iso.match(event["timestamp"])
        assert iso.match(doc["timestamp"])


def test_before_commit_handler(tmp_path: Path, database_url: str, inbox: Inbox) -> None:
    hooks = HEADER + block("before-commit-handler").text
    with app(tmp_path, database_url, inbox, hooks) as (c, su):
        _collection(
            c,
            su,
            {
                "name": "invoices",
                "createRule": "",
                "updateRule": "",
                "fields": [{"name": "status", "type": "text"}],
            },
        )
        _collection(
            c,
            su,
            {
                "name": "invoice_log",
                "fields": [{"name": "invoice", "type": "text"}, {"name": "note", "type": "text"}],
            },
        )
        inv = ok(c.post(f"{URL}/invoices/records", json={"status": "draft"}))
        path = f"{URL}/invoices/records/{inv['id']}"
        ok(c.patch(path, json={"status": "sent"}))
        ok(c.patch(path, json={"status": "paid"}))
        r = c.patch(path, json={"status": "draft"})
        assert r.status_code == 400
        assert r.json() == {
            "status": 400,
            "message": "Paid invoices cannot be changed.",
            "data": {},
        }
        assert ok(c.get(path, headers=su))["status"] == "paid"
        log = ok(c.get(f"{URL}/invoice_log/records?sort=created", headers=su))["items"]
        assert [(e["invoice"], e["note"]) for e in log] == [(inv["id"], "edited")] * 2
        assert all(DATE.match(e["created"]) for e in log)


def test_exactly_once(tmp_path: Path, database_url: str, inbox: Inbox) -> None:
    hooks = block("exactly-once").text
    with app(tmp_path, database_url, inbox, hooks) as (c, su):
        accounts = _collection(
            c,
            su,
            {
                "name": "accounts",
                "fields": [
                    {"name": "email", "type": "email"},
                    {"name": "balance", "type": "number"},
                ],
            },
        )
        _collection(
            c,
            su,
            {
                "name": "payments",
                "createRule": "",
                "fields": [
                    {"name": "account", "type": "relation", "collectionId": accounts["id"]},
                    {"name": "amount", "type": "number"},
                ],
            },
        )
        acct = ok(
            c.post(
                f"{URL}/accounts/records",
                json={"email": "ann@example.com", "balance": 10},
                headers=su,
            )
        )
        pay = ok(c.post(f"{URL}/payments/records", json={"account": acct["id"], "amount": 5}))
        jobs = wait_jobs(c, su)
        all_completed_first_time(jobs)
        assert sorted(j["kind"] for j in jobs) == [
            "event:payments.credit_account",
            "send_email",
            "send_receipt",
        ]
        assert ok(c.get(f"{URL}/accounts/records/{acct['id']}", headers=su))["balance"] == 15
        (mail,) = inbox.wait(1)
        assert (mail["To"], mail["Subject"]) == ("ann@example.com", "Your receipt")
        assert "We received your payment of 5." in body_of(mail, "text/plain")
        (receipt,) = [j for j in jobs if j["kind"] == "send_receipt"]
        assert receipt["args"] == {"payment": pay["id"]}


def test_send_email_call(tmp_path: Path, database_url: str, inbox: Inbox) -> None:
    """A fragment of a job handler: run as the body of one."""
    hooks = HEADER + (
        '@functions.job("doc_example")\nasync def doc_example(ctx, args):\n'
        + textwrap.indent(block("send-email-call").text, "    ")
    )
    with app(tmp_path, database_url, inbox, hooks) as (c, su):
        ok(c.post("/api/jobs", json={"kind": "doc_example"}, headers=su))
        all_completed_first_time(wait_jobs(c, su))
        (mail,) = inbox.wait(1)
        assert (mail["To"], mail["Subject"]) == ("ann@example.com", "Your report")
        assert "<p>It is <b>ready</b>.</p>" in body_of(mail, "text/html")


def test_job_export_and_stats_json(tmp_path: Path, database_url: str, inbox: Inbox) -> None:
    """The job, export result and stats examples have the API's shape."""
    with app(tmp_path, database_url, inbox) as (c, su):
        _collection(
            c,
            su,
            {
                "name": "orders",
                "fields": [{"name": "status", "type": "text"}, {"name": "total", "type": "number"}],
            },
        )
        ok(c.post(f"{URL}/orders/records", json={"status": "paid", "total": 3}, headers=su))
        job = ok(
            c.post(
                "/api/jobs",
                json={
                    "kind": "export_collection",
                    "args": {"collection": "orders", "format": "csv"},
                },
                headers=su,
            )
        )
        doc_job = json.loads(block("job-json").text)
        mail = ok(
            c.post("/api/jobs", json={"kind": "send_email", "args": doc_job["args"]}, headers=su)
        )
        all_completed_first_time(wait_jobs(c, su))
        real_mail = ok(c.get(f"/api/jobs/{mail['id']}", headers=su))
        same_shape(doc_job, real_mail)
        assert (real_mail["kind"], real_mail["queue"]) == (doc_job["kind"], doc_job["queue"])
        real = ok(c.get(f"/api/jobs/{job['id']}", headers=su))
        doc_result = json.loads(block("export-result").text)
        same_shape(doc_result, real["result"])
        assert real["result"]["file"] == f"{job['id']}-orders.csv"
        assert real["result"]["url"] == f"/api/exports/{job['id']}-orders.csv"
        assert doc_result["url"] == "/api/exports/" + doc_result["file"]
        stats = ok(c.get("/api/jobs/stats", headers=su))
        kinds = frozenset(
            {"$.kinds", "$.states", "$.kinds.send_email", "$.kinds.export_collection"}
        )
        same_shape(json.loads(block("job-stats").text), stats, maps=kinds)
        assert stats["states"] == {"completed": 2}


# ------------------------------------------------------------------------------ mail.md


def test_mail_python_api(tmp_path: Path, inbox: Inbox) -> None:
    settings = load_settings(
        env={},
        data_dir=str(tmp_path / "data"),
        smtp_host="127.0.0.1",
        smtp_port=inbox.port,
        smtp_tls="off",
    )
    code = "async def _example(settings, record, token, new_email):\n"
    code += textwrap.indent(block("mail-python-api").text, "    ") + "    return msg\n"
    namespace: dict[str, Any] = {}
    exec(compile(code, "docs/mail.md", "exec"), namespace)  # noqa: S102 (the documented example)
    record = {"id": "r4nd0mr3c0rd1d0", "email": "ann@example.com", "collectionName": "users"}
    msg = asyncio.run(namespace["_example"](settings, record, "tok3n", "ann.new@example.com"))
    assert msg.to == "ann@example.com"
    assert msg.subject == "Verify your Shipyard email"
    assert "/auth/confirm-verification/tok3n" in msg.html
    (mail,) = inbox.wait(1)
    assert mail["To"] == "ann.new@example.com"
    assert "/auth/confirm-email-change/tok3n" in body_of(mail, "text/html")


# -------------------------------------------------------------------------- webhooks.md


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.start()
    try:
        yield r
    finally:
        r.stop()


def _curl_body(text: str) -> Any:
    m = re.search(r"-d '(.*?)'", text, re.S)
    assert m, text
    return json.loads(m.group(1))


def test_webhook_examples(
    tmp_path: Path,
    database_url: str,
    inbox: Inbox,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The webhooks.md request, answers, body, delivery log and the verifying endpoint."""
    with app(tmp_path, database_url, inbox, webhook_backoff_base=0.2) as (c, su):
        _collection(
            c,
            su,
            {
                "name": "orders",
                "createRule": "",
                "updateRule": "",
                "fields": [{"name": "total", "type": "number"}],
            },
        )
        body = _curl_body(block("webhook-curl").text)
        body["url"] = replace(body["url"], "https://billing.example.com", receiver.url)
        created = ok(c.post("/api/webhooks", json=body, headers=su))
        doc = json.loads(block("webhook-created").text)
        same_shape(doc, created)
        for key in ("name", "collection", "events", "active"):
            assert created[key] == doc[key]
        assert created["secret"].startswith("whsec_")
        assert doc["secret"].startswith("whsec_")
        assert created["secretHint"] == "whsec_…" + created["secret"][-4:]

        refused = c.post(
            "/api/webhooks", json={**body, "name": "x", "url": "http://10.0.0.5/hooks"}, headers=su
        )
        assert refused.status_code == 400
        assert refused.json() == json.loads(block("webhook-refused").text)

        receiver.mode = "503"  # the first attempt fails, the retry is delivered
        order = ok(c.post(f"{URL}/orders/records", json={"total": 40}))
        assert len(receiver.wait_for(lambda got: len(got) >= 1)) >= 1
        receiver.mode = "ok"
        ok(c.patch(f"{URL}/orders/records/{order['id']}", json={"total": 42}))
        got = receiver.wait_for(lambda got: len([r for r in got if r.answered == 200]) >= 2, 30)
        delivered = [r for r in got if r.answered == 200]
        update = next(r for r in delivered if r.json()["type"] == "record.update")
        same_shape(json.loads(block("webhook-body").text), update.json())
        assert update.json()["data"]["record"]["total"] == 42

        log = ok(c.get(f"/api/webhooks/{created['id']}/deliveries", headers=su))
        same_shape(json.loads(block("webhook-log").text), log)
        assert {e["status"] for e in log["items"]} == {"delivered", "failed"}

        # the verifying endpoint of the docs, fed the real deliveries
        monkeypatch.setenv("BILLING_WEBHOOK_SECRET", created["secret"])
        handled: list[tuple[str, Any]] = []
        seen: set[str] = set()

        def already_processed(webhook_id: str) -> bool:
            if webhook_id in seen:
                return True
            seen.add(webhook_id)
            return False

        namespace: dict[str, Any] = {
            "already_processed": already_processed,
            "handle": lambda kind, data: handled.append((kind, data)),
        }
        exec(compile(block("webhook-verify").text, "docs/webhooks.md", "exec"), namespace)  # noqa: S102 (the documented example)
        endpoint = TestClient(
            Starlette(routes=[Route("/hook", namespace["receive"], methods=["POST"])])
        )
        for r in (update, update):  # a retry of the same event is handled once
            answer = endpoint.post("/hook", content=r.body, headers=r.headers)
            assert answer.status_code == 200
        assert handled == [("record.update", update.json()["data"])]
        forged = endpoint.post(
            "/hook", content=update.body.replace(b"42", b"43"), headers=update.headers
        )
        assert forged.status_code == 400


# --------------------------------------------------------------------- filters and rules

FILTERS = [  # (doc, expression) as the docs write them
    ("records-api.md", "(status = 'published' && views > 100) || author.name ~ 'ann'"),
    ("records-api.md", "comments_via_post.message"),
    ("jobs.md", "status = 'paid' && created >= @yesterday"),
    ("jobs.md", "created >= @yesterday"),
]
RULES = [  # (doc, collection key, rule)
    ("collections.md", "listRule", "owner = @request.auth.id"),
    (
        "collections.md",
        "createRule",
        '@request.auth.id != "" && @request.body.owner = @request.auth.id',
    ),
    (
        "collections.md",
        "updateRule",
        "owner = @request.auth.id && @request.body.owner:changed = false",
    ),
    ("collections.md", "manageRule", "@request.auth.role = 'admin'"),
]


def test_filter_and_rule_examples(tmp_path: Path, database_url: str, inbox: Inbox) -> None:
    docs = Path(__file__).resolve().parents[2] / "docs"
    for doc, expr in FILTERS:
        assert expr in (docs / doc).read_text(), (doc, expr)
    for doc, _, rule in RULES:
        assert rule in (docs / doc).read_text(), (doc, rule)
    with app(tmp_path, database_url, inbox) as (c, su):
        rules = {key: rule for _, key, rule in RULES if key != "manageRule"}
        users = _collection(
            c,
            su,
            {
                "name": "users",
                "type": "auth",
                "createRule": "",
                "manageRule": RULES[3][2],
                "updateRule": "@request.auth.id != ''",
                "fields": [{"name": "name", "type": "text"}, {"name": "role", "type": "text"}],
                "listRule": "",
            },
        )
        _collection(
            c,
            su,
            {
                "name": "posts",
                "listRule": "",
                "fields": [
                    {"name": "status", "type": "text"},
                    {"name": "views", "type": "number"},
                    {"name": "author", "type": "relation", "collectionId": users["id"]},
                    {"name": "owner", "type": "relation", "collectionId": users["id"]},
                ],
                **rules,
            },
        )
        _collection(
            c,
            su,
            {
                "name": "comments",
                "listRule": "",
                "fields": [
                    {"name": "post", "type": "relation", "collectionId": "posts"},
                    {"name": "message", "type": "text"},
                ],
            },
        )
        ann = ok(
            c.post(
                f"{URL}/users/records",
                json={
                    "email": "ann@example.com",
                    "name": "ann",
                    "password": PW,
                    "passwordConfirm": PW,
                },
            )
        )
        token = ok(
            c.post(
                f"{URL}/users/auth-with-password",
                json={"identity": "ann@example.com", "password": PW},
            )
        )["token"]
        me = {"Authorization": token}
        post = ok(
            c.post(
                f"{URL}/posts/records",
                json={"status": "published", "views": 150, "author": ann["id"], "owner": ann["id"]},
                headers=me,
            )
        )  # createRule
        ok(
            c.post(
                f"{URL}/comments/records", json={"post": post["id"], "message": "hi"}, headers=su
            )
        )
        listed = ok(c.get(f"{URL}/posts/records", params={"filter": FILTERS[0][1]}, headers=me))
        assert [p["id"] for p in listed["items"]] == [post["id"]]  # listRule and the filter
        via = ok(
            c.get(f"{URL}/posts/records", params={"filter": f"{FILTERS[1][1]} ~ 'hi'"}, headers=me)
        )
        assert via["totalItems"] == 1
        for _, expr in FILTERS[2:]:
            ok(c.get(f"{URL}/posts/records", params={"filter": expr}, headers=su))
        # updateRule: the owner may edit, not hand the record over
        path = f"{URL}/posts/records/{post['id']}"
        ok(c.patch(path, json={"views": 151}, headers=me))
        bob = ok(
            c.post(
                f"{URL}/users/records",
                json={"email": "bob@example.com", "password": PW, "passwordConfirm": PW},
            )
        )
        assert c.patch(path, json={"owner": bob["id"]}, headers=me).status_code == 404
        # manageRule: only an admin may change another user's email
        bob_path = f"{URL}/users/records/{bob['id']}"
        assert c.patch(bob_path, json={"email": "bob2@example.com"}, headers=me).status_code == 400
        ok(c.patch(f"{URL}/users/records/{ann['id']}", json={"role": "admin"}, headers=su))
        assert ok(c.patch(bob_path, json={"email": "bob2@example.com"}, headers=me))["email"] == (
            "bob2@example.com"
        )
