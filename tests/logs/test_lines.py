"""The JSON lines themselves: the formatter of Shipyard's own events (same shape as the
request lines, exceptions and `extra` fields, sensitive names redacted), query-string
redaction, the batched writer (one write per batch, bounded), and the settings."""

from __future__ import annotations

import asyncio
import json
import logging
import os

import pytest

from shipyard.kernel.telemetry import RequestInfo
from shipyard.logs.lines import JsonFormatter, redact_query
from shipyard.logs.requests import Options, render_request
from shipyard.logs.writer import LogWriter
from shipyard.settings import SettingsError, load_settings


def test_sensitive_query_values_are_redacted() -> None:
    assert redact_query("") == ""
    assert redact_query("page=2&sort=-created") == "page=2&sort=-created"
    assert redact_query("token=abc&page=2") == "token=[redacted]&page=2"
    assert redact_query("Password=x&client_secret=y&api%5Fkey=z&q=token") == (
        "Password=[redacted]&client_secret=[redacted]&api%5Fkey=[redacted]&q=token"
    )
    assert redact_query("flag&auth=1") == "flag&auth=[redacted]"


def test_event_lines_have_the_request_lines_shape() -> None:
    log = logging.getLogger("shipyard.jobs")
    try:
        raise ValueError("bad input")
    except ValueError:
        record = log.makeRecord(
            "shipyard.jobs",
            logging.ERROR,
            __file__,
            1,
            "job %s failed",
            ("j1",),
            exc_info=__import__("sys").exc_info(),
            extra={"job_id": "j1", "api_token": "t0ps3cret"},
        )
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "error"
    assert line["msg"] == "job j1 failed"
    assert line["logger"] == "shipyard.jobs"
    assert line["time"].endswith("Z")
    assert line["error"]["type"] == "ValueError"
    assert line["error"]["message"] == "bad input"
    assert "Traceback" in line["error"]["stack"]
    assert line["job_id"] == "j1"
    assert line["api_token"] == "[redacted]"
    line, row = render_request(_info(), Options())
    assert line is not None
    assert row is not None
    request = json.loads(line)
    assert {"time", "level", "msg"} <= set(request)
    assert request["requestId"] == "rid-1"
    assert request["url"] == "/api/health?token=[redacted]&x=1"
    assert request["referer"] == "https://app.example/?session=[redacted]"
    assert request["level"] == "warning"  # a 4xx
    assert request["authId"] == "u1"
    assert request["userIP"] == "10.0.0.1"
    assert request["route"] == "/api/health"
    # the `_logs` entry is PocketBase's data: the line less time, level, msg, the request
    # id and the route, and no auth id by default (PocketBase's logAuthId)
    data = json.loads(row[4])
    ours = ("time", "level", "msg", "authId", "requestId", "route")
    assert data == {k: v for k, v in request.items() if k not in ours}
    assert "abc" not in row[3] + row[4]  # nothing secret either
    assert "s1" not in row[3] + row[4]


def _info() -> RequestInfo:
    return RequestInfo(
        request_id="rid-1",
        method="GET",
        route="/api/health",
        path="/api/health",
        query="token=abc&x=1",
        status=404,
        started=1_800_000_000.5,
        duration=0.0123,
        ip="10.0.0.1",
        user_agent="ua",
        referer="https://app.example/?session=s1",
        auth_id="u1",
        auth_collection="users",
    )


def test_the_writer_bounds_what_waits_and_writes_whole_lines() -> None:
    read, write = os.pipe()
    writer = LogWriter(lines=True, sink=None, fd=write, max_pending=3)
    try:

        async def run() -> None:
            writer.start()
            writer.submit([_info()] * 5, Options(enabled=False))  # room for 3
            await writer.close()  # writes what waits

        asyncio.run(run())
        assert writer.stdout.dropped == 2
        assert writer.stdout.written == 3
        lines = os.read(read, 100_000).decode().splitlines()
        assert len(lines) == 3
        assert all(json.loads(x)["requestId"] == "rid-1" for x in lines)
    finally:
        os.close(read)
        os.close(write)


def test_log_settings_are_checked() -> None:
    assert load_settings(env={}).log_format == "json"
    assert load_settings(env={"SHIPYARD_LOG_FORMAT": "text"}).log_format == "text"
    assert load_settings(env={}).access_log is True
    assert load_settings(env={"SHIPYARD_ACCESS_LOG": "false"}).access_log is False
    for env, message in [
        ({"SHIPYARD_LOG_FORMAT": "xml"}, "SHIPYARD_LOG_FORMAT"),
        ({"SHIPYARD_LOGS_MAX_DAYS": "-1"}, "SHIPYARD_LOGS_MAX_DAYS"),
        ({"SHIPYARD_OTEL_ENDPOINT": "collector:4318"}, "SHIPYARD_OTEL_ENDPOINT"),
        ({"SHIPYARD_LOGS_QUEUE_MAX": "0"}, "SHIPYARD_LOGS_QUEUE_MAX"),
    ]:
        with pytest.raises(SettingsError, match=message):
            load_settings(env=env)
