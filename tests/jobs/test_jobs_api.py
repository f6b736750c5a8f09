"""`/api/jobs…` over HTTP: listing with filters and pages, one job's shape (errors, result,
timings), enqueue validation, delays, unique keys, retry and cancel, statistics, the
superuser guard, and who runs the jobs (the in-process worker, or a `shipyard worker`
process) — on SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.helpers.jobs_api import (
    H,
    assert_error,
    enqueue,
    epoch,
    list_jobs,
    open_app,
    user_headers,
    wait_job,
    write_hooks,
)

HOOKS = """
import asyncio
import os
from pathlib import Path

from shipyard.functions import Discard, Functions

functions = Functions()


@functions.job("echo")
async def echo(ctx, args):
    return {"echo": args, "attempt": ctx.job.attempt}


@functions.job("flaky")
async def flaky(ctx, args):
    if ctx.job.attempt == 1:
        raise RuntimeError("the first attempt fails")
    return {"attempt": ctx.job.attempt}


@functions.job("gate", max_attempts=2)
def gate(ctx, args):  # a plain function: runs in a thread
    if not Path(args["flag"]).exists():
        raise RuntimeError("the gate is closed")
    return "passed"


@functions.job("refuse")
async def refuse(ctx, args):
    raise Discard("these arguments can never work")


@functions.job("sleepy", timeout=60)
async def sleepy(ctx, args):
    await asyncio.sleep(60)


@functions.job("odd_result")
async def odd_result(ctx, args):
    return {"ids": {1, 2}}  # a set: not JSON


@functions.job("iso_info", isolated=True)
def iso_info(ctx, args):  # runs in a subprocess: JSON in, JSON out, no database
    return {"job": ctx.job, "isolated": ctx.isolated, "pid": os.getpid(), "args": args}


@functions.job("iso_refuse", isolated=True, max_attempts=3)
def iso_refuse(ctx, args):
    raise Discard("isolated arguments can never work")
"""


@pytest.fixture
def idle(tmp_path: Path, database_url: str) -> Iterator[tuple[TestClient, H]]:
    """No worker in this process: jobs stay where the API puts them."""
    hooks = write_hooks(tmp_path, HOOKS)
    with open_app(tmp_path, database_url, hooks=hooks, jobs_worker=False) as app:
        yield app


@pytest.fixture
def working(tmp_path: Path, database_url: str) -> Iterator[tuple[TestClient, H]]:
    """The app's own in-process worker (the default) runs the jobs."""
    hooks = write_hooks(tmp_path, HOOKS)
    with open_app(tmp_path, database_url, hooks=hooks) as app:
        yield app


# ---------------------------------------------------------------------- the guard

ROUTES = [
    ("GET", "/api/jobs", None),
    ("GET", "/api/jobs/stats", None),
    ("GET", "/api/jobs/{id}", None),
    ("POST", "/api/jobs", {"kind": "echo", "args": {"x": 1}}),
    ("POST", "/api/jobs/{id}/retry", None),
    ("POST", "/api/jobs/{id}/cancel", None),
    ("GET", "/api/exports/x.csv", None),
]


def test_every_route_is_for_superusers_only(idle: tuple[TestClient, H]) -> None:
    c, su = idle
    job = enqueue(c, su, "echo", {"x": 0})
    _, user = user_headers(c, su)
    for method, path, body in ROUTES:
        url = path.format(id=job["id"])
        assert_error(c.request(method, url, json=body), 401, "authorization token")
        bad = {"Authorization": "not-a-token"}
        assert_error(c.request(method, url, json=body, headers=bad), 401)
        assert_error(c.request(method, url, json=body, headers=user), 403, "not allowed")
    # the refused calls changed nothing: one job, still waiting
    [only] = list_jobs(c, su)
    assert only["id"] == job["id"]
    assert only["state"] == "available"


# ---------------------------------------------------------------------- enqueue


def test_enqueue_returns_the_stored_job(idle: tuple[TestClient, H]) -> None:
    c, su = idle
    before = time.time()
    job = enqueue(c, su, "echo", {"n": [1, 2], "s": "é"}, priority=-5, maxAttempts=3, timeout=7.5)
    assert job["duplicate"] is False
    assert job["kind"] == "echo"
    assert job["queue"] == "default"
    assert job["state"] == "available"
    assert job["args"] == {"n": [1, 2], "s": "é"}
    assert (job["priority"], job["maxAttempts"], job["timeout"]) == (-5, 3, 7.5)
    assert job["attempt"] == 0
    assert job["errors"] == []
    assert job["result"] is None
    assert job["attemptedAt"] == job["finishedAt"] == job["leaseUntil"] == job["worker"] == ""
    assert job["waitMs"] is None
    assert job["runMs"] is None
    assert abs(epoch(job["created"]) - before) < 5  # a UTC date of now
    # what GET returns is the same job, without the enqueue-only `duplicate` flag
    got = c.get(f"/api/jobs/{job['id']}", headers=su).json()
    assert got == {k: v for k, v in job.items() if k != "duplicate"}
    # defaults of the job type and the settings when the request names none
    default = enqueue(c, su, "gate", {"flag": "/nonexistent"})
    assert (default["maxAttempts"], default["timeout"], default["priority"]) == (2, 60.0, 0)
    mail = enqueue(c, su, "send_email", {"to": "a@example.com", "subject": "s", "text": "t"})
    assert mail["queue"] == "mail"  # the built-in's own queue
    moved = enqueue(c, su, "echo", None, queue="elsewhere")
    assert moved["queue"] == "elsewhere"
    assert moved["args"] is None


BAD_ENQUEUES: list[tuple[dict[str, Any], list[str]]] = [
    ({"kind": "nope"}, ["Unknown job kind", "nope"]),
    ({"args": {}}, ["Invalid job"]),
    ({"kind": ""}, ["Invalid job"]),
    ({"kind": 5}, ["Invalid job"]),
    ({"kind": "echo", "priority": "1"}, ["priority"]),
    ({"kind": "echo", "priority": 1.5}, ["priority"]),
    ({"kind": "echo", "priority": True}, ["priority"]),
    ({"kind": "echo", "priority": 10**30}, ["priority"]),
    ({"kind": "echo", "maxAttempts": "3"}, ["maxAttempts"]),
    ({"kind": "echo", "maxAttempts": 0}, ["maxAttempts"]),
    ({"kind": "echo", "maxAttempts": 101}, ["maxAttempts"]),
    ({"kind": "echo", "maxAttempts": 2.5}, ["maxAttempts"]),
    ({"kind": "echo", "timeout": "10"}, ["timeout"]),
    ({"kind": "echo", "timeout": 0}, ["timeout"]),
    ({"kind": "echo", "timeout": -1}, ["timeout"]),
    ({"kind": "echo", "timeout": False}, ["timeout"]),
    ({"kind": "echo", "timeout": 86401}, ["timeout"]),
    ({"kind": "echo", "delay": "60"}, ["delay"]),
    ({"kind": "echo", "delay": -1}, ["delay"]),
    ({"kind": "echo", "delay": 1e300}, ["delay"]),
    ({"kind": "echo", "delay": [1]}, ["delay"]),
    ({"kind": "echo", "runAt": "2030-01-01"}, ["runAt"]),
    ({"kind": "echo", "runAt": -1}, ["runAt"]),
    ({"kind": "echo", "runAt": 1e300}, ["runAt"]),
    ({"kind": "echo", "uniqueKey": 5}, ["uniqueKey"]),
    ({"kind": "echo", "uniqueKey": {"k": 1}}, ["uniqueKey"]),
    ({"kind": "echo", "uniqueKey": ""}, ["unique"]),
    ({"kind": "echo", "uniqueKey": "k" * 501}, ["unique"]),
    ({"kind": "echo", "queue": 5}, ["queue"]),
    ({"kind": "echo", "queue": ["a"]}, ["queue"]),
    ({"kind": "echo", "queue": "q" * 101}, ["queue"]),
    ({"kind": "echo", "queue": ""}, ["queue"]),
    ({"kind": "echo", "args": {}, "extra": 1}, ["Unknown field", "extra"]),
    ({"kind": "echo", "max_attempts": 3}, ["Unknown field", "max_attempts"]),
]


def test_enqueue_refuses_bad_requests(idle: tuple[TestClient, H]) -> None:
    c, su = idle
    for body, words in BAD_ENQUEUES:
        err = assert_error(c.post("/api/jobs", json=body, headers=su), 400, *words)
        if words[0] in ("Unknown job kind", "Invalid job"):
            assert set(err["data"]) == {"kind"}, (body, err)
            assert err["data"]["kind"]["code"], (body, err)
    for raw in ('["echo"]', '"echo"', "5", "null", "{", '{"kind": "echo",}'):
        r = c.post("/api/jobs", content=raw, headers={**su, "Content-Type": "application/json"})
        assert_error(r, 400, "request body")
    assert list_jobs(c, su) == []  # nothing was enqueued


def test_delay_and_run_at_schedule_the_job(working: tuple[TestClient, H]) -> None:
    c, su = working
    hour = enqueue(c, su, "echo", {"later": True}, delay=3600)
    assert hour["state"] == "scheduled"
    assert 3599.9 <= epoch(hour["scheduledAt"]) - epoch(hour["created"]) <= 3600.1
    at = enqueue(c, su, "echo", None, runAt=time.time() + 7200)
    assert at["state"] == "scheduled"
    # a short delay: scheduled when enqueued, run by the worker once due, not before
    soon = enqueue(c, su, "echo", {"soon": True}, delay=0.5)
    assert soon["state"] == "scheduled"
    done = wait_job(c, su, soon["id"])
    assert done["state"] == "completed"
    assert done["result"]["echo"] == {"soon": True}
    assert done["attemptedAt"] >= done["scheduledAt"] > done["created"]
    past = enqueue(c, su, "echo", None, runAt=time.time() - 60)
    # due at once, not scheduled: the running worker may already have claimed it
    assert past["state"] in ("available", "running", "completed")
    assert wait_job(c, su, past["id"])["state"] == "completed"
    # the far-away ones are still waiting
    for job in (hour, at):
        got = c.get(f"/api/jobs/{job['id']}", headers=su).json()
        assert got["state"] == "scheduled"
        assert got["attempt"] == 0


def test_unique_key_returns_the_pending_job(idle: tuple[TestClient, H]) -> None:
    c, su = idle
    first = enqueue(c, su, "echo", {"v": 1}, uniqueKey="report:2024-05")
    again = enqueue(c, su, "echo", {"v": 2}, uniqueKey="report:2024-05", priority=9)
    assert first["duplicate"] is False
    assert again["duplicate"] is True
    assert again["id"] == first["id"]
    assert again["args"] == {"v": 1}
    assert again["priority"] == 0
    other = enqueue(c, su, "echo", {"v": 3}, uniqueKey="report:2024-06")
    assert other["duplicate"] is False
    assert other["id"] != first["id"]
    assert len(list_jobs(c, su)) == 2
    # once the job is final its key is free again
    assert c.post(f"/api/jobs/{first['id']}/cancel", headers=su).json()["state"] == "cancelled"
    third = enqueue(c, su, "echo", {"v": 4}, uniqueKey="report:2024-05")
    assert third["duplicate"] is False
    assert third["id"] not in (first["id"], other["id"])
    assert third["uniqueKey"] == "report:2024-05"


# ---------------------------------------------------------------------- listing


def test_list_filters_and_pages(idle: tuple[TestClient, H]) -> None:
    c, su = idle
    mail = {"to": "a@example.com", "subject": "s", "text": "t"}
    ids = [enqueue(c, su, "echo", {"i": i})["id"] for i in range(3)]
    ids += [enqueue(c, su, "echo", {"i": i}, queue="bulk")["id"] for i in range(3, 5)]
    ids += [enqueue(c, su, "send_email", mail)["id"] for _ in range(2)]
    ids.append(enqueue(c, su, "echo", None, delay=600)["id"])
    assert c.post(f"/api/jobs/{ids[1]}/cancel", headers=su).status_code == 200

    every = list_jobs(c, su)
    assert [j["id"] for j in every] == sorted(ids, reverse=True)  # newest first

    def ids_of(**params: Any) -> set[int]:
        return {j["id"] for j in list_jobs(c, su, **params)}

    assert ids_of(kind="echo") == {*ids[:5], ids[7]}
    assert ids_of(kind="send_email") == set(ids[5:7])
    assert ids_of(queue="bulk") == set(ids[3:5])
    assert ids_of(queue="mail", kind="send_email") == set(ids[5:7])
    assert ids_of(queue="mail", kind="echo") == set()
    assert ids_of(state="cancelled") == {ids[1]}
    assert ids_of(state="scheduled") == {ids[7]}
    assert ids_of(state="available", kind="echo") == {ids[0], ids[2], ids[3], ids[4]}
    assert ids_of(state="completed") == set()
    assert ids_of(kind="no-such-kind") == set()

    seen: list[int] = []
    for page in (1, 2, 3):
        r = c.get("/api/jobs", params={"perPage": 3, "page": page}, headers=su)
        body = r.json()
        assert (body["page"], body["perPage"], body["totalItems"], body["totalPages"]) == (
            page, 3, 8, 3,
        )  # fmt: skip
        seen += [j["id"] for j in body["items"]]
    assert seen == sorted(ids, reverse=True)
    beyond = c.get("/api/jobs", params={"perPage": 3, "page": 4}, headers=su).json()
    assert beyond["items"] == []
    assert beyond["totalItems"] == 8
    filtered = c.get("/api/jobs", params={"kind": "echo", "perPage": 4}, headers=su).json()
    assert (filtered["totalItems"], filtered["totalPages"], len(filtered["items"])) == (6, 2, 4)
    default = c.get("/api/jobs", headers=su).json()
    assert default["perPage"] == 30
    assert default["page"] == 1


def test_list_refuses_bad_parameters(idle: tuple[TestClient, H]) -> None:
    c, su = idle
    for params, word in [
        ({"state": "done"}, "state"),
        ({"state": "RUNNING"}, "state"),
        ({"page": 0}, "page"),
        ({"page": "x"}, "page"),
        ({"perPage": 0}, "perPage"),
        ({"perPage": 501}, "perPage"),
        ({"perPage": "1e3"}, "perPage"),
    ]:
        assert_error(c.get("/api/jobs", params=params, headers=su), 400, word)


# ---------------------------------------------------------------------- one job

JOB_KEYS = {
    "id", "kind", "queue", "state", "args", "priority", "attempt", "maxAttempts", "timeout",
    "created", "scheduledAt", "attemptedAt", "finishedAt", "leaseUntil", "worker", "errors",
    "result", "uniqueKey", "cancelRequested", "waitMs", "runMs",
}  # fmt: skip


def test_job_shows_attempts_errors_result_and_timings(
    working: tuple[TestClient, H], tmp_path: Path
) -> None:
    c, su = working
    flaky = wait_job(c, su, enqueue(c, su, "flaky", {"n": 1})["id"])
    assert set(flaky) == JOB_KEYS
    assert flaky["state"] == "completed"
    assert flaky["attempt"] == 2
    assert flaky["result"] == {"attempt": 2}
    [err] = flaky["errors"]
    assert err["attempt"] == 1
    assert "RuntimeError: the first attempt fails" in err["error"]
    assert err["at"]
    assert err["at"] <= flaky["finishedAt"]
    assert flaky["created"] <= flaky["attemptedAt"] <= flaky["finishedAt"]
    assert flaky["leaseUntil"] == ""
    assert flaky["worker"]
    assert flaky["waitMs"] >= 0
    assert flaky["runMs"] >= 0

    # Discard: dead-lettered at once, not retried
    refused = wait_job(c, su, enqueue(c, su, "refuse", {"n": 2})["id"])
    assert refused["state"] == "discarded"
    assert refused["attempt"] == 1
    assert "these arguments can never work" in refused["errors"][0]["error"]
    assert refused["result"] is None
    assert refused["finishedAt"]

    # every attempt fails: discarded after maxAttempts (2 for `gate`), one error each
    flag = tmp_path / "gate-open"
    gate = wait_job(c, su, enqueue(c, su, "gate", {"flag": str(flag)})["id"])
    assert gate["state"] == "discarded"
    assert gate["attempt"] == gate["maxAttempts"] == 2
    assert [e["attempt"] for e in gate["errors"]] == [1, 2]
    assert all("the gate is closed" in e["error"] for e in gate["errors"])

    # retry a dead letter once the cause is fixed: one more attempt, which succeeds
    flag.write_text("open")
    r = c.post(f"/api/jobs/{gate['id']}/retry", headers=su)
    assert r.status_code == 200
    assert r.json()["state"] in ("available", "running", "completed")
    again = wait_job(c, su, gate["id"])
    assert again["state"] == "completed"
    assert again["result"] == "passed"
    assert again["attempt"] == 3
    assert again["maxAttempts"] == 3
    assert len(again["errors"]) == 2

    stats = c.get("/api/jobs/stats", headers=su).json()
    assert stats["kinds"] == {
        "flaky": {"completed": 1},
        "refuse": {"discarded": 1},
        "gate": {"completed": 1},
    }
    assert stats["states"] == {"completed": 2, "discarded": 1}
    assert stats["recentCompleted"] == 2
    assert stats["lagSeconds"] is None
    for timing in (stats["waitMs"], stats["runMs"]):
        assert 0 <= timing["p50"] <= timing["p99"]


def test_a_result_that_is_not_json_is_a_dead_letter(idle: tuple[TestClient, H]) -> None:
    c, su = idle
    odd = enqueue(c, su, "odd_result")
    echoes = [enqueue(c, su, "echo", {"i": i}) for i in range(3)]
    svc = c.app.state.services  # type: ignore[attr-defined]
    c.portal.call(svc.jobs.start_worker)  # type: ignore[union-attr]  # all four in one claim
    dead = wait_job(c, su, odd["id"])
    assert dead["state"] == "discarded"
    assert dead["attempt"] == 1
    assert dead["result"] is None
    assert "result is not JSON-serializable" in dead["errors"][0]["error"]
    # the jobs that finished alongside it are completed once, not held back with it
    for e in echoes:
        done = wait_job(c, su, e["id"])
        assert done["state"] == "completed"
        assert done["attempt"] == 1
        assert done["errors"] == []


def test_isolated_jobs_run_in_a_subprocess(working: tuple[TestClient, H]) -> None:
    c, su = working
    info = wait_job(c, su, enqueue(c, su, "iso_info", {"n": [1, "two"]})["id"])
    assert info["state"] == "completed", info
    result = info["result"]
    assert result["pid"] != os.getpid()
    assert result["isolated"] is True
    assert result["args"] == {"n": [1, "two"]}
    assert result["job"] == {
        "id": info["id"], "kind": "iso_info", "queue": "default", "attempt": 1, "maxAttempts": 10,
    }  # fmt: skip
    # Discard raised in the subprocess dead-letters at once, as in-process
    refused = wait_job(c, su, enqueue(c, su, "iso_refuse")["id"])
    assert refused["state"] == "discarded", refused
    assert refused["attempt"] == 1, refused
    assert "isolated arguments can never work" in refused["errors"][0]["error"]


def test_unknown_job_ids_are_404(idle: tuple[TestClient, H]) -> None:
    c, su = idle
    enqueue(c, su, "echo")
    for raw in ("424242", "0", "-1", "abc", "1.5", "99999999999999999999", "9223372036854775808"):
        for method, path in (
            ("GET", f"/api/jobs/{raw}"),
            ("POST", f"/api/jobs/{raw}/retry"),
            ("POST", f"/api/jobs/{raw}/cancel"),
        ):
            assert_error(c.request(method, path, headers=su), 404)


def test_cancel_and_retry_a_waiting_job(idle: tuple[TestClient, H]) -> None:
    c, su = idle
    job = enqueue(c, su, "echo", {"x": 1}, delay=600)
    r = c.post(f"/api/jobs/{job['id']}/cancel", headers=su)
    assert r.status_code == 200
    cancelled = r.json()
    assert cancelled["state"] == "cancelled"
    assert cancelled["finishedAt"]
    assert cancelled["attempt"] == 0
    # cancelling again changes nothing
    twice = c.post(f"/api/jobs/{job['id']}/cancel", headers=su).json()
    assert twice == cancelled
    retried = c.post(f"/api/jobs/{job['id']}/retry", headers=su).json()
    assert retried["state"] == "available"
    assert retried["finishedAt"] == ""
    assert retried["scheduledAt"] < job["scheduledAt"]  # due now, not in ten minutes
    assert list_jobs(c, su, state="available")[0]["id"] == job["id"]


def test_cancel_a_running_job(working: tuple[TestClient, H]) -> None:
    c, su = working
    job = enqueue(c, su, "sleepy")
    wait_job(c, su, job["id"], lambda j: j["state"] == "running")
    asked = c.post(f"/api/jobs/{job['id']}/cancel", headers=su).json()
    assert asked["state"] in ("running", "cancelled")
    assert asked["cancelRequested"] or asked["state"] == "cancelled"
    # the worker sees the request at its next lease renewal and stops the handler
    done = wait_job(c, su, job["id"], timeout=10)
    assert done["state"] == "cancelled"
    assert done["attempt"] == 1
    assert "cancelled" in done["errors"][-1]["error"]
    # retrying a running job leaves it alone; this one is final, so it runs again
    again = c.post(f"/api/jobs/{job['id']}/retry", headers=su).json()
    assert again["cancelRequested"] is False
    assert again["state"] in ("available", "running")
    assert c.post(f"/api/jobs/{job['id']}/cancel", headers=su).status_code == 200
    assert wait_job(c, su, job["id"], timeout=10)["state"] == "cancelled"


def test_stats_count_what_the_list_shows(idle: tuple[TestClient, H]) -> None:
    c, su = idle
    empty = c.get("/api/jobs/stats", headers=su).json()
    assert empty == {
        "kinds": {},
        "states": {},
        "lagSeconds": None,
        "recentCompleted": 0,
        "waitMs": {"p50": None, "p99": None},
        "runMs": {"p50": None, "p99": None},
    }
    mail = {"to": "a@example.com", "subject": "s", "text": "t"}
    echo = [enqueue(c, su, "echo", {"i": i})["id"] for i in range(3)]
    enqueue(c, su, "send_email", mail)
    enqueue(c, su, "send_email", mail, delay=300)
    c.post(f"/api/jobs/{echo[0]}/cancel", headers=su)
    time.sleep(0.05)  # so the lag of the oldest due job is measurably above zero
    stats = c.get("/api/jobs/stats", headers=su).json()
    assert stats["kinds"] == {
        "echo": {"available": 2, "cancelled": 1},
        "send_email": {"available": 1, "scheduled": 1},
    }
    assert stats["states"] == {"available": 3, "cancelled": 1, "scheduled": 1}
    # the same numbers as the filtered lists
    for state, n in stats["states"].items():
        assert c.get("/api/jobs", params={"state": state}, headers=su).json()["totalItems"] == n
    assert stats["lagSeconds"] > 0
    assert stats["recentCompleted"] == 0


# ---------------------------------------------------------------------- who runs jobs


def test_without_the_in_process_worker_jobs_wait_for_a_worker_process(
    tmp_path: Path, database_url: str
) -> None:
    hooks = write_hooks(tmp_path, HOOKS)
    with open_app(tmp_path, database_url, hooks=hooks, jobs_worker=False) as (c, su):
        ids = [enqueue(c, su, "echo", {"i": i})["id"] for i in range(3)]
        time.sleep(0.5)  # several poll intervals: a worker would have claimed them by now
        assert {j["state"] for j in list_jobs(c, su)} == {"available"}
        env = {
            **os.environ,
            "SHIPYARD_DATA_DIR": str(tmp_path / "data"),
            "SHIPYARD_DATABASE_URL": database_url,
            "SHIPYARD_HOOKS": hooks,
            "SHIPYARD_JOBS_POLL_INTERVAL": "0.1",
            "SHIPYARD_LOG_LEVEL": "warning",
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "shipyard.cli", "worker", "--concurrency", "2"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            done = [wait_job(c, su, i, timeout=30) for i in ids]
            later = enqueue(c, su, "echo", {"i": "later"})
            done.append(wait_job(c, su, later["id"], timeout=30))
        finally:
            proc.terminate()
            try:
                out, _ = proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()  # the assertion on its exit status below then fails
                out, _ = proc.communicate()
        assert proc.returncode == 0, out.decode(errors="replace")
        assert "concurrency 2" in out.decode(errors="replace")
        assert {j["state"] for j in done} == {"completed"}
        assert {j["worker"].split(":")[1] for j in done} == {str(proc.pid)}
        assert [j["result"]["echo"] for j in done] == [{"i": 0}, {"i": 1}, {"i": 2}, {"i": "later"}]
