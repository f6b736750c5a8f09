#!/usr/bin/env python
"""granian vs uvicorn under Shipyard (SHIPYARD_HTTP_SERVER): server CPU per request and
req/s on three real endpoints, interleaved A/B rounds (the machine is shared and noisy).

Expects two `shipyard serve` processes already running on the demo data set (`--demo`),
one per server, 1 worker each; their base URLs and the pid of each `shipyard serve`
(its process group holds the workers) are the arguments:

    python bench/http_server.py GRANIAN_URL GRANIAN_PID UVICORN_URL UVICORN_PID [--rounds 3]
        [--duration 5]

For each endpoint and round, each server gets one wrk run (-t1, 32 connections unless
--connections), the order swapped every round; the server's CPU (utime+stime of its process
and all descendants, from /proc) over the run is divided by the requests wrk completed, and
so are the voluntary context switches of all their threads: granian hands each request
between its Rust threads and the Python thread, uvicorn runs all of it on one.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import context_switches, descendants, parse_wrk, process_cpu_s

LIST = "/api/collections/posts/records?perPage=20&filter=status%3D%27published%27&sort=-views"
DEMO_SUPERUSER = {"identity": "admin@example.com", "password": "shipyard-demo"}


def token(base: str) -> str:
    r = httpx.post(base + "/api/collections/_superusers/auth-with-password", json=DEMO_SUPERUSER)
    r.raise_for_status()
    return str(r.json()["token"])


def first_post(base: str) -> str:
    r = httpx.get(base + LIST)
    r.raise_for_status()
    return str(r.json()["items"][0]["id"])


def run(
    base: str, pid: int, path: str, duration: int, script: str | None, connections: int = 32
) -> tuple[float, float, float, float, float]:
    pids = [pid, *descendants(pid)]
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency"]
    if script:
        cmd += ["-s", script]
    cmd.append(base + path)
    cpu0, cs0 = process_cpu_s(pids), context_switches(pids)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    cpu1, cs1 = process_cpu_s(pids), context_switches(pids)
    res = parse_wrk(out, " ".join(cmd))
    if res.requests == 0 or res.non2xx > res.requests // 20:
        raise SystemExit(f"{base}{path}: {res.non2xx} non-2xx answers\n{out}")
    if res.non2xx:  # e.g. the overload admission's 503s, when the loop fell behind
        print(f"  ({base}{path}: {res.non2xx} of {res.requests} not 2xx)", file=sys.stderr)
    cores = (cpu1 - cpu0) / duration
    per_request = (cpu1 - cpu0) / res.requests * 1e6
    return res.rps, per_request, cores, res.p99_ms, (cs1 - cs0) / res.requests


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("granian_url")
    ap.add_argument("granian_pid", type=int)
    ap.add_argument("uvicorn_url")
    ap.add_argument("uvicorn_pid", type=int)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--connections", type=int, default=32, help="wrk connections")
    ap.add_argument("--only", action="append", help="endpoints to run (default: all)")
    a = ap.parse_args()
    servers = {"granian": (a.granian_url, a.granian_pid), "uvicorn": (a.uvicorn_url, a.uvicorn_pid)}
    tmp = Path(tempfile.mkdtemp())
    scripts: dict[str, str] = {}
    for name, (base, _) in servers.items():
        body = json.dumps({"title": "bench", "status": "draft", "views": 1})
        lua = tmp / f"create_{name}.lua"
        lua.write_text(
            'wrk.method = "POST"\n'
            f"wrk.body = {json.dumps(body)}\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
            f'wrk.headers["Authorization"] = "{token(base)}"\n'
        )
        scripts[name] = str(lua)
    view = "/api/collections/posts/records/" + first_post(a.granian_url)
    view_uv = "/api/collections/posts/records/" + first_post(a.uvicorn_url)
    cases = {
        "list (cached)": {"granian": (LIST, None), "uvicorn": (LIST, None)},
        "view": {"granian": (view, None), "uvicorn": (view_uv, None)},
        "create": {
            "granian": ("/api/collections/posts/records", scripts["granian"]),
            "uvicorn": ("/api/collections/posts/records", scripts["uvicorn"]),
        },
    }
    print(
        "| endpoint | server | req/s | server CPU µs/request | server cores busy | p99 ms "
        "| context switches/request | CPU µs/request, each round |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for case, per in cases.items():
        if a.only and case not in a.only:
            continue
        got: dict[str, list[tuple[float, ...]]] = {"granian": [], "uvicorn": []}
        for i in range(a.rounds):
            order = ["granian", "uvicorn"] if i % 2 == 0 else ["uvicorn", "granian"]
            for name in order:
                base, pid = servers[name]
                path, script = per[name]
                got[name].append(run(base, pid, path, a.duration, script, a.connections))
        for name, runs in got.items():
            rps, cpu, cores, p99, cs = (statistics.median(r[i] for r in runs) for i in range(5))
            each = ", ".join(f"{r[1]:.0f}" for r in runs)
            print(
                f"| {case} | {name} | {rps:,.0f} | {cpu:.0f} | {cores:.2f} | {p99:.1f} | {cs:.1f} "
                f"| {each} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
