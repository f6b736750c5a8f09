#!/usr/bin/env python
"""Shipyard's create path in one process, without HTTP server or network: the CPU time each
`POST …/records` costs (time.process_time over N creates through the ASGI app), the SQL
statements one create runs, and optionally a cProfile of the run. CPU time per create is
comparable on a busy machine where requests/s are not (bench/writes.py measures those).

    python bench/writes_profile.py                    # 2000 creates, 8 at a time, SQLite
    python bench/writes_profile.py --sql              # + the statements of one create
    python bench/writes_profile.py --profile /tmp/p   # + cProfile (pstats file and top 40)
    python bench/writes_profile.py --op update --database-url postgresql://…/db
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import EMAIL, PASSWORD, collection_body

from shipyard.app import create_app
from shipyard.settings import load_settings

PATH = "/api/collections/items/records"
NEW = {"title": "bench item", "category": "c1", "price": 1.5, "active": True, "tags": ["red"]}
UPDATE = {"price": 2.5, "title": "updated"}


async def asgi(app: Any, method: str, path: str, token: str, body: Any) -> int:
    """One request straight through the ASGI app (no HTTP client's work measured)."""
    raw = orjson.dumps(body) if body is not None else b""
    headers = [(b"host", b"bench"), (b"authorization", token.encode()),
               (b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]  # fmt: skip
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
             "root_path": "", "headers": headers, "client": ("127.0.0.1", 5000),
             "server": ("bench", 80), "state": {}}  # fmt: skip
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.Event().wait()  # a disconnect never comes
        sent = True
        return {"type": "http.request", "body": raw, "more_body": False}

    async def send(msg: dict[str, Any]) -> None:
        nonlocal status
        if msg["type"] == "http.response.start":
            status = msg["status"]

    await app(scope, receive, send)
    return status


async def lifespan(app: Any) -> tuple[asyncio.Task[None], Callable[[], Any]]:
    """Run the app's lifespan (start-up now, shut-down by the returned function)."""
    inbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    task = asyncio.create_task(app(scope, inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    msg = await outbox.get()
    if msg["type"] != "lifespan.startup.complete":
        raise RuntimeError(msg)

    async def stop() -> None:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await task

    return task, stop


def trace_sql(svc: Any, sink: list[str]) -> Callable[[], None]:
    """Log every statement the database runs into `sink` (until the returned function is
    called): SQLite's trace callback, or a wrapper around the PostgreSQL seam's `run`."""
    if svc.settings.is_postgres:
        from shipyard.tools import db_pg

        orig = db_pg._PgTx.run

        async def run(self: Any, sql: str, params: Any, answer: Any) -> Any:
            sink.append(f"{sql}  -- {list(params)!r:.80}")
            return await orig(self, sql, params, answer)

        db_pg._PgTx.run = run  # type: ignore[method-assign]

        def undo() -> None:
            db_pg._PgTx.run = orig  # type: ignore[method-assign]

        return undo
    conns = [getattr(d, "_conn", None) for d in {id(d): d for d in _databases(svc)}.values()]
    conns = [c for c in conns if hasattr(c, "set_trace_callback")]
    for c in conns:
        c.set_trace_callback(sink.append)
    return lambda: [c.set_trace_callback(None) for c in conns] and None


def _databases(svc: Any) -> list[Any]:
    """The SQLite engines behind the services (the main and the auxiliary database)."""
    out = []
    for name in ("raw_db", "aux_db", "db"):
        d = getattr(svc, name, None)
        while d is not None and not hasattr(d, "_conn") and hasattr(d, "inner"):
            d = d.inner
        if d is not None and hasattr(d, "_conn"):
            out.append(d)
    return out


async def main(args: argparse.Namespace) -> None:
    from shipyard.auth import superusers

    tmp = Path(tempfile.mkdtemp(prefix="writes-profile-"))
    settings = load_settings(
        env={}, data_dir=str(tmp / "data"), database_url=args.database_url or "",
        **{"ratelimit_enabled": False, "max_queue_delay_ms": 0,
           **dict(kv.split("=", 1) for kv in args.set)},
    )  # fmt: skip
    app = create_app(settings)
    _, stop = await lifespan(app)
    svc = app.app.state.services if hasattr(app, "app") else app.state.services
    await superusers.create(svc, EMAIL, PASSWORD)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        r = await client.post(
            "/api/collections/_superusers/auth-with-password",
            json={"identity": EMAIL, "password": PASSWORD},
        )
        token = r.json()["token"]
        client.headers["Authorization"] = token
        r = await client.post("/api/collections", json=collection_body())
        assert r.status_code == 200, r.text
        ids = [f"p{i:014d}" for i in range(args.n + args.warm + 1)]
        if args.op != "create":  # the records updates/deletes act on
            for rid in ids:
                r = await client.post(PATH, json={"id": rid, **NEW})

        async def one(rid: str) -> None:
            # the ASGI app called directly: only the server's work is measured
            if args.op == "create":
                status = await asgi(app, "POST", PATH, token, {"id": rid, **NEW})
            elif args.op == "update":
                status = await asgi(app, "PATCH", f"{PATH}/{rid}", token, UPDATE)
            else:
                status = await asgi(app, "DELETE", f"{PATH}/{rid}", token, None)
            if status not in (200, 204):
                raise RuntimeError(f"{args.op} {rid}: HTTP {status}")

        for rid in ids[: args.warm]:
            await one(rid)
        if args.sql:
            sink: list[str] = []
            untrace = trace_sql(svc, sink)
            await one(ids[args.warm])
            untrace()
            print(f"-- statements of one {args.op} ({len(sink)}):")
            for s in sink:
                print("  ", " ".join(s.split())[:300])
            ids = ids[1:]
        todo = ids[args.warm : args.warm + args.n]
        prof = cProfile.Profile(time.process_time) if args.profile else None
        t0, w0 = time.process_time(), time.perf_counter()
        if prof:
            prof.enable()
        chunks: list[float] = []  # CPU per request of each 200 requests: the least disturbed
        c0 = t0
        for i in range(0, len(todo), args.concurrency):
            await asyncio.gather(*(one(rid) for rid in todo[i : i + args.concurrency]))
            if (i + args.concurrency) % 200 < args.concurrency:
                c1 = time.process_time()
                chunks.append((c1 - c0) / 200)
                c0 = c1
        if prof:
            prof.disable()
        cpu, wall = time.process_time() - t0, time.perf_counter() - w0
        chunks = sorted(chunks) or [cpu / max(len(todo), 1)]
        print(
            f"{args.op}: {len(todo)} in {wall:.2f}s wall, CPU {cpu * 1e6 / len(todo):.0f} us each "
            f"(per 200: min {chunks[0] * 1e6:.0f}, median {chunks[len(chunks) // 2] * 1e6:.0f})"
        )
        if prof:
            prof.dump_stats(args.profile)
            pstats.Stats(prof).sort_stats("cumulative").print_stats(45)
            pstats.Stats(prof).sort_stats("tottime").print_stats(30)
    await stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--op", choices=("create", "update", "delete"), default="create")
    ap.add_argument("-n", type=int, default=2000, help="measured requests")
    ap.add_argument("--warm", type=int, default=200, help="unmeasured requests first")
    ap.add_argument("--concurrency", type=int, default=8, help="requests at once")
    ap.add_argument("--database-url", default="", help="PostgreSQL (default: embedded SQLite)")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="a setting for this run (e.g. realtime_enabled=false)")  # fmt: skip
    ap.add_argument("--sql", action="store_true", help="print the statements of one request")
    ap.add_argument("--profile", help="write a cProfile here and print its top entries")
    asyncio.run(main(ap.parse_args()))
