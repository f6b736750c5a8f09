"""OpenTelemetry traces (SHIPYARD_OTEL_ENDPOINT): a local OTLP/HTTP receiver gets one
server span per request, with the route, method, status and request id, on SQLite and
PostgreSQL; with no endpoint nothing is exported."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from starlette.testclient import TestClient

from shipyard.app import create_app
from shipyard.logs.otel import traces_url
from shipyard.settings import Settings
from tests.helpers.wait import wait_until


class Receiver:
    """An OTLP/HTTP traces endpoint: the spans of every export it got."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.paths: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                receiver.paths.append(self.path)
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                for resource in request.resource_spans:
                    service = {
                        a.key: a.value.string_value for a in resource.resource.attributes
                    }.get("service.name")
                    for scope in resource.scope_spans:
                        for span in scope.spans:
                            attrs = {
                                a.key: a.value.string_value or a.value.int_value
                                for a in span.attributes
                            }
                            receiver.spans.append(
                                {
                                    "name": span.name,
                                    "kind": span.kind,
                                    "service": service,
                                    "start": span.start_time_unix_nano,
                                    "end": span.end_time_unix_nano,
                                    **attrs,
                                }
                            )
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.close()


def test_traces_url() -> None:
    assert traces_url("http://c:4318") == "http://c:4318/v1/traces"
    assert traces_url("http://c:4318/") == "http://c:4318/v1/traces"
    assert traces_url("http://c/otlp/v1/traces") == "http://c/otlp/v1/traces"


def test_a_span_per_request_reaches_the_collector(settings: Settings, receiver: Receiver) -> None:
    traced = dataclasses.replace(settings, otel_endpoint=receiver.url, otel_service_name="shop-api")
    with TestClient(create_app(traced)) as c:
        r = c.get("/api/collections/missing/records", headers={"X-Request-Id": "trace-me-1"})
        assert r.status_code == 404
    # the app's shutdown exported what was left
    span = wait_until(
        lambda: next(
            (s for s in receiver.spans if s.get("shipyard.request_id") == "trace-me-1"), None
        ),
        what="the request's span",
    )
    assert receiver.paths[0] == "/v1/traces"
    assert span["name"] == "GET /api/collections/{collection}/records"
    assert span["kind"] == 2  # SERVER
    assert span["service"] == "shop-api"
    assert span["http.route"] == "/api/collections/{collection}/records"
    assert span["http.request.method"] == "GET"
    assert span["http.response.status_code"] == 404
    assert span["end"] >= span["start"] > 0


def test_no_endpoint_no_tracing(client: TestClient) -> None:
    assert client.app.state.services.extension("logs").tracing is None  # type: ignore[attr-defined]
