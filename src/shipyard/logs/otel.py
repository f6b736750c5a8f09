"""Optional OpenTelemetry traces: one server span per request, exported over OTLP/HTTP.

Off unless `SHIPYARD_OTEL_ENDPOINT` is set, and then only with the `otel` extra installed
(`pip install 'shipyard[otel]'`: opentelemetry-sdk, opentelemetry-exporter-otlp-proto-http).
The span is made from the finished request (explicit start and end times), named
`METHOD route`, with the HTTP attributes and `shipyard.request_id`; the SDK's batch
processor exports from its own thread, so a request only pays for building the span.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from shipyard.kernel.telemetry import RequestInfo

log = logging.getLogger("shipyard.logs")


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL: the endpoint as given when it names `/v1/traces`, else
    with that path added (as OTEL_EXPORTER_OTLP_ENDPOINT is read)."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces"


class Tracing:
    """The tracer provider and its exporter; `observe` is a request observer."""

    def __init__(self, provider: Any, tracer: Any, kind: Any, status: Any) -> None:
        self.provider = provider
        self.tracer = tracer
        self._server = kind.SERVER
        self._status = status

    @classmethod
    def build(cls, endpoint: str, service_name: str) -> Tracing | None:
        """Tracing to `endpoint`, or None (with a warning) when the extra is missing."""
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
            from opentelemetry.trace import SpanKind, Status, StatusCode
        except ImportError:
            log.warning(
                "SHIPYARD_OTEL_ENDPOINT is set but OpenTelemetry is not installed "
                "(pip install 'shipyard[otel]'): no traces are exported"
            )
            return None
        provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        exporter = OTLPSpanExporter(endpoint=traces_url(endpoint), timeout=10)
        provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=1000))
        tracer = provider.get_tracer("shipyard")
        return cls(provider, tracer, SpanKind, (Status, StatusCode))

    def observe_batch(self, batch: Sequence[RequestInfo]) -> None:
        for info in batch:
            self.observe(info)

    def observe(self, info: RequestInfo) -> None:
        start = int(info.started * 1e9)
        status_cls, code = self._status
        span = self.tracer.start_span(
            f"{info.method} {info.route}",
            kind=self._server,
            start_time=start,
            attributes={
                "http.request.method": info.method,
                "http.route": info.route,
                "url.path": info.path,
                "http.response.status_code": info.status,
                "shipyard.request_id": info.request_id,
                "client.address": info.ip,
                "user_agent.original": info.user_agent,
            },
        )
        if info.status >= 500:
            span.set_status(status_cls(code.ERROR))
        span.end(end_time=start + int(info.duration * 1e9))

    async def close(self) -> None:
        """Export what is left, then stop (the SDK blocks: in a thread)."""
        await asyncio.to_thread(self.provider.shutdown)
