"""The built-in jobs, enqueued over `POST /api/jobs` and run by the app's own worker:
`send_email` against a real SMTP server (aiosmtpd), and `export_collection` with its
download endpoint — on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiosmtpd.controller import Controller
from starlette.testclient import TestClient

from shipyard.records.context import RequestContext
from tests.helpers.jobs_api import assert_error, enqueue, open_app, user_headers, wait_job
from tests.helpers.servers import free_port

H = dict[str, str]


class Inbox:
    """aiosmtpd handler keeping every delivered message."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append((list(envelope.rcpt_tos), msg))
        return "250 OK"


class SMTPServer:
    def __init__(self, port: int) -> None:
        self.port = port
        self.inbox = Inbox()
        self.controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp() -> Iterator[SMTPServer]:
    """A real SMTP server on a free port, not started yet (tests play an outage)."""
    srv = SMTPServer(free_port())
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def mail_app(smtp: SMTPServer, tmp_path: Path, database_url: str) -> Iterator[tuple[TestClient, H]]:
    with open_app(
        tmp_path, database_url, smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_tls="off"
    ) as app:
        yield app


def _body(msg: EmailMessage, subtype: str) -> str:
    part = msg.get_body(preferencelist=(subtype,))
    assert part is not None, msg
    return str(part.get_content()).replace("\r\n", "\n")


# ---------------------------------------------------------------------- send_email


def test_send_email_reaches_the_smtp_server(
    mail_app: tuple[TestClient, H], smtp: SMTPServer
) -> None:
    c, su = mail_app
    smtp.start()
    args = {
        "to": "ann@example.com",
        "subject": "Your report — ready",
        "text": "Hello Ann,\nthe report is ready.\n",
        "html": "<p>Hello <b>Ann</b>,</p><p>the report is ready.</p>",
    }
    job = wait_job(c, su, enqueue(c, su, "send_email", args)["id"])
    assert job["state"] == "completed"
    assert job["result"] == {"to": "ann@example.com"}
    assert job["queue"] == "mail"
    assert job["attempt"] == 1
    [(rcpt, msg)] = smtp.inbox.messages
    assert rcpt == ["ann@example.com"]
    assert msg["To"] == "ann@example.com"
    assert msg["Subject"] == "Your report — ready"
    assert msg.get_content_type() == "multipart/alternative"
    assert _body(msg, "plain") == args["text"]
    assert _body(msg, "html").strip() == args["html"]

    # only text: the HTML part shows that text (escaped); only HTML: a text part is derived
    enqueue(c, su, "send_email", {"to": "bob@example.com", "subject": "a<b", "text": "1 < 2 & 3"})
    enqueue(
        c, su, "send_email", {"to": "cid@example.com", "subject": "h", "html": "<p>Hi <i>C</i></p>"}
    )
    for j in c.get("/api/jobs", params={"kind": "send_email"}, headers=su).json()["items"]:
        assert wait_job(c, su, j["id"])["state"] == "completed"
    got = {m["To"]: m for _, m in smtp.inbox.messages}
    assert _body(got["bob@example.com"], "plain").strip() == "1 < 2 & 3"
    assert "1 &lt; 2 &amp; 3" in _body(got["bob@example.com"], "html")
    assert "Hi C" in _body(got["cid@example.com"], "plain")
    assert "<i>C</i>" in _body(got["cid@example.com"], "html")


BAD_MAILS: list[tuple[Any, str]] = [
    ([1, 2], "args must be an object"),
    ({"subject": "s", "text": "t"}, "'to'"),
    ({"to": "nobody", "subject": "s", "text": "t"}, "'to'"),
    ({"to": "a@example.com, b@example.com", "subject": "s", "text": "t"}, "'to'"),
    ({"to": "a@example.com\r\nBcc: c@example.com", "subject": "s", "text": "t"}, "'to'"),
    ({"to": ["a@example.com"], "subject": "s", "text": "t"}, "'to'"),
    ({"to": "a@example.com", "text": "t"}, "'subject'"),
    ({"to": "a@example.com", "subject": "", "text": "t"}, "'subject'"),
    ({"to": "a@example.com", "subject": "x" * 999, "text": "t"}, "'subject'"),
    ({"to": "a@example.com", "subject": "Hi\r\nBcc: c@example.com", "text": "t"}, "'subject'"),
    ({"to": "a@example.com", "subject": "Hi\nthere", "html": "<p>t</p>"}, "'subject'"),
    ({"to": "a@example.com", "subject": "s"}, "'html' or 'text'"),
    ({"to": "a@example.com", "subject": "s", "html": 5}, "'html' or 'text'"),
    ({"to": "a@example.com", "subject": "s", "text": ["t"]}, "'html' or 'text'"),
]


def test_send_email_discards_bad_arguments_at_once(
    mail_app: tuple[TestClient, H], smtp: SMTPServer
) -> None:
    c, su = mail_app
    smtp.start()
    ids = [enqueue(c, su, "send_email", args, maxAttempts=5)["id"] for args, _ in BAD_MAILS]
    for job_id, (args, words) in zip(ids, BAD_MAILS, strict=True):
        job = wait_job(c, su, job_id)
        assert job["state"] == "discarded", (args, job)
        assert job["attempt"] == 1, (args, job)
        [err] = job["errors"]
        assert "send_email" in err["error"], (args, err)
        assert words in err["error"], (args, err)
    assert smtp.inbox.messages == []


def test_send_email_retries_while_the_smtp_server_is_down(
    mail_app: tuple[TestClient, H], smtp: SMTPServer
) -> None:
    c, su = mail_app
    args = {"to": "ann@example.com", "subject": "Retry me", "text": "eventually"}
    job = enqueue(c, su, "send_email", args, maxAttempts=30)
    failed = wait_job(c, su, job["id"], lambda j: len(j["errors"]) >= 1)
    assert failed["state"] in ("retryable", "running"), failed
    assert "cannot connect" in failed["errors"][0]["error"]
    assert str(smtp.port) in failed["errors"][0]["error"]
    smtp.start()
    done = wait_job(c, su, job["id"])
    assert done["state"] == "completed"
    assert done["attempt"] >= 2
    assert len(done["errors"]) == done["attempt"] - 1
    [(rcpt, msg)] = smtp.inbox.messages
    assert rcpt == ["ann@example.com"]
    assert msg["Subject"] == "Retry me"


# ---------------------------------------------------------------------- export_collection

N_POSTS = 700  # 600 of them published: more than one page (500) of the export's cursor
SPECIAL_TITLE = 'He said "hi", then\nleft; a,b'
SPECIAL_BODY = 'line one\r\nline "two", with, commas'


def _collections(c: TestClient, su: H, n_posts: int) -> None:
    """`authors` (auth, with a hidden `pin`) and `posts` (every kind of value, a hidden
    `secret`), with 3 authors and `n_posts` posts."""
    r = c.post(
        "/api/collections",
        json={
            "name": "authors",
            "type": "auth",
            "fields": [
                {"name": "name", "type": "text"},
                {"name": "pin", "type": "text", "hidden": True},
            ],
        },
        headers=su,
    )
    assert r.status_code == 200, r.text
    authors = r.json()
    r = c.post(
        "/api/collections",
        json={
            "name": "posts",
            "fields": [
                {"name": "title", "type": "text"},
                {"name": "body", "type": "text"},
                {"name": "tags", "type": "select", "values": ["a", "b", "c"], "maxSelect": 3},
                {"name": "meta", "type": "json"},
                {"name": "published", "type": "bool"},
                {"name": "views", "type": "number"},
                {"name": "author", "type": "relation", "collectionId": authors["id"]},
                {"name": "secret", "type": "text", "hidden": True},
            ],
        },
        headers=su,
    )
    assert r.status_code == 200, r.text
    svc = c.app.state.services  # type: ignore[attr-defined]

    async def seed() -> None:  # straight through core: 700 HTTP round trips would be slow
        ctx = RequestContext.system(svc.store.require("_superusers"), "seed")
        ca, cp = svc.store.require("authors"), svc.store.require("posts")
        ids = []
        for i in range(3):
            pw = "pass-word-1"
            body: dict[str, Any] = {"email": f"a{i}@example.com", "password": pw, "passwordConfirm": pw,
                    "name": f"A{i}", "pin": f"PIN-{i}-hidden"}  # fmt: skip
            ids.append((await svc.records.create(ca, body, ctx))["id"])
        for i in range(n_posts):
            body = {
                "title": SPECIAL_TITLE if i == 401 else f"post {i:04d}",
                "body": SPECIAL_BODY if i % 100 == 1 else f"body {i}",
                "tags": ["a", "c"] if i % 2 else [],
                "meta": {"i": i, "nested": {"ok": True}, "s": 'q"uote'},
                "published": i % 7 != 0,
                "views": i % 50,
                "author": ids[i % 3],
                "secret": f"s3cr3t-{i}",
            }
            await svc.records.create(cp, body, ctx)

    c.portal.call(seed)  # type: ignore[union-attr]


def _api_items(c: TestClient, su: H, coll: str, **params: Any) -> list[dict[str, Any]]:
    """The collection as the records API lists it (offset pages), without hidden fields."""
    out: list[dict[str, Any]] = []
    page = 1
    while True:
        r = c.get(
            f"/api/collections/{coll}/records",
            params={"perPage": 500, "page": page, **params},
            headers=su,
        )
        assert r.status_code == 200, r.text
        body = r.json()
        out += [{k: v for k, v in it.items() if k != "secret"} for it in body["items"]]
        if page >= body["totalPages"]:
            return out
        page += 1


def _export(c: TestClient, su: H, args: Any) -> dict[str, Any]:
    return wait_job(c, su, enqueue(c, su, "export_collection", args)["id"], timeout=60)


def _csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def test_export_csv_and_jsonl_of_a_filtered_sorted_collection(
    tmp_path: Path, database_url: str
) -> None:
    with open_app(tmp_path, database_url) as (c, su):
        _collections(c, su, N_POSTS)
        query = {"filter": "published = true && author != ''", "sort": "-views,title"}
        job = _export(c, su, {"collection": "posts", "format": "csv", **query})
        assert job["state"] == "completed", job
        result = job["result"]
        name = result["file"]
        assert result["url"] == f"/api/exports/{name}"
        assert name.endswith(".csv")
        assert result["rows"] == N_POSTS - N_POSTS // 7 == 600
        assert result["format"] == "csv"
        path = tmp_path / "data" / "exports" / name
        raw = path.read_bytes()
        assert result["bytes"] == len(raw)
        assert sorted(p.name for p in path.parent.iterdir()) == [name]  # no temporary file

        rows = _csv(raw.decode("utf-8"))
        header, data = rows[0], rows[1:]
        assert header == ["collectionId", "collectionName", "id", "title", "body", "tags",
                          "meta", "published", "views", "author", "created", "updated"]  # fmt: skip
        expected = _api_items(c, su, "posts", **query)
        assert len(data) == len(expected) == 600
        assert [r[header.index("id")] for r in data] == [e["id"] for e in expected]
        views = [int(r[header.index("views")]) for r in data]
        assert views == sorted(views, reverse=True)
        for row, rec in zip(data, expected, strict=True):
            cell = dict(zip(header, row, strict=True))
            assert cell["title"] == rec["title"]
            assert cell["body"] == rec["body"]
            assert cell["published"] == "true"
            assert orjson.loads(cell["tags"]) == rec["tags"]
            assert orjson.loads(cell["meta"]) == rec["meta"]
            assert cell["author"] == rec["author"]
            assert cell["views"] == str(rec["views"])
        special = [dict(zip(header, r, strict=True)) for r in data if r[3] == SPECIAL_TITLE]
        assert len(special) == 1
        assert special[0]["body"] == SPECIAL_BODY
        assert b"s3cr3t" not in raw  # the hidden field never leaves

        # the download is exactly that file, for superusers only
        r = c.get(result["url"], headers=su)
        assert r.status_code == 200
        assert r.content == raw
        assert r.headers["content-type"].startswith("text/csv")
        assert name in r.headers["content-disposition"]
        _, user = user_headers(c, su)
        assert_error(c.get(result["url"]), 401)
        assert_error(c.get(result["url"], headers=user), 403)

        # JSON Lines: every value keeps its JSON type (lists, objects, booleans, numbers)
        job = _export(c, su, {"collection": "posts", "format": "jsonl", "sort": "title"})
        assert job["state"] == "completed", job
        r = c.get(job["result"]["url"], headers=su)
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("application/x-ndjson")
        lines = r.content.decode().splitlines()
        assert len(lines) == job["result"]["rows"] == N_POSTS
        got = [orjson.loads(line) for line in lines]
        assert got == _api_items(c, su, "posts", sort="title")
        assert b"s3cr3t" not in r.content
        assert any(g["title"] == SPECIAL_TITLE for g in got)

        # `fields` picks columns; two exports of one collection never share a file
        args = {"collection": "posts", "fields": "id,views", "filter": "views >= 48", "sort": "id"}
        picked = _export(c, su, args)
        rows = _csv(c.get(picked["result"]["url"], headers=su).text)
        want = _api_items(c, su, "posts", filter="views >= 48", sort="id")
        assert rows[0] == ["id", "views"]
        assert len(want) == 28
        assert rows[1:] == [[e["id"], str(e["views"])] for e in want]
        assert picked["result"]["file"] != job["result"]["file"] != name


def test_export_of_an_auth_collection_keeps_secrets_out(tmp_path: Path, database_url: str) -> None:
    with open_app(tmp_path, database_url) as (c, su):
        _collections(c, su, 0)
        svc = c.app.state.services  # type: ignore[attr-defined]
        rows = c.portal.call(  # type: ignore[union-attr]
            svc.db.fetchall, 'SELECT "password", "tokenKey" FROM "authors"'
        )
        secrets = [str(v) for row in rows for v in row]
        assert len(secrets) == 6
        assert all(secrets)
        for fmt, fields in (("csv", ""), ("jsonl", ""), ("csv", "*,password,tokenKey,pin")):
            args = {"collection": "authors", "format": fmt, "fields": fields}
            job = _export(c, su, args)
            assert job["state"] == "completed", job
            assert job["result"]["rows"] == 3, job
            text = c.get(job["result"]["url"], headers=su).text
            for secret in [*secrets, "PIN-0-hidden", "PIN-1-hidden", "PIN-2-hidden"]:
                assert secret not in text
            for word in ("password", "tokenKey", "pin"):
                assert word not in text
            assert "a0@example.com" in text
            assert "A2" in text
        # no rows: a CSV with just the header of the visible fields
        empty = _export(c, su, {"collection": "posts", "format": "csv"})
        assert empty["state"] == "completed"
        assert empty["result"]["rows"] == 0
        [header] = _csv(c.get(empty["result"]["url"], headers=su).text)
        assert "title" in header
        assert "author" in header
        assert "secret" not in header


def test_export_refusals_are_discarded_with_the_reason(tmp_path: Path, database_url: str) -> None:
    with open_app(tmp_path, database_url) as (c, su):
        _collections(c, su, 3)
        cases = [
            ({"collection": "nope"}, "no collection 'nope'"),
            ({"format": "csv"}, "'collection' must name a collection"),
            ({"collection": 5}, "'collection' must name a collection"),
            ({"collection": "posts", "format": "xlsx"}, "format"),
            ({"collection": "posts", "filter": "nosuchfield = 1"}, "nosuchfield"),
            ({"collection": "posts", "filter": "title ~~ 'x'"}, "filter"),
            ({"collection": "posts", "sort": "-nosuchfield"}, "nosuchfield"),
            (["posts"], "args must be an object"),
        ]
        for args, words in cases:
            job = _export(c, su, args)
            assert job["state"] == "discarded", (args, job)
            assert job["attempt"] == 1, (args, job)
            err = job["errors"][0]["error"]
            assert "export_collection" in err, (args, err)
            assert words in err, (args, err)
        exports = tmp_path / "data" / "exports"
        assert not exports.exists() or list(exports.iterdir()) == []  # nothing half-written

        # downloads serve export files only
        job = _export(c, su, {"collection": "authors", "format": "csv"})
        exports = tmp_path / "data" / "exports"
        name = job["result"]["file"]
        (exports / f".{name}.part").write_text("half")
        (exports / "notes.txt").write_text("not an export")
        (tmp_path / "data" / "outside.csv").write_text("secret")
        for path in (
            "/api/exports/nope.csv",
            f"/api/exports/.{name}.part",
            "/api/exports/..%2Foutside.csv",
            "/api/exports/..%2F..%2Fdata%2Foutside.csv",
            "/api/exports/%2E%2E%2Foutside.csv",
            "/api/exports/..",
            "/api/exports/...",
            "/api/exports/" + "a" * 300 + ".csv",
            "/api/exports/x%00.csv",
            "/api/exports/notes.txt",
        ):
            r = c.get(path, headers=su)
            assert_error(r, 404)
            assert b"secret" not in r.content
            assert b"half" not in r.content
        assert c.get(f"/api/exports/{name}", headers=su).status_code == 200


def test_csv_cells_that_a_spreadsheet_would_run_are_kept_as_text(
    tmp_path: Path, database_url: str
) -> None:
    with open_app(tmp_path, database_url) as (c, su):
        r = c.post(
            "/api/collections",
            json={
                "name": "notes",
                "type": "base",
                "fields": [{"name": "body", "type": "text"}, {"name": "n", "type": "number"}],
            },
            headers=su,
        )
        assert r.status_code == 200, r.text
        bodies = ['=HYPERLINK("http://evil.example","x")', "+1+2", "-3", "@SUM(A1)", "plain"]
        for i, body in enumerate(bodies):
            assert (
                c.post(
                    "/api/collections/notes/records", json={"body": body, "n": -i}, headers=su
                ).status_code
                == 200
            )
        job = _export(c, su, {"collection": "notes", "format": "csv", "sort": "-n"})
        assert job["state"] == "completed", job
        header, *rows = _csv(c.get(job["result"]["url"], headers=su).text)
        body_col, n_col = header.index("body"), header.index("n")
        assert [row[body_col] for row in rows] == ["'" + b for b in bodies[:4]] + ["plain"]
        # numbers are not text typed by a user: a negative number stays a number
        assert [row[n_col] for row in rows] == ["0", "-1", "-2", "-3", "-4"]
        # JSON Lines carries the values untouched
        jl = _export(c, su, {"collection": "notes", "format": "jsonl", "sort": "-n"})
        lines = c.get(jl["result"]["url"], headers=su).text.splitlines()
        assert [orjson.loads(x)["body"] for x in lines] == bodies
