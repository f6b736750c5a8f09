"""Static assets and the CDN as an extension: the public directory (served by the app as
the router's not-found handler, assets/public.py), the `cdn_purge` job kind, and the CDN
helpers other capabilities call through `services.extension("assets").cdn`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.types import ASGIApp

from shipyard.assets import config
from shipyard.assets.cdn import PURGE_KIND, Cdn
from shipyard.assets.public import PublicDirectory
from shipyard.kernel.extension import Extension
from shipyard.kernel.functions import Functions
from shipyard.settings import Settings
from shipyard.tools.staticfiles import StaticDirectory


class AssetsExtension(Extension):
    def __init__(self, settings: Settings, jobs: Any) -> None:
        super().__init__(name="assets", requires=("jobs",))
        config.validate(settings)
        self.settings = settings
        # public content, loadable from pages on other origins (the CDN's, say); the
        # page's policy is the team's (SHIPYARD_PUBLIC_CSP), not the API's default-src 'none'
        headers = {"cross-origin-resource-policy": "cross-origin"}
        if settings.public_csp:
            headers["content-security-policy"] = settings.public_csp
        self.directory = StaticDirectory(
            config.public_path(settings), index_fallback=settings.index_fallback, headers=headers
        )
        self.cdn = Cdn(settings, jobs, self.directory.manifest)

    def public_app(self, fallback: ASGIApp | None = None) -> PublicDirectory:
        """The ASGI app that answers what no route matched (app.py installs it)."""
        return PublicDirectory(self.directory, fallback)

    def functions(self) -> Functions:
        f = Functions()
        f.add_job(
            PURGE_KIND,
            self.cdn.purge,
            builtin=True,
            queue="cdn",
            backoff_base=self.settings.cdn_purge_backoff_base,
            backoff_max=3600.0,
        )
        return f

    async def health_detail(self) -> Mapping[str, Any]:
        return {
            "publicDir": str(self.directory.root),
            "cdn": bool(self.cdn.base),
            "cdnPurge": self.cdn.purging,
        }


__all__ = ["AssetsExtension"]
