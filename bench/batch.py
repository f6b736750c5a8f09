#!/usr/bin/env python
"""Batch creates vs single creates: records created per second through `POST /api/batch`
(B creates per request, one transaction) and through one `POST …/records` per record,
Shipyard vs PocketBase, side by side on the same collection.

One run:
  1. starts PocketBase (defaults) and Shipyard (1 worker, embedded SQLite, batches on:
     SHIPYARD_BATCH_ENABLED, SHIPYARD_BATCH_MAX_REQUESTS=B) on free loopback ports, creates
     bench/common.py's `items` collection on both through the API, and turns PocketBase's
     batches on (`PATCH /api/settings`, maxRequests B);
  2. for each server, one after the other: wrk (-t1 -cC, --latency) POSTs the same record
     as a superuser for `--duration` seconds, one record per request; then the same with a
     batch of B creates per request;
  3. checks every answer was a 2xx and that the collection holds as many records as the
     answered requests created (in-flight requests at wrk's stop aside), then writes a
     markdown report (records/s, requests/s, p50/p99 per request, commands, raw output).

    python bench/batch.py                         # 5 s runs, batches of 50, 8 connections
    python bench/batch.py --duration 3 --out /tmp/batch.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    COLLECTION,
    BenchError,
    Server,
    WrkResult,
    authenticate,
    create_collection,
    exit_cleanly_on_signals,
    fmt_ms,
    git_rev,
    machine_info,
    parse_wrk,
    set_time_limit,
    start_pocketbase,
    start_shipyard,
    wait_healthy,
    wrk_version,
)

RECORD = {"title": "bench item", "category": "c1", "price": 1.5, "active": True, "tags": ["red"]}


def lua_post(path: Path, token: str, body: bytes) -> Path:
    """A wrk script that POSTs `body` as JSON with the superuser's token."""
    path.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "{token}"\n'
        f"wrk.body = [==[{body.decode()}]==]\n"
    )
    return path


def run_wrk(url: str, script: Path, duration: int, connections: int) -> WrkResult:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "10s",
           "-s", str(script), url]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 120)
    if proc.returncode != 0:
        raise BenchError(f"wrk failed: {shlex.join(cmd)}\n{proc.stdout}\n{proc.stderr}")
    return parse_wrk(proc.stdout, shlex.join(cmd))


def count(server: Server) -> int:
    r = httpx.get(
        f"{server.base}/api/collections/{COLLECTION}/records?perPage=1",
        headers={"Authorization": server.token},
        timeout=60,
    )
    return int(r.json()["totalItems"])


def measure(server: Server, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    single = orjson.dumps(RECORD)
    url = f"/api/collections/{COLLECTION}/records"
    sub = {"method": "POST", "url": url, "body": RECORD}
    batch = orjson.dumps({"requests": [sub] * args.batch_size})
    tag = server.name.lower()
    before = count(server)
    one = run_wrk(server.base + url, lua_post(tmp / f"{tag}-one.lua", server.token, single),
                  args.duration, args.connections)  # fmt: skip
    after_one = count(server)
    many = run_wrk(server.base + "/api/batch",
                   lua_post(tmp / f"{tag}-batch.lua", server.token, batch),
                   args.duration, args.connections)  # fmt: skip
    after_many = count(server)
    for name, res in (("single", one), ("batch", many)):
        if res.non2xx or res.socket_errors:
            raise BenchError(f"{server.name} {name}: {res.non2xx} non-2xx, {res.socket_errors}")
    return {
        "one": one,
        "many": many,
        "stored_one": after_one - before,
        "stored_many": after_many - after_one,
    }


def report(
    results: dict[str, dict[str, Any]], servers: list[Server], args: argparse.Namespace
) -> str:
    m = machine_info()
    load = Path("/proc/loadavg").read_text().split()[:3]
    lines = [
        "# Batch creates vs single creates",
        "",
        f"`python bench/batch.py --duration {args.duration} --batch-size {args.batch_size} "
        f"--connections {args.connections}` on {dt.date.today()}, commit {git_rev()}; "
        f"{m['nproc']} CPUs ({m['cpu']}), {m['mem']}, {wrk_version()}.",
        "",
        f"**The machine was shared** with other work during this run (load average "
        f"{' / '.join(load)} on {m['nproc']} cores at the end of it) and the runs were short, "
        "so the absolute figures are low and noisy; the ratios between rows measured "
        "minutes apart are what this shows. Re-run on a quiet machine for figures to quote.",
        "",
        "Every server: one process, embedded SQLite, the same `items` collection "
        "(bench/common.py), a superuser's token, every answer a 2xx. Batch: "
        f"{args.batch_size} creates per `POST /api/batch`, one transaction each.",
        "",
        "| server | mode | records/s | requests/s | p50 / p99 per request | records stored |",
        "|---|---|---|---|---|---|",
    ]
    for s in servers:
        r = results[s.name]
        for mode, key, stored, per in (
            ("one create per request", "one", "stored_one", 1),
            (f"batch of {args.batch_size}", "many", "stored_many", args.batch_size),
        ):
            w: WrkResult = r[key]
            lines.append(
                f"| {s.name} | {mode} | {w.rps * per:,.0f} | {w.rps:,.1f} | "
                f"{fmt_ms(w.p50_ms)} / {fmt_ms(w.p99_ms)} | {r[stored]:,} |"
            )
    lines += ["", "Speed-up of batches over single requests, per server:", ""]
    for s in servers:
        r = results[s.name]
        gain = r["many"].rps * args.batch_size / max(r["one"].rps, 1e-9)
        lines.append(f"- {s.name}: {gain:.1f}x")
    lines += ["", "## Servers", ""]
    for s in servers:
        lines += [f"- {s.name} ({s.version}): `{s.serve_cmd}`"]
    lines += ["", "## Raw wrk output", ""]
    for s in servers:
        for key in ("one", "many"):
            w = results[s.name][key]
            lines += [f"{s.name}, `{w.cmd}`:", "", "```", w.raw.strip(), "```", ""]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    ap.add_argument("--batch-size", type=int, default=50, help="creates per batch")
    ap.add_argument("--connections", type=int, default=8, help="wrk connections")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "batch.md"))
    args = ap.parse_args()
    exit_cleanly_on_signals()
    set_time_limit(900)
    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as d:
        tmp = Path(d)
        try:
            servers.append(start_pocketbase(tmp))
            env = {"SHIPYARD_BATCH_ENABLED": "true",
                   "SHIPYARD_BATCH_MAX_REQUESTS": str(args.batch_size)}  # fmt: skip
            servers.append(start_shipyard(tmp, env))
            for s in servers:
                wait_healthy(s, 90)
                authenticate(s)
                create_collection(s)
            on = {"batch": {"enabled": True, "maxRequests": args.batch_size, "timeout": 30}}
            r = httpx.patch(servers[0].base + "/api/settings", json=on,
                            headers={"Authorization": servers[0].token}, timeout=30)  # fmt: skip
            if r.status_code != 200:
                raise BenchError(f"PocketBase settings: HTTP {r.status_code} {r.text}")
            results = {}
            for s in servers:
                print(f"{s.name}...", file=sys.stderr)
                results[s.name] = measure(s, tmp, args)
        finally:
            for s in servers:
                s.stop()
    text = report(results, servers, args)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
