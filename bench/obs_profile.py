#!/usr/bin/env python
"""What metrics and request logs cost a cached read, in one process, without HTTP server or
network: the CPU time (time.process_time: every thread, the log writer's too) of N cached
`GET …/records…` through the ASGI app, for each configuration of bench/observability.py
("off", "lines", "on"), interleaved over rounds (off, lines, on, off, …) so that drift on a
busy machine touches all alike; the median per configuration is reported, and the cost of
each against "off". The batched work (metrics counted, lines and `_logs` rows rendered and
written) is inside the measured time: everything is flushed before the clock stops.

    python bench/obs_profile.py                       # 2000 reads x 41 rounds, view + list
    python bench/obs_profile.py --profile /tmp/p      # + cProfile of "lines" (top entries)

The JSON request lines go to /dev/null (fd 1 is pointed there while measuring); the report
goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import COLLECTION, EMAIL, PASSWORD, collection_body, make_records
from writes_profile import lifespan

from shipyard.app import create_app
from shipyard.settings import load_settings

CONFIGS: dict[str, dict[str, Any]] = {
    "off": {"metrics_enabled": False, "access_log": False, "logs_max_days": 0},
    "lines": {"metrics_enabled": True, "access_log": True, "logs_max_days": 0},
    "on": {"metrics_enabled": True, "access_log": True, "logs_max_days": 5},
    # for attribution (not run unless named with --config)
    "metrics": {"metrics_enabled": True, "access_log": False, "logs_max_days": 0},
    "access": {"metrics_enabled": False, "access_log": True, "logs_max_days": 0},
}
DEFAULT = ["off", "lines", "on"]


def scope_of(path: str, query: bytes) -> dict[str, Any]:
    """A GET as wrk sends it (Host only), from a client on loopback."""
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
            "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query,
            "root_path": "", "headers": [(b"host", b"bench")], "client": ("127.0.0.1", 5000),
            "server": ("bench", 80), "state": {}}  # fmt: skip


async def _receive() -> dict[str, Any]:
    await asyncio.Event().wait()  # a GET has no body to read, a disconnect never comes
    raise AssertionError


class Reader:
    """One configuration's app, started, with the benchmark collection and records."""

    def __init__(self, name: str, tmp: Path) -> None:
        self.name = name
        self.tmp = tmp / name
        self.app: Any = None
        self.stop: Callable[[], Any] | None = None
        self.svc: Any = None

    async def start(self, records: list[dict[str, Any]]) -> None:
        from shipyard.auth import superusers

        settings = load_settings(
            env={}, data_dir=str(self.tmp / "data"), ratelimit_enabled=False,
            max_queue_delay_ms=0, **CONFIGS[self.name],
        )  # fmt: skip
        self.app = create_app(settings)
        _, self.stop = await lifespan(self.app)
        self.svc = self.app.app.state.services
        await superusers.create(self.svc, EMAIL, PASSWORD)
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            r = await client.post(
                "/api/collections/_superusers/auth-with-password",
                json={"identity": EMAIL, "password": PASSWORD},
            )
            client.headers["Authorization"] = r.json()["token"]
            r = await client.post("/api/collections", json=collection_body())
            assert r.status_code == 200, r.text
            for rec in records:
                r = await client.post(f"/api/collections/{COLLECTION}/records", json=rec)
                assert r.status_code == 200, r.text
        await self.flush()

    async def flush(self) -> None:
        """Everything deferred done: metrics counted, lines and rows written."""
        self.svc.telemetry.flush()
        with contextlib.suppress(KeyError, LookupError, AttributeError):
            await self.svc.extension("logs").flush()

    async def one(self, scope: dict[str, Any], check: bool = True) -> None:
        sent: list[Any] = []

        async def send(msg: dict[str, Any]) -> None:
            sent.append(msg)

        await self.app(dict(scope), _receive, send)
        start = sent[0]
        hit = (b"x-shipyard-cache", b"hit") in start["headers"]
        if start["status"] != 200 or (check and not hit):
            raise RuntimeError(f"{self.name}: not a cached 200: {start}")

    async def run(self, scope: dict[str, Any], n: int, concurrency: int) -> float:
        """CPU seconds per request of `n` reads, `concurrency` at a time, flushed."""
        t0 = time.process_time()
        for _ in range(n // concurrency):
            await asyncio.gather(*(self.one(scope) for _ in range(concurrency)))
        await self.flush()
        return (time.process_time() - t0) / (n // concurrency * concurrency)


@contextlib.contextmanager
def stdout_to_devnull() -> Iterator[None]:
    sys.stdout.flush()
    saved = os.dup(1)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.close(null)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


ENDPOINTS = ("one record by id", "list page 1")


async def main(args: argparse.Namespace) -> dict[tuple[str, str], list[float]]:
    """CPU seconds per read of each round, by (endpoint, configuration); printed too."""
    records = make_records(args.records)
    endpoints = dict(
        zip(
            ENDPOINTS,
            [
                (f"/api/collections/{COLLECTION}/records/{records[0]['id']}", b""),
                (f"/api/collections/{COLLECTION}/records", b"perPage=20"),
            ],
            strict=True,
        )
    )
    names = args.config or DEFAULT
    with tempfile.TemporaryDirectory(prefix="obs-profile-") as tmp, stdout_to_devnull():
        readers = {name: Reader(name, Path(tmp)) for name in names}
        for r in readers.values():
            await r.start(records)
        results: dict[tuple[str, str], list[float]] = {}
        try:
            for endpoint, (path, query) in endpoints.items():
                scope = scope_of(path, query)
                for r in readers.values():  # warm: the cache entry filled, memos made
                    await r.one(scope, check=False)
                    await r.run(scope, args.warm, args.concurrency)
                for n in range(args.rounds):
                    order = names[n % len(names) :] + names[: n % len(names)]
                    for name in order:
                        cpu = await readers[name].run(scope, args.n, args.concurrency)
                        results.setdefault((endpoint, name), []).append(cpu)
                if args.profile:
                    prof = cProfile.Profile(time.process_time)
                    prof.enable()
                    await readers[args.profile_config].run(scope, args.n, args.concurrency)
                    prof.disable()
                    out = f"{args.profile}.{endpoint.replace(' ', '_')}"
                    prof.dump_stats(out)
                    st = pstats.Stats(prof, stream=sys.stderr)
                    st.sort_stats("tottime").print_stats(35)
        finally:
            for r in readers.values():
                if r.stop is not None:
                    await r.stop()
    print(
        f"CPU per cached read, in-process ({args.n} reads x {args.rounds} rounds, "
        f"{args.concurrency} at a time; median, [min-max]):",
        file=sys.stderr,
    )
    for endpoint in endpoints:
        base = results[(endpoint, names[0])]
        for name in names:
            xs = results[(endpoint, name)]
            med = statistics.median(xs)
            print(
                f"  {endpoint:>16} {name:>7}: {med * 1e6:6.2f} µs "
                f"[{min(xs) * 1e6:.2f}-{max(xs) * 1e6:.2f}]  cost vs {names[0]}: "
                f"{paired_cost(base, xs):+.1%} (+{(med - statistics.median(base)) * 1e6:.2f} µs)",
                file=sys.stderr,
            )
    return results


def paired_cost(base: list[float], xs: list[float]) -> float:
    """Median over the rounds of each round's ratio to its own base run: drift on a busy
    machine touches both runs of a round alike."""
    return statistics.median(x / b - 1 for b, x in zip(base, xs, strict=True))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("-n", type=int, default=2000, help="measured reads per round")
    ap.add_argument("--rounds", type=int, default=41)
    ap.add_argument("--warm", type=int, default=2000, help="unmeasured reads first")
    ap.add_argument("--concurrency", type=int, default=16, help="reads at once")
    ap.add_argument("--records", type=int, default=100)
    ap.add_argument("--config", action="append", choices=list(CONFIGS))
    ap.add_argument("--profile", help="write a cProfile of --profile-config here (+ top entries)")
    ap.add_argument("--profile-config", default="lines", choices=list(CONFIGS))
    asyncio.run(main(ap.parse_args()))
