"""The jobs capability as an extension: the queue's table, the worker and cron, the jobs
API, the built-in job kinds, and the team's record triggers on the event bus."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.routing import BaseRoute

from shipyard.jobs import openapi as spec
from shipyard.jobs import routes
from shipyard.jobs.builtin import builtin_functions
from shipyard.jobs.events import FunctionTriggers
from shipyard.jobs.jobs import Jobs
from shipyard.kernel.extension import Extension
from shipyard.kernel.functions import Functions
from shipyard.kernel.spec import OpenAPIPart, Viewer
from shipyard.records.events import RecordSubscriber


class JobsExtension(Extension):
    def __init__(self, jobs: Jobs, run_worker: bool) -> None:
        super().__init__(name="jobs", requires=("records",), roles=("server", "worker"))
        self.jobs = jobs
        self.run_worker = run_worker

    def openapi(self, collections: Sequence[Any], viewer: Viewer) -> Sequence[OpenAPIPart]:
        return spec.openapi(viewer)

    def routes(self) -> Sequence[BaseRoute]:
        return routes.routes

    def functions(self) -> Functions:
        return builtin_functions(self.jobs.settings)

    def record_subscribers(self) -> Sequence[RecordSubscriber]:
        return (FunctionTriggers(self.jobs),)

    async def migrate(self) -> None:
        await self.jobs.ensure_schema()

    async def start(self) -> None:
        if self.run_worker or self.role == "worker":
            self.jobs.start_worker()

    async def stop(self) -> None:
        await self.jobs.close()
