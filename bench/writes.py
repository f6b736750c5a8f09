#!/usr/bin/env python
"""Write throughput: creates/s, updates/s and deletes/s (one record per request), and the
p99 of reads while writes run, PocketBase vs Shipyard with 1, 2 and N processes, on SQLite
(on granian, the default server, and on uvicorn) and on PostgreSQL, in one run.

Every configuration, one after the other, on a fresh data directory (or database):
  1. start the server, create bench/common.py's `items` collection, preload `--preload`
     records (the targets of updates and reads);
  2. reads alone: wrk GETs one preloaded record by id (a random one per request, no token;
     the collection's viewRule is public) -> the read p99 without writes;
  3. creates: wrk POSTs a new record per request (explicit ids, a superuser's token);
  4. creates + reads at once: both wrk runs side by side -> the read p99 under writes;
  5. updates: wrk PATCHes a random preloaded record per request;
  6. deletes: wrk DELETEs the records that exist (listed through the API first), one per
     request, in order; a run that exhausts them says so.
Every answer must be a 2xx. The server's CPU time per request comes from /proc (its process
and its workers), so it is comparable on a busy machine where requests/s are not.

    python bench/writes.py                             # 5 s runs, 8 connections, 1/2/N processes
    python bench/writes.py --duration 3 --max-procs 4 --pg-url postgresql://…/postgres
    python bench/writes.py --no-pg --out /tmp/writes.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
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
    db_url,
    exit_cleanly_on_signals,
    fmt_ms,
    git_rev,
    load_records,
    machine_info,
    make_records,
    parse_wrk,
    pg_admin,
    pg_reachable,
    process_cpu_s,
    set_time_limit,
    start_pocketbase,
    start_shipyard,
    wait_healthy,
    wrk_version,
)

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
PATH = f"/api/collections/{COLLECTION}/records"
NEW = {"title": "bench item", "category": "c1", "price": 1.5, "active": True, "tags": ["red"]}
PHASES = ("creates", "updates", "deletes")
UVICORN = "Shipyard (uvicorn)"  # SHIPYARD_HTTP_SERVER=uvicorn (docs/limits.md)

# --------------------------------------------------------------------------- wrk scripts

_COMMON = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function done(summary, latency, requests)
  for _, t in ipairs(threads) do io.write("issued " .. tostring(t:get("issued")) .. "\\n") end
end
issued = 0
"""


def lua_ids(ids: list[str]) -> str:
    return "{" + ",".join(f'"{i}"' for i in ids) + "}"


def lua_create(token: str, prefix: str) -> str:
    """POST a new record per request; ids `prefix` + a counter (15 characters, as PocketBase
    wants), so deletes can find them later."""
    body = orjson.dumps(NEW).decode()[1:]  # '"title":…}' after the id
    return (
        _COMMON
        + f"""
local hdr = {{["Content-Type"] = "application/json", ["Authorization"] = "{token}"}}
request = function()
  issued = issued + 1
  local id = string.format("{prefix}%0{15 - len(prefix)}d", issued)
  return wrk.format("POST", "{PATH}", hdr, '{{"id":"' .. id .. '",' .. [==[{body}]==])
end
"""
    )


def lua_update(token: str, ids: list[str]) -> str:
    return (
        _COMMON
        + f"""
local hdr = {{["Content-Type"] = "application/json", ["Authorization"] = "{token}"}}
local ids = {lua_ids(ids)}
request = function()
  issued = issued + 1
  local id = ids[math.random(#ids)]
  local body = '{{"price":' .. (issued % 1000) .. ',"title":"updated ' .. issued .. '"}}'
  return wrk.format("PATCH", "{PATH}/" .. id, hdr, body)
end
"""
    )


def lua_delete(token: str, ids: list[str]) -> str:
    return (
        _COMMON
        + f"""
local hdr = {{["Authorization"] = "{token}"}}
local ids = {lua_ids(ids)}
request = function()
  issued = issued + 1
  local id = ids[issued] or "zzzzzzzzzzzzzzz"
  return wrk.format("DELETE", "{PATH}/" .. id, hdr)
end
"""
    )


def lua_read(ids: list[str]) -> str:
    return (
        _COMMON
        + f"""
local ids = {lua_ids(ids)}
request = function()
  issued = issued + 1
  return wrk.format("GET", "{PATH}/" .. ids[math.random(#ids)])
end
"""
    )


@dataclass
class Run:
    wrk: WrkResult
    issued: int
    cpu_s: float  # the server's CPU seconds during the run
    wall_s: float

    @property
    def ok(self) -> int:
        return self.wrk.requests - self.wrk.non2xx

    @property
    def cpu_ms_per_ok(self) -> float:
        return self.cpu_s * 1000 / max(self.ok, 1)


def start_wrk(
    script: Path, url: str, args: argparse.Namespace
) -> tuple[subprocess.Popen[str], str]:
    cmd = ["wrk", "-t1", f"-c{args.connections}", f"-d{args.duration}s", "--latency",
           "--timeout", "10s", "-s", str(script), url]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, shlex.join(cmd)


def finish_wrk(proc: subprocess.Popen[str], cmd: str, timeout: float) -> tuple[WrkResult, int]:
    out, err = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise BenchError(f"wrk failed: {cmd}\n{out}\n{err}")
    issued = sum(int(line.split()[1]) for line in out.splitlines() if line.startswith("issued "))
    return parse_wrk(out, cmd), issued


def run_wrk(
    server: Server, tmp: Path, name: str, lua: str, args: argparse.Namespace, along: str = ""
) -> tuple[Run, Run | None]:
    """One wrk run of `lua` (and, if `along` is a script, a second one beside it), with the
    server's CPU time measured over it."""
    script = tmp / f"{name}.lua"
    script.write_text(lua)
    pids = server.pids()
    cpu0, t0 = process_cpu_s(pids), time.monotonic()
    proc, cmd = start_wrk(script, server.base + PATH, args)
    other = None
    if along:
        other_script = tmp / f"{name}-along.lua"
        other_script.write_text(along)
        other = start_wrk(other_script, server.base + PATH, args)
    sampler = threading.Thread(target=server.sample_memory, daemon=True)
    sampler.start()
    res, issued = finish_wrk(proc, cmd, args.duration + 60)
    other_res = finish_wrk(*other, args.duration + 60) if other else None
    cpu_s, wall = process_cpu_s(pids) - cpu0, time.monotonic() - t0
    first = Run(res, issued, cpu_s, wall)
    second = Run(other_res[0], other_res[1], cpu_s, wall) if other_res else None
    return first, second


def existing_ids(server: Server) -> list[str]:
    ids: list[str] = []
    page = 1
    with httpx.Client(timeout=60, headers={"Authorization": server.token}) as client:
        while True:
            q = {"fields": "id", "perPage": 500, "page": page, "sort": "id", "skipTotal": 1}
            r = client.get(server.base + PATH, params=q)
            if r.status_code != 200:
                raise BenchError(f"{server.name}: listing ids: HTTP {r.status_code} {r.text}")
            items = r.json()["items"]
            ids += [i["id"] for i in items]
            if len(items) < 500:
                return ids
            page += 1


# --------------------------------------------------------------------------- configurations


@dataclass
class Config:
    label: str
    system: str  # PocketBase | Shipyard
    engine: str  # SQLite | PostgreSQL
    procs: int
    results: dict[str, Run] = field(default_factory=dict)
    stored: int = 0
    notes: list[str] = field(default_factory=list)
    error: str = ""
    cmd: str = ""


def start(cfg: Config, tmp: Path, pg_url: str | None) -> tuple[Server, str | None]:
    if cfg.system == "PocketBase":
        return start_pocketbase(tmp), None
    env = {"SHIPYARD_WORKERS": str(cfg.procs)}
    if cfg.system == UVICORN:
        env["SHIPYARD_HTTP_SERVER"] = "uvicorn"
    dbname = None
    if cfg.engine == "PostgreSQL":
        assert pg_url is not None  # configs with PostgreSQL only when it is there
        dbname = f"bench_writes_{cfg.procs}_{uuid.uuid4().hex[:8]}"
        pg_admin(pg_url, f'CREATE DATABASE "{dbname}"')
        env["SHIPYARD_DATABASE_URL"] = db_url(pg_url, dbname)
    return start_shipyard(tmp, env), dbname


def measure(cfg: Config, server: Server, tmp: Path, args: argparse.Namespace) -> None:
    wait_healthy(server, 90)
    authenticate(server)
    create_collection(server)
    load_records(server, make_records(args.preload), threads=8)
    targets = [r["id"] for r in make_records(args.preload)]
    tok = server.token
    cfg.results["reads"], _ = run_wrk(server, tmp, "reads", lua_read(targets), args)
    cfg.results["creates"], _ = run_wrk(server, tmp, "creates", lua_create(tok, "wa"), args)
    both = run_wrk(server, tmp, "mixed", lua_create(tok, "wb"), args, along=lua_read(targets))
    cfg.results["creates+reads"], cfg.results["reads+creates"] = both[0], both[1]  # type: ignore[assignment]
    cfg.results["updates"], _ = run_wrk(server, tmp, "updates", lua_update(tok, targets), args)
    ids = existing_ids(server)
    cfg.stored = len(ids)
    cfg.results["deletes"], _ = run_wrk(server, tmp, "deletes", lua_delete(tok, ids), args)
    if cfg.results["deletes"].issued > len(ids):
        cfg.notes.append(f"deletes ran out of records ({len(ids):,} existed): 404s counted")
    for name, run in cfg.results.items():
        bad = run.wrk.non2xx - (max(run.issued - len(ids), 0) if name == "deletes" else 0)
        if bad > 0 or run.wrk.socket_errors:
            raise BenchError(f"{cfg.label} {name}: {run.wrk.non2xx} non-2xx, "
                             f"{run.wrk.socket_errors or 'no socket errors'}")  # fmt: skip


# --------------------------------------------------------------------------- report


def report(configs: list[Config], args: argparse.Namespace, facts: dict[str, str]) -> str:
    m = machine_info()
    lines = [
        "# Writes: creates, updates, deletes; reads under writes",
        "",
        f"`{facts['cmdline']}` on {dt.date.today()}, commit {git_rev()}; {m['nproc']} CPUs "
        f"({m['cpu']}), {m['mem']}, {wrk_version()}; PostgreSQL: {facts['pg']}.",
        "",
        f"**Load average {facts['load_start']} at the start and {facts['load_end']} at the end** "
        f"of the run, on {m['nproc']} cores. Other work shared the machine, so requests/s are "
        "low and noisy; *server CPU per request* (the server's processes' CPU time from /proc "
        "over the run, divided by the 2xx answers) is the figure that compares across rows "
        "on a busy machine (for PostgreSQL rows it leaves out PostgreSQL's own processes). "
        "Re-run on a quiet machine for figures to quote.",
        "",
        f"wrk: one thread, {args.connections} connections, {args.duration} s per run, one "
        f"record per request; {args.preload:,} preloaded records are the targets of updates "
        "and reads; deletes remove the records that exist, in id order. Reads are "
        "`GET …/records/:id` of a random preloaded record, without a token (public viewRule).",
        "",
        "| server | engine | procs | op | req/s | p50 / p99 | server CPU / req |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in configs:
        if c.error:
            lines.append(f"| {c.system} | {c.engine} | {c.procs} | FAILED: {c.error[:200]} "
                         "| | | |")  # fmt: skip
            continue
        for op in PHASES:
            r = c.results[op]
            lines.append(
                f"| {c.system} | {c.engine} | {c.procs} | {op} | {r.ok / args.duration:,.0f} | "
                f"{fmt_ms(r.wrk.p50_ms)} / {fmt_ms(r.wrk.p99_ms)} | {r.cpu_ms_per_ok:.2f} ms |"
            )
    lines += [
        "",
        "Reads while creates run (both wrk runs at once; CPU is the server's for both):",
        "",
        "| server | engine | procs | reads alone: req/s, p50 / p99 | reads under creates: "
        "req/s, p50 / p99 | creates meanwhile/s |",
        "|---|---|---|---|---|---|",
    ]
    for c in configs:
        if c.error:
            continue
        a, b, w = c.results["reads"], c.results["reads+creates"], c.results["creates+reads"]
        lines.append(
            f"| {c.system} | {c.engine} | {c.procs} | {a.ok / args.duration:,.0f}, "
            f"{fmt_ms(a.wrk.p50_ms)} / {fmt_ms(a.wrk.p99_ms)} | {b.ok / args.duration:,.0f}, "
            f"{fmt_ms(b.wrk.p50_ms)} / {fmt_ms(b.wrk.p99_ms)} | {w.ok / args.duration:,.0f} |"
        )
    notes = [f"- {c.label}: {n}" for c in configs for n in c.notes]
    if notes:
        lines += ["", "Notes:", "", *notes]
    lines += ["", "## Servers", ""]
    for c in configs:
        lines.append(f"- {c.label}: `{c.cmd}`")
    lines += ["", "## Raw wrk output (creates, per configuration)", ""]
    for c in configs:
        if "creates" in c.results:
            w = c.results["creates"].wrk
            lines += [f"{c.label}, `{w.cmd}`:", "", "```", w.raw.strip(), "```", ""]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    ap.add_argument("--connections", type=int, default=8, help="wrk connections per run")
    ap.add_argument("--max-procs", type=int, default=os.cpu_count() or 2,
                    help="N of Shipyard's 1, 2 and N processes (default: the CPU count)")  # fmt: skip
    ap.add_argument("--preload", type=int, default=1000, help="records before the runs")
    ap.add_argument("--pg-url", default=DEFAULT_PG,
                    help=f"PostgreSQL admin URL (default {DEFAULT_PG}); not reachable: a "
                    "throwaway pgserver")  # fmt: skip
    ap.add_argument("--no-pg", action="store_true", help="SQLite only")
    ap.add_argument("--no-uvicorn", action="store_true",
                    help="skip Shipyard on uvicorn (SHIPYARD_HTTP_SERVER=uvicorn, SQLite)")  # fmt: skip
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "writes.md"))
    args = ap.parse_args()
    exit_cleanly_on_signals()
    set_time_limit(1800)
    load = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    facts = {"cmdline": "python " + shlex.join(["bench/writes.py", *sys.argv[1:]]),
             "load_start": load, "pg": "not measured (--no-pg)"}  # fmt: skip
    procs = sorted({1, 2, args.max_procs})
    configs = [Config("PocketBase", "PocketBase", "SQLite", 1)]
    configs += [Config(f"Shipyard SQLite x{n}", "Shipyard", "SQLite", n) for n in procs]
    if not args.no_uvicorn:
        configs += [Config(f"{UVICORN} SQLite x{n}", UVICORN, "SQLite", n) for n in procs]
    cleanups: list[Any] = []
    pg_url: str | None = None
    try:
        if not args.no_pg:
            if pg_reachable(args.pg_url):
                pg_url, facts["pg"] = args.pg_url, f"the server at `{args.pg_url}`"
            else:
                import pgserver  # type: ignore[import-not-found]

                pgdir = tempfile.mkdtemp(prefix="bench-writes-pg-")
                print(f"{args.pg_url} not reachable: starting pgserver in {pgdir}")
                srv = pgserver.get_server(pgdir, cleanup_mode="stop")
                cleanups += [srv.cleanup, lambda: shutil.rmtree(pgdir, ignore_errors=True)]
                pg_url, facts["pg"] = srv.get_uri(), "a throwaway `pgserver` (PyPI)"
            configs += [Config(f"Shipyard PostgreSQL x{n}", "Shipyard", "PostgreSQL", n)
                        for n in procs]  # fmt: skip
        for cfg in configs:
            print(f"== {cfg.label}", file=sys.stderr, flush=True)
            with tempfile.TemporaryDirectory(prefix="bench-writes-") as d:
                tmp = Path(d)
                server, dbname = start(cfg, tmp, pg_url)
                cfg.cmd = server.serve_cmd
                try:
                    measure(cfg, server, tmp, args)
                    c = cfg.results["creates"]
                    print(f"   creates {c.ok / args.duration:,.0f}/s, "
                          f"{c.cpu_ms_per_ok:.2f} ms CPU each", file=sys.stderr)  # fmt: skip
                except BenchError as exc:
                    cfg.error = str(exc)
                    print(f"   FAILED: {exc}", file=sys.stderr)
                finally:
                    server.stop()
                    if dbname and pg_url:
                        pg_admin(pg_url, f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    finally:
        for fn in cleanups:
            fn()
    facts["load_end"] = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    text = report(configs, args, facts)
    Path(args.out).write_text(text)
    print(text)
    return 1 if any(c.error for c in configs) else 0


if __name__ == "__main__":
    sys.exit(main())
