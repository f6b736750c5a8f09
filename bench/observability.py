"""Observability benchmark: what metrics and request logs cost on the hot path, plus the
sections other parts of observability contribute (error ingest, log writes).

Sections (`--only`, repeatable; default all that exist):

- `overhead` (here): cached reads — one record by id and list page 1, both cache hits —
  against three Shipyard servers that differ only in `SHIPYARD_METRICS_ENABLED`,
  `SHIPYARD_ACCESS_LOG` and `SHIPYARD_LOGS_MAX_DAYS`: "off" (no metrics, no request lines,
  no `_logs` request log), "lines" (metrics and the JSON request lines on stdout: the
  issue's "metrics and request logging") and "on" (the defaults: also PocketBase's `_logs`
  request log). Target: "lines" within 5 % of "off" in the server's CPU time per request
  (its CPU seconds from /proc, all threads, ÷ requests answered: what the observability
  adds to each request, and steadier than req/s when other processes take CPU on a small
  machine); req/s is reported beside it, and "on". To keep drift on a shared machine from
  favouring any, the three runs of an endpoint follow each other directly (all servers up,
  the idle ones costing nothing; after waiting for the machine to go quiet), their order
  rotates from round to round, each round's cost is that round's ratio to its own "off"
  run, and the median over `--rounds` is reported;
- `inprocess`: the same reads driven through the ASGI app in this process
  (bench/obs_profile.py), CPU time per request by time.process_time, the configurations
  interleaved: no HTTP server, network or wrk, so the least noisy measure of what metrics
  and logs add;
- `ingest`: `bench/obs_ingest.py`'s `section(args) -> str`, when that module exists;
- `logs`: `bench/obs_logs.py`'s `section(args) -> str`, when that module exists.

A sibling module may also define `add_arguments(parser)` for options of its own. The report
(markdown) goes to `--out` (default `bench/results/observability.md`) and to stdout.

    python bench/observability.py                    # everything, 10 s runs, 5 rounds
    python bench/observability.py --only overhead --only inprocess --out /tmp/o.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    COLLECTION,
    HERE,
    OTHER_CPU_WARN,
    BenchError,
    Server,
    WrkResult,
    authenticate,
    create_collection,
    exit_cleanly_on_signals,
    fmt_ms,
    git_rev,
    load_records,
    machine_info,
    make_records,
    measured_wrk,
    parse_wrk,
    set_time_limit,
    start_shipyard,
    wait_healthy,
    wait_quiet,
    wrk,
    wrk_version,
)

TARGET = 0.05  # "lines" may cost at most this share of "off"'s CPU time per request
SIBLINGS = {"ingest": "obs_ingest", "logs": "obs_logs"}
OWN = ["overhead", "inprocess"]  # the sections of this module
CONFIGS = {
    # off: no metrics, no JSON request lines and no `_logs` request log (maxDays 0)
    "off": {
        "SHIPYARD_METRICS_ENABLED": "false",
        "SHIPYARD_ACCESS_LOG": "false",
        "SHIPYARD_LOGS_MAX_DAYS": "0",
    },
    # the issue's "metrics and request logging": metrics and the stdout JSON lines
    "lines": {
        "SHIPYARD_METRICS_ENABLED": "true",
        "SHIPYARD_ACCESS_LOG": "true",
        "SHIPYARD_LOGS_MAX_DAYS": "0",
    },
    "on": {
        "SHIPYARD_METRICS_ENABLED": "true",
        "SHIPYARD_ACCESS_LOG": "true",
        "SHIPYARD_LOGS_MAX_DAYS": "5",
    },
}
TARGETED = "lines"  # the configuration the 5 % target applies to
LIST = f"/api/collections/{COLLECTION}/records?perPage=20"


def view_path(record_id: str) -> str:
    return f"/api/collections/{COLLECTION}/records/{record_id}"


def siblings() -> dict[str, ModuleType]:
    """The other sections' modules that exist (each written by its own part)."""
    out = {}
    for section, name in SIBLINGS.items():
        try:
            out[section] = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
    return out


# --------------------------------------------------------------------------- overhead


@dataclass
class Sample:
    config: str
    endpoint: str
    round: int
    result: WrkResult


def prepare(tmp: Path, config: str, records: list[dict[str, Any]], same: bool = False) -> Server:
    """A Shipyard server with `config`'s settings (with `same`: both servers "off", the
    A/A check of the method) and the benchmark records, stopped."""
    base = tmp / config
    base.mkdir()
    server = start_shipyard(base, CONFIGS["off" if same else config])
    try:
        wait_healthy(server, 60)
        authenticate(server)
        create_collection(server)
        load_records(server, records)
    finally:
        server.stop()
    return server


def check_hit(server: Server, path: str) -> None:
    url = server.base + path
    with httpx.Client(timeout=30) as client:
        for _ in range(2):  # the first may fill the entry
            r = client.get(url)
            if r.status_code != 200:
                raise BenchError(f"{server.name}: GET {path}: HTTP {r.status_code} {r.text}")
        if r.headers.get("x-shipyard-cache") != "hit":
            raise BenchError(
                f"{path}: expected a cache hit, got {r.headers.get('x-shipyard-cache')}"
            )


def check_config(server: Server, config: str, same: bool = False) -> None:
    """The server really runs as configured: /metrics answers (on) or is 404 (off)."""
    r = httpx.get(server.base + "/metrics", timeout=30)
    want = 404 if config == "off" or same else 200  # metrics on in every other config
    if r.status_code != want:
        raise BenchError(f"{config}: GET /metrics answered {r.status_code}, expected {want}")


def measure(
    args: argparse.Namespace, server: Server, config: str, name: str, path: str, n: int
) -> Sample:
    check_hit(server, path)
    if args.wait_quiet:
        wait_quiet(args.wait_quiet)
    url = server.base + path
    wrk(url, f"{args.warmup}s", latency=False)
    raw, cmd, cpu = measured_wrk(server, url, f"{args.duration}s")
    result = parse_wrk(raw, cmd)
    result.cpu = cpu
    if result.non2xx or result.socket_errors:
        raise BenchError(f"{config} {name}: errors during the run:\n{raw}")
    print(f"  round {n} {config:>3} {name}: {result.rps:,.0f} req/s", file=sys.stderr)
    return Sample(config, name, n, result)


def overhead(args: argparse.Namespace) -> str:
    records = make_records(args.records)
    with tempfile.TemporaryDirectory(prefix="shipyard-obs-") as tmp_dir:
        tmp = Path(tmp_dir)
        servers = {config: prepare(tmp, config, records, args.same) for config in CONFIGS}
        endpoints = {"one record by id": view_path(records[0]["id"]), "list page 1": LIST}
        samples: list[Sample] = []
        try:
            # both servers up (the idle one costs nothing), so each off run and its on run
            # follow each other directly: a pair sees the same machine
            for config, server in servers.items():
                server.start()
                wait_healthy(server, 60)
                check_config(server, config, args.same)
            for n in range(1, args.rounds + 1):
                for name, path in endpoints.items():
                    # rotate which configuration goes first, so none always runs warmer
                    names = list(servers)
                    shift = (n - 1) % len(names)
                    order = names[shift:] + names[:shift]
                    for config in order:
                        samples.append(measure(args, servers[config], config, name, path, n))
        finally:
            for server in servers.values():
                server.stop()
        cmd_of = {c: s.serve_cmd for c, s in servers.items()}
    return render_overhead(args, samples, list(endpoints), cmd_of)


def cpu_us(r: WrkResult) -> float:
    """Server CPU time per request, in microseconds: steadier than req/s when other
    processes take CPU from the run."""
    return r.cpu.get("server_cores", 0.0) / r.rps * 1e6 if r.rps else 0.0


def render_overhead(
    args: argparse.Namespace, samples: list[Sample], endpoints: list[str], cmds: dict[str, str]
) -> str:
    def pick(config: str, endpoint: str) -> list[WrkResult]:
        return [s.result for s in samples if s.config == config and s.endpoint == endpoint]

    title = "Overhead of metrics and request logs on cached reads"
    lines = [
        f"## {title}" + (" — A/A check: all servers off" if args.same else ""),
        "",
        f"Three Shipyard servers (1 granian worker, embedded SQLite, {args.records:,} records, "
        "response cache on) that differ only in `SHIPYARD_METRICS_ENABLED`, "
        "`SHIPYARD_ACCESS_LOG` and `SHIPYARD_LOGS_MAX_DAYS`: **off** (`false`, `false`, `0`: "
        "no metrics, no request lines, no `_logs` request log), **lines** (`true`, `true`, "
        "`0`: metrics and a JSON line per request on stdout, the issue's \"metrics and "
        "request logging\") and **on** (`true`, `true`, `5`: the defaults, PocketBase's "
        f"`_logs` request log too). wrk `-t2 -c64 -d{args.duration}s --latency` after a "
        f"{args.warmup}s warm-up; {args.rounds} rounds: per endpoint, the three runs back to "
        "back (all servers up, the idle ones cost nothing), rotating which goes first; "
        "every request a cache hit (checked before each run). Target: "
        f"**lines** within {TARGET:.0%} of **off** in the server's CPU time per request "
        "(median over the rounds of lines ÷ off - 1, each round against its own off run); "
        "req/s is shown beside it, and **on**: PocketBase's own request log costs it half "
        "its throughput.",
        "",
        "| Endpoint | server CPU per request off / lines / on | cost of lines (CPU) | "
        "cost of on (CPU) | off: req/s | lines: req/s | on: req/s | cost of lines (req/s) | "
        "p99 off / lines / on | lines met |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for endpoint in endpoints:
        runs = {c: pick(c, endpoint) for c in CONFIGS}
        if not all(runs.values()):
            continue
        off = runs["off"]

        def cost_of(config: str, off: list[WrkResult] = off, runs: Any = runs) -> float:
            """Median over the rounds of the share of off's req/s lost."""
            pairs = [1 - b.rps / a.rps for a, b in zip(off, runs[config], strict=False)]
            return statistics.median(pairs)

        def cpu_cost_of(config: str, off: list[WrkResult] = off, runs: Any = runs) -> float:
            """Median over the rounds of the CPU per request added to off's."""
            pairs = [cpu_us(b) / cpu_us(a) - 1 for a, b in zip(off, runs[config], strict=False)]
            return statistics.median(pairs)

        cpu = {c: statistics.median(cpu_us(r) for r in rs) for c, rs in runs.items()}
        p99 = {c: fmt_ms(statistics.median(r.p99_ms for r in rs)) for c, rs in runs.items()}
        rps = {c: f"{statistics.median(r.rps for r in rs):,.0f}" for c, rs in runs.items()}
        cpu_lines, cpu_on = cpu_cost_of(TARGETED), cpu_cost_of("on")
        met = "**yes**" if cpu_lines <= TARGET else "no"
        lines.append(
            f"| {endpoint} | {cpu['off']:.1f} / {cpu['lines']:.1f} / {cpu['on']:.1f} µs | "
            f"{cpu_lines:+.1%} | {cpu_on:+.1%} | {rps['off']} | {rps['lines']} | {rps['on']} | "
            f"{cost_of(TARGETED):+.1%} | {p99['off']} / {p99['lines']} / {p99['on']} | {met} |"
        )
    noisy = [s for s in samples if s.result.cpu.get("other", 0) > OTHER_CPU_WARN]
    lines += [
        "",
        "Server CPU per request: the server's CPU seconds during the run (all its threads: "
        "the log writer's too, from /proc) ÷ requests answered. Costs: per round, config ÷ "
        "off - 1 (the runs of a round back to back), median over the rounds; negative: "
        "within the noise.",
    ]
    if noisy:
        lines += [
            "",
            f"**{len(noisy)} of {len(samples)} runs shared the machine** (other processes "
            f"above {OTHER_CPU_WARN:.0%} of all CPUs: the last column below): their req/s "
            "say little, their CPU per request a little more.",
        ]
    lines += [
        "",
        "Every run:",
        "",
        "| Round | Server | Endpoint | req/s | p50 | p99 | server CPU | per request | other CPU |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s in samples:
        r = s.result
        lines.append(
            f"| {s.round} | {s.config} | {s.endpoint} | {r.rps:,.0f} | {fmt_ms(r.p50_ms)} | "
            f"{fmt_ms(r.p99_ms)} | {r.cpu.get('server', 0):.0%} | {cpu_us(r):.1f} µs | "
            f"{r.cpu.get('other', 0):.0%} |"
        )
    cost = per_request_cost()
    lines += [
        "",
        f"In-process cost of the metric updates per cached read (timeit, no I/O): "
        f"{cost[True]:.2f} µs on, {cost[False]:.2f} µs off — the difference, "
        f"{cost[True] - cost[False]:.2f} µs, is what metrics add to each request's CPU time.",
    ]
    lines += ["", "Commands:", ""]
    lines += [f"- {config}: `{cmd}`" for config, cmd in cmds.items()]
    return "\n".join(lines) + "\n"


def inprocess(args: argparse.Namespace) -> str:
    """bench/obs_profile.py's measurement, as a section of the report."""
    import asyncio

    import obs_profile

    opts = argparse.Namespace(
        n=args.inprocess_n, rounds=args.inprocess_rounds, warm=2000, concurrency=16,
        records=100, config=None, profile=None, profile_config="lines",
    )  # fmt: skip
    results = asyncio.run(obs_profile.main(opts))
    names = obs_profile.DEFAULT
    lines = [
        "## CPU per cached read in one process",
        "",
        f"`bench/obs_profile.py -n {opts.n} --rounds {opts.rounds}`: the same cached reads "
        "driven through the ASGI app in this process — no HTTP server, network or wrk — "
        f"{opts.concurrency} at a time, {opts.n:,} a round, the three configurations "
        "interleaved (their order rotating); CPU time by `time.process_time` (every thread: "
        "the log writer's too), the batched work (metrics counted, lines and `_logs` rows "
        "rendered and written, to /dev/null and SQLite) flushed inside the measured time. "
        "Medians over the rounds. Without the HTTP server's own work the base is smaller, "
        "so the same added microseconds are a larger share than in the table above.",
        "",
        "| Endpoint | off | lines | on | lines - off | cost of lines | cost of on |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for endpoint in obs_profile.ENDPOINTS:
        med = {n: statistics.median(results[(endpoint, n)]) * 1e6 for n in names}
        lines.append(
            f"| {endpoint} | {med['off']:.2f} µs | {med['lines']:.2f} µs | {med['on']:.2f} µs | "
            f"{med['lines'] - med['off']:.2f} µs | {med['lines'] / med['off'] - 1:+.1%} | "
            f"{med['on'] / med['off'] - 1:+.1%} |"
        )
    return "\n".join(lines) + "\n"


def per_request_cost() -> dict[bool, float]:
    """Microseconds of CPU the hot path spends on metrics per cached read, off and on: what
    the gateway does (in-flight up and down, the cache's answer counted, the request kept,
    then counted and timed in its batch) and the one statement a cached read runs on
    SQLite, timed into the histogram. Measured in this process with timeit (the minimum of 5 repeats): free of wrk's noise."""
    import timeit

    from shipyard.kernel.telemetry import RequestInfo, Telemetry
    from shipyard.tools.db_metrics import QueryMetrics

    out = {}
    for enabled in (False, True):
        t = Telemetry(metrics_enabled=enabled)
        cache = t.metrics.counter("shipyard_cache_requests_total", "Cache answers.", ("result",))
        statements = QueryMetrics(t.metrics, "sqlite", None)
        route = "/api/collections/{collection}/records/{id}"
        info = RequestInfo("rid", "GET", route, "/p", "", 200, 0.0, 0.002, "127.0.0.1", "wrk", "")

        def one(
            t: Telemetry = t, cache: Any = cache, statements: Any = statements, info: Any = info
        ) -> None:
            t.in_flight += 1
            if t.metrics_enabled:
                statements.slow("PRAGMA data_version", 0.00001, 1)
                cache.inc(("hit",))
            t.in_flight -= 1
            if t.active:
                t.request_done(info)

        def thousand(one: Any = one, t: Telemetry = t) -> None:
            for _ in range(1000):
                one()
            t.flush()  # the batch counted, as the background task does

        n = 100
        out[enabled] = min(timeit.repeat(thousand, number=n, repeat=5)) / (n * 1000) * 1e6
    return out


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", choices=[*OWN, *SIBLINGS])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--inprocess-n", type=int, default=2000, help="reads per round")
    parser.add_argument("--inprocess-rounds", type=int, default=41)
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--wait-quiet", type=float, default=120.0)
    parser.add_argument("--time-limit", type=int, default=3600)
    parser.add_argument(
        "--same",
        action="store_true",
        help="A/A check: both servers off, to see how far two identical servers differ",
    )
    parser.add_argument("--out", type=Path, default=HERE / "results" / "observability.md")
    mods = siblings()
    for mod in mods.values():
        if hasattr(mod, "add_arguments"):
            mod.add_arguments(parser)
    args = parser.parse_args()
    exit_cleanly_on_signals()
    set_time_limit(args.time_limit)
    wanted = args.only or [*OWN, *mods]
    info = machine_info()
    parts = [
        "# Observability benchmark",
        "",
        f"Generated by `bench/observability.py` on "
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC at commit {git_rev()}; "
        f"{info['nproc']} CPUs ({info['cpu']}), {info['mem']}, Linux {info['kernel']}; "
        f"{wrk_version()}.",
        "",
    ]
    try:
        if "overhead" in wanted:
            parts.append(overhead(args))
        if "inprocess" in wanted:
            parts.append(inprocess(args))
        for section in wanted:
            if section in OWN:
                continue
            mod = mods.get(section)
            if mod is None:
                parts.append(f"## {section}\n\n`bench/{SIBLINGS[section]}.py` is not there.\n")
                continue
            parts.append(mod.section(args))
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
