"""Alerting as an extension: its tables, the evaluation loop (in every process that takes
part: `SHIPYARD_ALERTS_EVALUATOR`), the notification job kind, the `alerts` settings
section and the `/api/alerts` routes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.routing import BaseRoute

from shipyard.alerts import routes
from shipyard.alerts.config import ALERTS
from shipyard.alerts.engine import NOTIFY_KIND, Evaluator
from shipyard.alerts.notify import deliver
from shipyard.alerts.rules import RuleError, parse_rules
from shipyard.alerts.silences import Silences
from shipyard.alerts.store import AlertStore
from shipyard.kernel.extension import Extension
from shipyard.kernel.functions import Functions
from shipyard.kernel.runtime import Section
from shipyard.kernel.spec import OpenAPIPart, Viewer
from shipyard.settings import SettingsError

TAG = {
    "name": "alerts",
    "description": "Alert rules with their state, and silences (superusers only).",
}


class AlertsExtension(Extension):
    def __init__(self, services: Any) -> None:
        # metrics and errors are read when present (services.extension), not required
        super().__init__(name="alerts", requires=("records", "jobs"))
        settings = services.settings
        try:
            parse_rules(settings.alerts_rules)
        except RuleError as exc:
            raise SettingsError(f"SHIPYARD_ALERTS_RULES: {exc}") from None
        if settings.alerts_webhook_url and not settings.alerts_webhook_secret:
            raise SettingsError(
                "SHIPYARD_ALERTS_WEBHOOK_SECRET: required with SHIPYARD_ALERTS_WEBHOOK_URL "
                "(the notifications are signed)"
            )
        self.settings = settings
        self.store = AlertStore(services.raw_db)
        self.silences = Silences(services.raw_db)
        self.evaluator = Evaluator(services, self.store, self.silences)

    def routes(self) -> Sequence[BaseRoute]:
        return routes.routes

    def openapi(self, collections: Sequence[Any], viewer: Viewer) -> Sequence[OpenAPIPart]:
        return [OpenAPIPart(paths=routes.openapi_paths(), tags=[TAG])]

    def settings_sections(self) -> Sequence[Section]:
        return (ALERTS,)

    def functions(self) -> Functions:
        f = Functions()
        f.add_job(
            NOTIFY_KIND,
            deliver,
            builtin=True,
            queue="alerts",
            # outgoing notifications back off as webhook deliveries do
            backoff_base=self.settings.webhook_backoff_base,
            backoff_max=600.0,
        )
        return f

    async def migrate(self) -> None:
        await self.store.ensure_schema()

    async def start(self) -> None:
        if self.settings.alerts_evaluator:
            self.evaluator.start()

    async def stop(self) -> None:
        await self.evaluator.stop()
