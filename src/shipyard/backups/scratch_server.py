"""A Shipyard started on a scratch restore for a drill (drill.py): `shipyard serve` in a
subprocess on a free loopback port, over the scratch data directory or the scratch
PostgreSQL database, with everything that acts on the outside world turned off — no job
worker (pending jobs in the archive would send mail and webhooks again), no mail, no
alert evaluation, no schedules, no Redis (its cache versions belong to the live instance),
no S3 (stored files and archives stay in the scratch directory), no CDN purges — so it
serves reads and does nothing else. The environment wins over the runtime settings the
archive holds, so these hold whatever the archive says.

Reads go through HTTP as a client's would, as a superuser of the archive: the token is
signed here with the instance's secret key and that superuser's token key, read from the
scratch database (no password is needed, none is changed).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson

from shipyard.records.auth import issue_token
from shipyard.records.collections import SUPERUSERS, Collection, collection_from_stored
from shipyard.tools.db import Database, connect

# start-up settings of the scratch instance, over the live one's environment
QUIET = {
    "SHIPYARD_HOST": "127.0.0.1",
    "SHIPYARD_WORKERS": "1",
    "SHIPYARD_JOBS_WORKER": "false",
    "SHIPYARD_ALERTS_ENABLED": "false",
    "SHIPYARD_BACKUPS_CRON": "",
    "SHIPYARD_BACKUPS_DRILL_CRON": "",
    "SHIPYARD_BACKUPS_S3_ENABLED": "false",
    # no Litestream: it would ship the scratch copy into the live instance's replica
    "SHIPYARD_BACKUPS_PITR": "false",
    "SHIPYARD_S3_ENABLED": "false",  # files: local (and empty) in the scratch directory
    "SHIPYARD_SMTP_HOST": "",  # no mail, whatever the archive's settings say
    "SHIPYARD_CDN_CLOUDFLARE_TOKEN": "",  # no CDN purges
    "SHIPYARD_REDIS_URL": "",
    "SHIPYARD_REDIRECT_HTTP_PORT": "0",
    "SHIPYARD_TLS_CERT": "",
    "SHIPYARD_TLS_KEY": "",
    "SHIPYARD_TLS_SELF_SIGNED": "false",
    "SHIPYARD_SCHEMA_FILE": "",
    "SHIPYARD_DEMO": "0",
    "SHIPYARD_RATELIMIT_ENABLED": "false",
    "SHIPYARD_ACCESS_LOG": "false",
    "SHIPYARD_LOG_LEVEL": "warning",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Reads:
    """What the sample reads found: per collection the records the API counted."""

    counts: dict[str, int] = field(default_factory=dict)  # table -> totalItems
    problems: list[str] = field(default_factory=list)
    first_read: float = 0.0  # monotonic time of the first successful records read
    requests: int = 0


async def collections_of(db: Database) -> list[Collection]:
    rows = await db.fetchall('SELECT "data" FROM "_collections" ORDER BY "name"')
    return [collection_from_stored(orjson.loads(r[0])) for r in rows]


async def newest_write(db: Database, collections: list[Collection]) -> str:
    """The latest `updated` (or `created`) value over the record tables ("" for none):
    PocketBase's autodate text, which sorts as time does."""
    newest = ""
    for c in collections:
        if c.type == "view":
            continue
        for col in ("updated", "created"):
            if c.field(col) is None:
                continue
            row = await db.fetchone(f'SELECT max("{col}") FROM "{c.table}"')
            if row and row[0] and str(row[0]) > newest:
                newest = str(row[0])
    return newest


async def _superuser_token(
    db: Database, collections: list[Collection], secret_key: str
) -> str | None:
    coll = next((c for c in collections if c.name == SUPERUSERS), None)
    if coll is None:
        return None
    row = await db.fetchone(f'SELECT "id", "tokenKey" FROM "{coll.table}" LIMIT 1')
    if row is None:
        return None
    return issue_token(secret_key, coll, str(row[0]), str(row[1]), 3600, refreshable=False)


async def open_scratch_db(data_dir: Path, database_url: str) -> Database:
    return await connect(database_url, data_dir / "data.db")


@contextlib.asynccontextmanager
async def serve(
    data_dir: Path, database_url: str, secret_key: str, timeout: float
) -> AsyncIterator[str]:
    """Run the scratch instance; yield its base URL once `/api/health` answers 200."""
    port = free_port()
    env: Mapping[str, str] = {
        **os.environ,
        **QUIET,
        "SHIPYARD_DATA_DIR": str(data_dir),
        "SHIPYARD_DATABASE_URL": database_url,
        "SHIPYARD_BACKUPS_DIR": str(data_dir / "backups"),
        "SHIPYARD_PORT": str(port),
        "SHIPYARD_SECRET_KEY": secret_key,  # in the environment, never on a command line
    }
    with (data_dir / "drill-server.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "shipyard.cli", "serve"],
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: stopping it stops granian's workers too
        )
    url = f"http://127.0.0.1:{port}"
    try:
        await _wait_healthy(proc, url, data_dir, timeout)
        yield url
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(_stop, proc)


async def _wait_healthy(
    proc: subprocess.Popen[bytes], url: str, data_dir: Path, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError("the scratch instance exited: " + _tail(data_dir))
            with contextlib.suppress(httpx.HTTPError, OSError):
                if (await client.get(url + "/api/health")).status_code == 200:
                    return
            await anyio.sleep(0.05)
    raise RuntimeError(f"the scratch instance did not answer within {timeout:g} s")


def _tail(data_dir: Path) -> str:
    try:
        text = (data_dir / "drill-server.log").read_text(errors="replace")
    except OSError:
        return "(no log)"
    return " ".join(text.strip().splitlines()[-5:])[:500]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)


async def sample_reads(
    url: str, db: Database, collections: list[Collection], secret_key: str, timeout: float
) -> Reads:
    """List one page of every collection's records through the API as a superuser of
    the archive; the totals found, and the time of the first success."""
    out = Reads()
    token = await _superuser_token(db, collections, secret_key)
    headers = {"Authorization": token} if token else {}
    if not token:
        out.problems.append("no superuser in the backup: reads are anonymous (API rules apply)")
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=timeout) as client:
        for c in collections:
            if c.type == "view":
                continue
            out.requests += 1
            try:
                r = await client.get(f"/api/collections/{c.name}/records", params={"perPage": 1})
            except httpx.HTTPError as exc:
                out.problems.append(f"{c.name}: the read failed: {exc!r}")
                continue
            if r.status_code != 200:
                out.problems.append(f"{c.name}: the read answered {r.status_code}")
                continue
            if not out.first_read:
                out.first_read = time.monotonic()
            body: Any = r.json()
            out.counts[c.table] = int(body.get("totalItems", -1))
    return out
