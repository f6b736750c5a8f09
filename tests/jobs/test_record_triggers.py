"""Record-change triggers through the records API, with a real hooks file: after_commit
handlers get the create/update/delete events (record, oldRecord, the acting auth) as jobs;
before_commit handlers run in the write's transaction — `ctx.reject` is a 400 and nothing
is saved or enqueued, `ctx.tx` writes commit with the record — in-process or isolated in a
subprocess; failed writes enqueue nothing; cascade deletes emit events; "*" handlers see
every collection — on SQLite and PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.helpers.jobs_api import (
    assert_error,
    list_jobs,
    open_app,
    user_headers,
    wait_job,
    write_hooks,
)

H = dict[str, str]

HOOKS = '''
import asyncio
import os
import secrets
import time

from shipyard.functions import Functions, Reject

functions = Functions()


@functions.on_record("posts")  # after_commit (the default), every action
async def log_post(ctx, event):
    old = event["oldRecord"] or {}
    return {"type": event["type"], "title": event["record"]["title"], "old": old.get("title")}


@functions.on_record("posts", "create", "update", when="before_commit")
async def audit(ctx, event):
    """Writes in the request's transaction; enqueues a job that commits with it."""
    title = event["record"]["title"]
    now = time.strftime("%Y-%m-%d %H:%M:%S.000Z", time.gmtime())
    await ctx.tx.execute(
        'INSERT INTO "audit" ("id", "note", "created", "updated") VALUES (?, ?, ?, ?)',
        (secrets.token_hex(7)[:15], f"{event['action']}:{title}", now, now),
    )
    if "queue-a-job" in title:
        await ctx.enqueue("side_job", {"post": event["record"]["id"]})


@functions.on_record("posts", "create", "update", when="before_commit")
async def guard(ctx, event):
    if event["record"]["title"].startswith("forbidden"):
        raise ctx.reject("Titles starting with 'forbidden' are not allowed.")


@functions.on_record("posts", "update", when="before_commit", isolated=True)
def frozen(ctx, event):  # runs in a subprocess: no database, plain data in and out
    if event["oldRecord"]["title"] == "frozen":
        raise Reject(f"Frozen posts cannot be edited (process {os.getpid()}).")


@functions.on_record("notes", "update", when="before_commit", timeout=0.3)
async def slow_note(ctx, event):
    if event["record"]["title"] == "slow":
        await asyncio.sleep(10)


@functions.on_record("notes", "update", when="before_commit", timeout=1.5, isolated=True)
def slow_isolated(ctx, event):
    if event["record"]["title"] == "slow isolated":
        time.sleep(30)


@functions.on_record("*", "delete")
async def any_delete(ctx, event):
    return {"collection": event["collection"], "id": event["record"]["id"]}


@functions.on_record("*", "create", when="before_commit")
def everywhere(ctx, event):  # a plain function: runs in a thread
    if event["record"].get("title") == "blocked everywhere":
        raise Reject("Blocked in every collection.")


@functions.on_record("users", "create")
async def welcome(ctx, event):
    return sorted(event["record"])


@functions.job("side_job")
async def side_job(ctx, args):
    return {**args, "isolated": getattr(ctx, "isolated", False)}
'''

LOG = "event:posts.log_post"
ANY_DELETE = "event:all.any_delete"
POSTS = "/api/collections/posts/records"


@pytest.fixture
def app(tmp_path: Path, database_url: str) -> Iterator[tuple[TestClient, H]]:
    hooks = write_hooks(tmp_path, HOOKS)
    # every job handler in a subprocess; before_commit handlers stay in-process (they use
    # ctx.tx and ctx.reject) unless they ask for isolation themselves
    options = {"hooks": hooks, "webhook_allow_private": "127.0.0.1", "functions_isolated": True}
    with open_app(tmp_path, database_url, **options) as (c, su):
        for body in (
            {"name": "audit", "fields": [{"name": "note", "type": "text"}]},
            {
                "name": "posts",
                "viewRule": "",
                "createRule": "",
                "updateRule": "",
                "deleteRule": "",
                "fields": [
                    {"name": "title", "type": "text", "required": True},
                    {"name": "slug", "type": "text"},
                ],
                "indexes": ['CREATE UNIQUE INDEX "posts_slug" ON "posts" ("slug")'],
            },
            {"name": "notes", "createRule": "", "fields": [{"name": "title", "type": "text"}]},
        ):
            r = c.post("/api/collections", json=body, headers=su)
            assert r.status_code == 200, r.text
        posts_id = c.get("/api/collections/posts", headers=su).json()["id"]
        r = c.post(
            "/api/collections",
            json={
                "name": "comments",
                "deleteRule": "",
                "fields": [
                    {"name": "text", "type": "text"},
                    {
                        "name": "post",
                        "type": "relation",
                        "collectionId": posts_id,
                        "required": True,
                        "cascadeDelete": True,
                    },
                ],
            },
            headers=su,
        )
        assert r.status_code == 200, r.text
        r = c.post(
            "/api/webhooks",
            json={"name": "posts-out", "collection": "posts", "url": "http://127.0.0.1:9/in"},
            headers=su,
        )
        assert r.status_code == 200, r.text
        yield c, su


def audit_notes(c: TestClient, su: H) -> list[str]:
    r = c.get("/api/collections/audit/records", params={"sort": "note"}, headers=su)
    return [it["note"] for it in r.json()["items"]]


def kinds(c: TestClient, su: H) -> list[str]:
    return sorted(j["kind"] for j in list_jobs(c, su))


def test_after_commit_handler_gets_every_event(app: tuple[TestClient, H]) -> None:
    c, su = app
    ann_id, ann = user_headers(c, su)
    su_id = c.post("/api/collections/_superusers/auth-refresh", headers=su).json()["record"]["id"]

    created = c.post(POSTS, json={"title": "hello", "slug": "h"}, headers=ann).json()
    rid = created["id"]
    r = c.patch(f"{POSTS}/{rid}", json={"title": "hello again"}, headers=su)
    assert r.status_code == 200, r.text
    assert c.delete(f"{POSTS}/{rid}").status_code == 204  # anonymous: the rule allows it

    jobs = sorted(list_jobs(c, su, kind=LOG), key=lambda j: j["id"])
    assert len(jobs) == 3
    events = [j["args"] for j in jobs]
    assert [e["type"] for e in events] == ["record.create", "record.update", "record.delete"]
    assert [e["action"] for e in events] == ["create", "update", "delete"]
    posts_id = c.get("/api/collections/posts", headers=su).json()["id"]
    for e in events:
        assert e["collection"] == "posts"
        assert e["collectionId"] == posts_id
        assert e["id"].startswith("evt_")
        assert e["timestamp"].endswith("Z")
        assert e["record"]["id"] == rid
    assert len({e["id"] for e in events}) == 3
    create, update, delete = events
    assert create["record"] == created
    assert create["oldRecord"] is None
    assert create["auth"] == {"collection": "users", "id": ann_id}
    assert update["record"]["title"] == "hello again"
    assert update["oldRecord"]["title"] == "hello"
    assert update["record"]["updated"] >= update["oldRecord"]["updated"]
    assert update["auth"] == {"collection": "_superusers", "id": su_id}
    assert delete["record"]["title"] == "hello again"
    assert delete["oldRecord"] is None
    assert delete["auth"] is None

    # the worker ran the handler with each event
    done = [wait_job(c, su, j["id"]) for j in jobs]
    assert [j["state"] for j in done] == ["completed"] * 3
    assert [j["result"] for j in done] == [
        {"type": "record.create", "title": "hello", "old": None},
        {"type": "record.update", "title": "hello again", "old": "hello"},
        {"type": "record.delete", "title": "hello again", "old": None},
    ]
    # and the webhook subscription got one delivery job per event, the same events
    hooks = sorted(list_jobs(c, su, kind="webhook"), key=lambda j: j["id"])
    assert [h["args"]["event"] for h in hooks] == events

    # an auth record's event never carries its password hash or token key
    [welcome] = list_jobs(c, su, kind="event:users.welcome")
    assert welcome["args"]["record"]["id"] == ann_id
    assert not {"password", "tokenKey", "passwordConfirm"} & set(welcome["args"]["record"])
    assert "tokenKey" not in wait_job(c, su, welcome["id"])["result"]


def test_before_commit_reject_saves_and_enqueues_nothing(app: tuple[TestClient, H]) -> None:
    c, su = app
    r = c.post(POSTS, json={"title": "forbidden words"})
    err = assert_error(r, 400)
    assert err["message"] == "Titles starting with 'forbidden' are not allowed."
    # the audit row, the job it enqueued, the event job and the webhook job: all rolled back
    r = c.post(POSTS, json={"title": "forbidden queue-a-job"})
    assert_error(r, 400, "not allowed")
    assert c.get(POSTS, headers=su).json()["totalItems"] == 0
    assert audit_notes(c, su) == []
    assert list_jobs(c, su) == []

    # accepted: the handler's own write and job commit with the record
    ok = c.post(POSTS, json={"title": "fine queue-a-job"})
    assert ok.status_code == 200, ok.text
    rid = ok.json()["id"]
    assert audit_notes(c, su) == ["create:fine queue-a-job"]
    assert kinds(c, su) == [LOG, "side_job", "webhook"]
    [side] = list_jobs(c, su, kind="side_job")
    assert wait_job(c, su, side["id"])["result"] == {"post": rid, "isolated": True}

    # a refused update leaves the record, the audit trail and the queue as they were
    before = len(list_jobs(c, su))
    assert_error(c.patch(f"{POSTS}/{rid}", json={"title": "forbidden now"}), 400, "forbidden")
    assert c.get(f"{POSTS}/{rid}").json()["title"] == "fine queue-a-job"
    assert audit_notes(c, su) == ["create:fine queue-a-job"]
    assert len(list_jobs(c, su)) == before
    assert c.patch(f"{POSTS}/{rid}", json={"title": "renamed"}).status_code == 200
    assert audit_notes(c, su) == ["create:fine queue-a-job", "update:renamed"]


def test_failed_writes_enqueue_nothing(app: tuple[TestClient, H]) -> None:
    c, su = app
    first = c.post(POSTS, json={"title": "one", "slug": "same"})
    assert first.status_code == 200, first.text
    jobs_before, audit_before = kinds(c, su), audit_notes(c, su)
    assert jobs_before == [LOG, "webhook"]
    assert audit_before == ["create:one"]

    invalid = c.post(POSTS, json={"slug": "other"})  # the title is required
    assert_error(invalid, 400)
    assert invalid.json()["data"]["title"]["code"] == "validation_required"
    duplicate = c.post(POSTS, json={"title": "two", "slug": "same"})
    assert_error(duplicate, 400)
    assert duplicate.json()["data"]["slug"]["code"] == "validation_not_unique"
    assert_error(c.patch(f"{POSTS}/nosuchrecord123", json={"title": "x"}), 404)
    assert_error(c.delete(f"{POSTS}/nosuchrecord123"), 404)
    rid = first.json()["id"]
    assert_error(c.patch(f"{POSTS}/{rid}", json={"title": ""}), 400)

    assert kinds(c, su) == jobs_before
    assert audit_notes(c, su) == audit_before
    assert c.get(POSTS, headers=su).json()["totalItems"] == 1


def test_cascade_delete_emits_an_event_per_deleted_record(app: tuple[TestClient, H]) -> None:
    c, su = app
    post = c.post(POSTS, json={"title": "parent", "slug": "p"}).json()["id"]
    other = c.post(POSTS, json={"title": "other", "slug": "o"}).json()["id"]
    comments = []
    for text, parent in (("c1", post), ("c2", post), ("c3", other)):
        r = c.post(
            "/api/collections/comments/records", json={"text": text, "post": parent}, headers=su
        )
        assert r.status_code == 200, r.text
        comments.append(r.json()["id"])
    assert list_jobs(c, su, kind=ANY_DELETE) == []

    assert c.delete(f"{POSTS}/{post}").status_code == 204
    deletes = list_jobs(c, su, kind=ANY_DELETE)
    got = sorted((j["args"]["collection"], j["args"]["record"]["id"]) for j in deletes)
    assert got == sorted([("posts", post), ("comments", comments[0]), ("comments", comments[1])])
    for j in deletes:
        assert j["args"]["type"] == "record.delete"
        assert j["args"]["auth"] is None
        if j["args"]["collection"] == "comments":
            assert j["args"]["record"]["post"] == post
    assert [j["args"]["type"] for j in list_jobs(c, su, kind=LOG)].count("record.delete") == 1
    results = sorted(
        (r["collection"], r["id"]) for r in (wait_job(c, su, j["id"])["result"] for j in deletes)
    )
    assert results == got
    # the comment of the other post is still there
    left = c.get("/api/collections/comments/records", headers=su).json()["items"]
    assert [it["id"] for it in left] == [comments[2]]


def test_isolated_before_commit_handler(app: tuple[TestClient, H]) -> None:
    c, su = app
    rid = c.post(POSTS, json={"title": "draft"}).json()["id"]
    # the isolated handler runs (in a subprocess) and lets this one through
    assert c.patch(f"{POSTS}/{rid}", json={"title": "frozen"}).status_code == 200
    r = c.patch(f"{POSTS}/{rid}", json={"title": "thawed"})
    err = assert_error(r, 400, "Frozen posts cannot be edited (process ")
    pid = int(err["message"].rsplit(" ", 1)[1].rstrip(")."))
    assert pid != os.getpid()  # it ran in another process
    assert c.get(f"{POSTS}/{rid}").json()["title"] == "frozen"
    updates = [j for j in list_jobs(c, su, kind=LOG) if j["args"]["type"] == "record.update"]
    assert len(updates) == 1  # the refused update left no event


def test_star_handlers_see_every_collection(app: tuple[TestClient, H]) -> None:
    c, su = app
    for url in (POSTS, "/api/collections/notes/records"):
        err = assert_error(c.post(url, json={"title": "blocked everywhere"}), 400)
        assert err["message"] == "Blocked in every collection."
        assert c.post(url, json={"title": "allowed"}).status_code == 200
    assert c.get(POSTS, headers=su).json()["totalItems"] == 1
    assert c.get("/api/collections/notes/records", headers=su).json()["totalItems"] == 1
    note = c.get("/api/collections/notes/records", headers=su).json()["items"][0]["id"]
    r = c.delete(f"/api/collections/notes/records/{note}", headers=su)
    assert r.status_code == 204
    [deleted] = list_jobs(c, su, kind=ANY_DELETE)
    assert deleted["args"]["collection"] == "notes"
    assert deleted["args"]["record"]["id"] == note
    assert deleted["args"]["auth"]["collection"] == "_superusers"


def test_a_before_commit_handler_that_overruns_saves_nothing(app: tuple[TestClient, H]) -> None:
    c, su = app
    note = c.post("/api/collections/notes/records", json={"title": "calm"}).json()["id"]
    url = f"/api/collections/notes/records/{note}"
    for title, handler, timeout in (
        ("slow", "notes.slow_note", "0.3"),
        ("slow isolated", "notes.slow_isolated", "1.5"),  # the subprocess is killed
    ):
        err = assert_error(c.patch(url, json={"title": title}, headers=su), 503)
        assert err["message"] == (
            f"The {handler} hook did not finish in {timeout} s; nothing was saved."
        )
        assert c.get(url, headers=su).json()["title"] == "calm"
    assert list_jobs(c, su) == []
