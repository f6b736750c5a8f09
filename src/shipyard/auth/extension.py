"""Auth as an extension: login and account routes, the account pages, the account-mail
job kind, the login-attempt table, and the runtime settings of its mail (`meta`, `smtp`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.routing import BaseRoute

from shipyard.auth import openapi as spec
from shipyard.auth import pages
from shipyard.auth import routes as auth_routes
from shipyard.auth.accounts import MAIL_JOB, send_account_mail
from shipyard.auth.login import AuthService
from shipyard.auth.mail_settings import MAIL_SECTIONS
from shipyard.kernel.extension import Extension
from shipyard.kernel.functions import Functions
from shipyard.kernel.runtime import Section
from shipyard.kernel.spec import OpenAPIPart, Viewer


class AuthExtension(Extension):
    def __init__(self, service: AuthService) -> None:
        super().__init__(name="auth", requires=("records", "jobs"))  # account mails are jobs
        self.service = service

    def openapi(self, collections: Sequence[Any], viewer: Viewer) -> Sequence[OpenAPIPart]:
        return spec.openapi(collections, viewer)

    def routes(self) -> Sequence[BaseRoute]:
        return [*auth_routes.routes, *pages.routes]

    def functions(self) -> Functions:
        f = Functions()
        f.add_job(MAIL_JOB, send_account_mail, builtin=True, queue="mail")
        return f

    def settings_sections(self) -> Sequence[Section]:
        return MAIL_SECTIONS

    async def migrate(self) -> None:
        await self.service.attempts.ensure_schema()

    async def stop(self) -> None:
        self.service.passwords.close()
