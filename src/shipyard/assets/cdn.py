"""URLs behind the CDN, and purging the CDN's copies when a file changes.

`public_url(path)` is where a browser should fetch `path` from: the CDN when
SHIPYARD_CDN_URL is set, else this server. `enqueue_purge(tx, urls)` enqueues `cdn_purge`
jobs in the caller's transaction (the transactional outbox of docs/architecture.md): the
CDN is told to forget a file if and only if the replace or delete that made it stale
commits, and a CDN that is down gets retries with backoff, then a dead letter.

Cloudflare first: `POST {api}/zones/{zone}/purge_cache {"files": [...]}` with the API
token as a bearer token, at most 30 URLs a call. The token is read from the settings when
the job runs: it is never in a job's arguments, a log line or an error message.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import httpx
import orjson

from shipyard.settings import Settings
from shipyard.tools.db import Executor
from shipyard.tools.staticfiles import Manifest
from shipyard.tools.worker import Discard

PURGE_KIND = "cdn_purge"
PURGE_BATCH = 30  # URLs per Cloudflare purge call (its documented limit for most plans)
USER_AGENT = "Shipyard-CDN/1"


class PurgeFailed(Exception):
    """The CDN did not confirm the purge; the job retries it."""


class Cdn:
    def __init__(self, settings: Settings, jobs: Any, manifest: Manifest) -> None:
        self.settings = settings
        self.jobs = jobs
        self.manifest = manifest
        self.base = settings.cdn_url.rstrip("/")

    @property
    def purging(self) -> bool:
        return bool(self.base and self.settings.cdn_cloudflare_zone)

    def public_url(self, path: str, *, absolute: bool = False) -> str:
        """The URL of `path` (`/api/files/…`, `/app.css`): on the CDN when one is set;
        else `path` itself, or on SHIPYARD_APP_URL when `absolute`."""
        if path.startswith(("http://", "https://")):
            return path
        path = "/" + path.lstrip("/")
        if self.base:
            return self.base + path
        return self.settings.app_url.rstrip("/") + path if absolute else path

    def asset_url(self, name: str) -> str:
        """The URL of a built asset by its logical name (`css/app.css`): fingerprinted when
        `shipyard assets build` made it, behind the CDN when one is set."""
        return self.public_url(self.manifest.url_path(name))

    async def enqueue_purge(self, tx: Executor, urls: Iterable[str]) -> list[int]:
        """Purge `urls` (paths or URLs) from the CDN once `tx` commits; nothing when no
        CDN purging is configured. Returns the job ids."""
        if not self.purging:
            return []
        full = sorted({self.public_url(u) for u in urls})
        ids: list[int] = []
        for i in range(0, len(full), PURGE_BATCH):
            batch = full[i : i + PURGE_BATCH]
            job = await self.jobs.enqueue(
                PURGE_KIND,
                {"files": batch},
                tx=tx,
                max_attempts=self.settings.cdn_purge_max_attempts,
                timeout=self.settings.cdn_purge_timeout + 5,
            )
            ids.append(job.id)
        return ids

    async def purge(self, ctx: Any, args: Any) -> dict[str, Any]:
        """The `cdn_purge` job: one Cloudflare purge call; anything but a confirmed
        success fails the attempt (retried with backoff, then dead-lettered)."""
        files = args.get("files") if isinstance(args, dict) else None
        if not isinstance(files, list) or not files or not all(isinstance(f, str) for f in files):
            raise Discard("cdn_purge: args must be {files: [url, ...]}")
        s = self.settings
        if not (s.cdn_cloudflare_zone and s.cdn_cloudflare_token):
            raise Discard("cdn_purge: no CDN purging is configured (SHIPYARD_CDN_CLOUDFLARE_*)")
        url = f"{s.cdn_cloudflare_api.rstrip('/')}/zones/{s.cdn_cloudflare_zone}/purge_cache"
        headers = {
            "authorization": f"Bearer {s.cdn_cloudflare_token}",
            "content-type": "application/json",
            "user-agent": USER_AGENT,
        }
        start = time.perf_counter()
        try:
            async with httpx.AsyncClient(
                timeout=s.cdn_purge_timeout, follow_redirects=False, trust_env=False
            ) as client:
                r = await client.post(url, content=orjson.dumps({"files": files}), headers=headers)
        except httpx.HTTPError as exc:
            raise PurgeFailed(f"cdn_purge: no answer ({type(exc).__name__})") from None
        ms = (time.perf_counter() - start) * 1000
        if not 200 <= r.status_code < 300 or not _success(r.content):
            raise PurgeFailed(f"cdn_purge: HTTP {r.status_code} {_errors(r.content)}".strip())
        return {"files": len(files), "status": r.status_code, "durationMs": round(ms, 3)}


def _success(body: bytes) -> bool:
    """Cloudflare answers `{"success": true, …}`; a 2xx without it is not a purge."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(data, dict) and data.get("success") is True


def _errors(body: bytes) -> str:
    """Cloudflare's error messages (codes and text), short; never the request."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    errors = data.get("errors") if isinstance(data, dict) else None
    if not isinstance(errors, list):
        return ""
    parts = [f"{e.get('code')}: {e.get('message')}" for e in errors if isinstance(e, dict)]
    return "; ".join(parts)[:300]


__all__ = ["PURGE_BATCH", "PURGE_KIND", "Cdn", "PurgeFailed"]
