#!/usr/bin/env python
"""Realtime fan-out benchmark: Shipyard vs PocketBase, same client, same load.

One run, per server (PocketBase with its defaults; Shipyard, 1 process, embedded SQLite):
  1. starts it on a free loopback port in its own temporary directory and creates a public
     `items` collection (listRule "");
  2. opens `--subscribers` SSE connections to `/api/realtime` from one asyncio process
     (plain sockets, HTTP/1.1) and subscribes each to `items/*`;
  3. one writer creates `--events` records one after another through the API, as fast as
     the server answers (rate "max") or paced at a fixed rate (`--rates`: the same load
     for both servers, so latency is compared at equal work: at "max" the faster server
     also sends the client more events a second, and the client shares the machine);
     each record's title carries the time its POST was sent;
  4. every subscriber records when each event arrived; latency = arrival - POST sent (the
     write's own time included), events/s = delivered events ÷ the time from the first POST
     to the last delivery;
  5. checks that every subscriber got every event, in order, and writes a markdown report.

    python bench/realtime.py                         # 1,000 subscribers, 200 events, max and 15/s
    python bench/realtime.py --subscribers 200 --events 50 --out /tmp/rt.md
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    BenchError,
    Server,
    authenticate,
    exit_cleanly_on_signals,
    git_rev,
    machine_info,
    set_time_limit,
    start_pocketbase,
    start_shipyard,
    wait_healthy,
)

COLLECTION = "items"


class Subscriber:
    """One SSE connection: the arrival time of every `items/*` event, by record title."""

    def __init__(self) -> None:
        self.client_id = ""
        self.ready = asyncio.Event()
        self.arrivals: list[tuple[str, float]] = []
        self.writer: asyncio.StreamWriter | None = None
        self.retries = 0  # connects refused before this one was accepted

    async def run(self, host: str, port: int) -> None:
        while True:  # refused (503 under a connection burst): retry, as the SDK does
            reader, self.writer = await asyncio.open_connection(host, port)
            self.writer.write(
                f"GET /api/realtime HTTP/1.1\r\nHost: {host}:{port}\r\n"
                "Accept: text/event-stream\r\n\r\n".encode()
            )
            head = (await reader.readuntil(b"\r\n\r\n")).lower()
            if head.startswith(b"http/1.1 200"):
                break
            self.retries += 1
            self.writer.close()
            await asyncio.sleep(0.2)
        chunked = b"transfer-encoding: chunked" in head
        buf = b""
        while True:
            if chunked:  # the body's own framing, removed before the SSE parsing
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    return
                chunk = (await reader.readexactly(size + 2))[:-2]
            else:
                chunk = await reader.read(65536)
                if not chunk:
                    return
            buf += chunk
            while b"\n\n" in buf:
                block, buf = buf.split(b"\n\n", 1)
                self._event(block.decode(errors="replace"), time.monotonic())

    def _event(self, block: str, now: float) -> None:
        name = data = ""
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:]
            elif line.startswith("data:"):
                data = line[5:]
        if name == "PB_CONNECT":
            self.client_id = json.loads(data)["clientId"]
            self.ready.set()
        elif name == f"{COLLECTION}/*":
            self.arrivals.append((json.loads(data)["record"]["title"], now))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def measure(server: Server, subscribers: int, events: int, rate: float) -> dict[str, Any]:
    host, port = server.base.removeprefix("http://").split(":")
    subs = [Subscriber() for _ in range(subscribers)]
    tasks = [asyncio.create_task(s.run(host, int(port))) for s in subs]
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=server.base, timeout=60, limits=limits) as http:
        try:
            await asyncio.wait_for(asyncio.gather(*(s.ready.wait() for s in subs)), 120)
        except TimeoutError:
            ready = sum(s.ready.is_set() for s in subs)
            raise BenchError(f"{server.name}: {ready}/{subscribers} streams connected") from None
        sem = asyncio.Semaphore(32)

        async def subscribe(s: Subscriber) -> None:
            async with sem:
                r = await http.post(
                    "/api/realtime",
                    json={"clientId": s.client_id, "subscriptions": [f"{COLLECTION}/*"]},
                )
                if r.status_code != 204:
                    raise BenchError(f"{server.name}: subscribe answered {r.status_code}")

        await asyncio.gather(*(subscribe(s) for s in subs))
        sent: dict[str, float] = {}
        refused = 0
        start = time.monotonic()
        for i in range(events):
            if rate:  # paced: the i-th create is sent i/rate seconds after the first
                await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            title = f"e{i:06d}"
            sent[title] = time.monotonic()
            retries = 0
            while True:  # an overloaded server answers 503 + Retry-After: a client retries
                r = await http.post(f"/api/collections/{COLLECTION}/records", json={"title": title})
                if r.status_code != 503 or retries >= 50:
                    break
                retries += 1
                refused += 1
                await asyncio.sleep(0.05)
            if r.status_code != 200:
                raise BenchError(f"{server.name}: create answered {r.status_code}: {r.text}")
        writes_s = time.monotonic() - start
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(len(s.arrivals) < events for s in subs):
            await asyncio.sleep(0.05)
    for s in subs:
        s.close()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    delivered = sum(len(s.arrivals) for s in subs)
    in_order = all([t for t, _ in s.arrivals] == sorted(t for t, _ in s.arrivals) for s in subs)
    last = max((a for s in subs for _, a in s.arrivals), default=start)
    lat = sorted((a - sent[t]) * 1000 for s in subs for t, a in s.arrivals if t in sent)

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("nan")

    return {
        "server": server.name,
        "version": server.version,
        "rate": f"{rate:g}/s" if rate else "max",
        "subscribers": subscribers,
        "events": events,
        "delivered": delivered,
        "expected": subscribers * events,
        "in_order": in_order,
        "refused": refused,
        "connect_retries": sum(s.retries for s in subs),
        "writes_per_s": events / writes_s if writes_s else 0.0,
        "events_per_s": delivered / (last - start) if last > start else 0.0,
        "p50": pct(0.50),
        "p99": pct(0.99),
        "max": lat[-1] if lat else float("nan"),
    }


def prepare(server: Server) -> None:
    wait_healthy(server, 60)
    authenticate(server)
    r = httpx.post(
        server.base + "/api/collections",
        json={
            "name": COLLECTION,
            "type": "base",
            "listRule": "",
            "viewRule": "",
            "createRule": "",
            "fields": [{"name": "title", "type": "text"}],
        },
        headers={"Authorization": server.token},
        timeout=30,
    )
    if r.status_code != 200:
        raise BenchError(f"{server.name}: create collection failed: {r.status_code} {r.text}")


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    m = machine_info()
    lines = [
        "# Realtime fan-out: Shipyard vs PocketBase",
        "",
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, commit {git_rev()}, "
        f"{m['nproc']} CPUs ({m['cpu']}), {m['mem']}; client and servers on one machine.",
        f"`python bench/realtime.py --subscribers {args.subscribers} --events {args.events} "
        f"--rates {args.rates}`: "
        f"{args.subscribers} SSE subscribers on `items/*`, {args.events} creates one after "
        "another, as fast as the server answers (max) and paced at a fixed rate; latency = "
        "event arrival - POST sent (the write included).",
        "",
        "| server | pace | connects retried | delivered | in order | creates/s (503s retried) "
        "| events/s delivered | p50 | p99 | max |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['server']} ({r['version']}) | {r['rate']} | {r['connect_retries']} | "
            f"{r['delivered']}/{r['expected']} | "
            f"{'yes' if r['in_order'] else 'NO'} | {r['writes_per_s']:.0f} ({r['refused']}) | "
            f"{r['events_per_s']:.0f} | {r['p50']:.1f} ms | {r['p99']:.1f} ms | "
            f"{r['max']:.1f} ms |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--subscribers", type=int, default=1000)
    ap.add_argument("--events", type=int, default=200)
    ap.add_argument("--rates", default="max,15",
                    help="creates/s per run, comma-separated; max: as fast as answered")  # fmt: skip
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "realtime.md"))
    ap.add_argument("--only", choices=["shipyard", "pocketbase"], default=None)
    args = ap.parse_args()
    exit_cleanly_on_signals()
    set_time_limit(1200)
    results = []
    starters = {"pocketbase": start_pocketbase, "shipyard": start_shipyard}
    for name, start in starters.items():
        if args.only and name != args.only:
            continue
        tmp = Path(tempfile.mkdtemp(prefix=f"bench-rt-{name}-"))
        extra = {"SHIPYARD_REALTIME_MAX_CONNECTIONS": str(args.subscribers + 100)}
        server = start(tmp, extra) if name == "shipyard" else start(tmp)  # type: ignore[operator]
        try:
            prepare(server)
            for rate in args.rates.split(","):
                pace = 0.0 if rate.strip() == "max" else float(rate)
                results.append(asyncio.run(measure(server, args.subscribers, args.events, pace)))
        finally:
            server.stop()
    text = report(results, args)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
