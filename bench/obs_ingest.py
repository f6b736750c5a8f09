#!/usr/bin/env python
"""Error-ingest benchmark: events per second that Shipyard stores (scrubbed, grouped,
counted) when the real `sentry-sdk`, with its default HTTP transport, reports to it.

A section of `bench/observability.py` (`section(args) -> str`, markdown); also runs alone:

    python bench/obs_ingest.py                       # 2 SDK processes x 2000 events, gzip and br
    python bench/obs_ingest.py --ingest-events 300   # quicker

One run per compression (gzip, br): starts Shipyard (1 worker, embedded SQLite, no event
quota), creates a project, starts `--ingest-clients` processes that each `init` the SDK
with the project's DSN and `capture_exception` `--ingest-events` real exceptions (a few
distinct code paths, so several issues), then `flush`. Measured from the clients' start to
the moment the issues' counts add up to every event sent: end-to-end stored events/s.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    BenchError,
    authenticate,
    pkg_version,
    start_shipyard,
    wait_healthy,
)

ALGOS = ("gzip", "br")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ingest-events", type=int, default=2000, help="events per SDK process")
    parser.add_argument("--ingest-clients", type=int, default=2, help="SDK processes at once")


def _client(dsn: str, n: int, algo: str) -> None:
    """One SDK process: `n` real exceptions through the default transport, then flush."""
    import sentry_sdk

    sentry_sdk.init(dsn=dsn, _experiments={"transport_compression_algo": algo},
                    transport_queue_size=n + 10)  # fmt: skip

    def a(i: int) -> None:
        raise ValueError(f"bad value {i}")

    def b(i: int) -> None:
        raise KeyError(i)

    def c(i: int) -> None:
        raise RuntimeError(f"job {i} failed")

    started = time.perf_counter()
    for i in range(n):
        try:
            (a, b, c)[i % 3](i)
        except Exception as exc:
            sentry_sdk.capture_exception(exc)
    sentry_sdk.flush(timeout=600)
    print(json.dumps({"seconds": time.perf_counter() - started}))


def _stored(base: str, headers: dict[str, str], project: int) -> int:
    r = httpx.get(f"{base}/api/errors", params={"project": project, "perPage": 500},
                  headers=headers, timeout=30)  # fmt: skip
    r.raise_for_status()
    return sum(int(i["count"]) for i in r.json()["items"])


def _run(algo: str, events: int, clients: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="shipyard-ingest-") as tmp:
        server = start_shipyard(Path(tmp), {"SHIPYARD_ERRORS_RATE_LIMIT": "0"})
        try:
            wait_healthy(server, 60)
            authenticate(server)
            headers = {"Authorization": server.token}
            r = httpx.post(f"{server.base}/api/errors/projects", json={"name": "bench"},
                           headers=headers, timeout=30)  # fmt: skip
            if r.status_code != 200:
                raise BenchError(f"creating the project failed: {r.status_code} {r.text}")
            project = r.json()
            total = events * clients
            t0 = time.perf_counter()
            cmd = [sys.executable, __file__, "--client", project["dsn"], str(events), algo]
            procs = []
            for _ in range(clients):
                procs.append(
                    subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                )
            flushes = []
            for proc in procs:
                out, err = proc.communicate(timeout=1800)
                if proc.returncode != 0:
                    raise BenchError(f"SDK client failed:\n{err[-2000:]}")
                flushes.append(json.loads(out.strip().splitlines()[-1])["seconds"])
            deadline = time.monotonic() + 300
            stored = _stored(server.base, headers, project["id"])
            while stored < total and time.monotonic() < deadline:
                time.sleep(0.2)
                stored = _stored(server.base, headers, project["id"])
            elapsed = time.perf_counter() - t0
            if stored != total:
                raise BenchError(f"{algo}: {stored} of {total} events stored")
            return {"algo": algo, "events": total, "seconds": elapsed,
                    "rate": total / elapsed, "client_max": max(flushes)}  # fmt: skip
        finally:
            server.stop()


def section(args: argparse.Namespace) -> str:
    events = int(getattr(args, "ingest_events", 2000))
    clients = int(getattr(args, "ingest_clients", 2))
    rows = [_run(algo, events, clients) for algo in ALGOS]
    lines = [
        "## Error ingest (real sentry-sdk transport)",
        "",
        f"{clients} processes running sentry-sdk {pkg_version('sentry-sdk')} (default HTTP "
        f"transport) each capture {events} real exceptions (3 code paths) and flush; Shipyard "
        "(1 worker, embedded SQLite, quota off) stores them: scrubbed, grouped into issues, "
        "counted. Time from the clients' start until every event is counted in its issue.",
        "",
        "| compression | events | seconds | stored events/s | slowest client's send+flush (s) |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(f"| {row['algo']} | {row['events']} | {row['seconds']:.1f} | "
                     f"{row['rate']:.0f} | {row['client_max']:.1f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--client":
        _client(sys.argv[2], int(sys.argv[3]), sys.argv[4])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown here")
    args = parser.parse_args()
    try:
        report = section(args)
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    if args.out:
        args.out.write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
