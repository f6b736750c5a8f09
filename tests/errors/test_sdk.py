"""The unmodified Python `sentry-sdk` (default transport, gzip and br) reports real
exceptions to a real `shipyard serve`: grouped into issues, resolved, regressing."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.helpers.errors import SERVER_SETTINGS, Api, run_sdk
from tests.helpers.servers import Server, start_server, stop_server

pytestmark = pytest.mark.timeout(600)


@pytest.mark.parametrize("compression", ["gzip", "br"])
def test_sdk_events_group_resolve_and_regress(api: Api, compression: str) -> None:
    p = api.project(f"sdk-{compression}")
    dsn = p["dsn"]
    # three failures of the same code path (different orders, different line text) and
    # two of another: two issues
    sent = run_sdk(
        dsn, "--mode", "boom", "--count", "3", "--compression", compression, "--users", "2"
    )
    sent += run_sdk(dsn, "--mode", "other", "--count", "2", "--compression", compression)
    assert len(sent) == 5
    issues = api.wait_count(p["id"], 5)
    by_type = {i["type"]: i for i in issues}
    assert set(by_type) == {"PaymentDeclined", "ValueError"}, issues
    boom = by_type["PaymentDeclined"]
    assert boom["count"] == 3
    assert boom["users"] == 2
    assert boom["status"] == "unresolved"
    assert boom["title"].startswith("PaymentDeclined: card declined for order 10")
    assert "charge" in boom["culprit"]
    assert by_type["ValueError"]["count"] == 2
    events = api.get(f"/api/errors/{boom['id']}/events")
    assert events["totalItems"] == 3
    assert {e["id"] for e in events["items"]} <= {s.replace("-", "") for s in sent}
    one = api.get(f"/api/errors/{boom['id']}/events/{events['items'][0]['id']}")
    frames = one["data"]["exception"]["values"][-1]["stacktrace"]["frames"]
    assert [f["function"] for f in frames if f.get("in_app")][-2:] == ["checkout", "charge"]

    # resolved, then it happens again: a regression, reopened
    resolved = api.set_status(boom["id"], "resolved")
    assert resolved["status"] == "resolved"
    assert resolved["resolvedAt"]
    run_sdk(dsn, "--mode", "boom", "--count", "1", "--compression", compression)
    issues = api.wait_count(p["id"], 6)
    again = next(i for i in issues if i["id"] == boom["id"])
    assert again["status"] == "unresolved"
    assert again["regressedAt"]
    assert again["count"] == 4
    assert len(issues) == 2

    # ignored stays ignored while counting
    api.set_status(by_type["ValueError"]["id"], "ignored")
    run_sdk(dsn, "--mode", "other", "--count", "1", "--compression", compression)
    issues = api.wait_count(p["id"], 7)
    other = next(i for i in issues if i["type"] == "ValueError")
    assert other["status"] == "ignored"
    assert other["count"] == 3
    assert [i["id"] for i in api.issues(p["id"], status="ignored")] == [other["id"]]


def test_sdk_messages_and_fingerprints(api: Api) -> None:
    p = api.project("sdk-grouping")
    # messages differing only in numbers are one issue
    run_sdk(p["dsn"], "--mode", "message", "--count", "3")
    # `{{ default }}` plus a tenant: the default grouping, split off from plain events
    run_sdk(p["dsn"], "--mode", "fingerprint", "--count", "2")
    run_sdk(p["dsn"], "--mode", "boom", "--count", "1")
    issues = api.wait_count(p["id"], 6)
    counts = sorted((i["type"], i["level"], i["count"]) for i in issues)
    assert counts == [
        ("", "warning", 3),
        ("PaymentDeclined", "error", 1),
        ("PaymentDeclined", "error", 2),
    ]
    warnings = api.issues(p["id"], level="warning")
    # the title is the latest event's
    assert len(warnings) == 1
    assert re.fullmatch(r"queue 7\d is \d% full", warnings[0]["title"])
    found = api.get("/api/errors", q="QUEUE", project=p["id"])["items"]
    assert [i["id"] for i in found] == [warnings[0]["id"]]


def test_two_processes_ingest_concurrently_counted_exactly(
    srv: Server, api: Api, errors_db: str, errors_dir: object
) -> None:
    """Two Shipyard processes on one database, each fed by its own SDK process at the same
    time: one issue, every event counted, every user counted once."""
    p = api.project("concurrent")
    second = start_server(errors_dir, errors_db, SERVER_SETTINGS)  # type: ignore[arg-type]
    api.headers = {"Authorization": srv.superuser_token()}  # its start saved the superuser anew
    try:
        dsn2 = p["dsn"].replace(srv.url.split("//")[1], second.url.split("//")[1])
        n = 60
        procs = []
        for dsn, algo in ((p["dsn"], "gzip"), (dsn2, "br")):
            cmd = [sys.executable, "-m", "tests.helpers.sentry_app", dsn, "--mode", "boom",
                   "--count", str(n), "--users", "7", "--compression", algo]  # fmt: skip
            procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        for proc in procs:
            _out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err[-3000:]
        issues = api.wait_count(p["id"], 2 * n)
        assert len(issues) == 1, issues
        assert issues[0]["count"] == 2 * n
        assert issues[0]["users"] == 7
        events = api.get(f"/api/errors/{issues[0]['id']}/events", perPage=1)
        assert events["totalItems"] == 2 * n
    finally:
        stop_server(second)
