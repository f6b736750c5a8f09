"""Webhooks as an extension: the subscriptions API, the delivery job kind, and a
subscriber on the record-event bus — the same interface a team's own extension uses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.routing import BaseRoute

from shipyard.kernel.extension import Extension
from shipyard.kernel.functions import Functions
from shipyard.kernel.spec import OpenAPIPart, Viewer
from shipyard.records.events import RecordSubscriber
from shipyard.settings import Settings
from shipyard.webhooks import openapi as spec
from shipyard.webhooks import routes
from shipyard.webhooks.events import WebhookTriggers
from shipyard.webhooks.webhooks import DELIVERY_KIND, Webhooks


class WebhooksExtension(Extension):
    def __init__(self, webhooks: Webhooks, settings: Settings) -> None:
        super().__init__(name="webhooks", requires=("records", "jobs"))
        self.webhooks = webhooks
        self.settings = settings

    def openapi(self, collections: Sequence[Any], viewer: Viewer) -> Sequence[OpenAPIPart]:
        return spec.openapi(viewer)

    def routes(self) -> Sequence[BaseRoute]:
        return routes.routes

    def functions(self) -> Functions:
        f = Functions()
        f.add_job(
            DELIVERY_KIND,
            self.webhooks.deliver,
            builtin=True,
            queue="webhooks",
            backoff_base=self.settings.webhook_backoff_base,
            backoff_max=3600.0,
        )
        return f

    def record_subscribers(self) -> Sequence[RecordSubscriber]:
        return (WebhookTriggers(self.webhooks),)

    async def migrate(self) -> None:
        await self.webhooks.ensure_schema()
