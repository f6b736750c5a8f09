"""Shared parts of the benchmarks: start/stop PocketBase and Shipyard side by side, the
benchmark collection and its deterministic records, wrk runs with CPU accounting from /proc,
memory peaks, and machine facts for the reports.

Used by `records.py` (records API, query path), `cache.py` (response cache, growth), `files.py`
(downloads, thumbnails) and others.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
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
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
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
    # port -> (process, command text): how to (re)start the server on its data directory
    spawn: Callable[[int], tuple[subprocess.Popen[bytes], str]] | None = None
    db_path: Path | None = None  # the SQLite file that holds the records
    # the environment `spawn` starts Shipyard with: change it (e.g. SHIPYARD_WORKERS), then
    # `start()` again on the same data directory (bench/files.py)
    env: dict[str, str] = field(default_factory=dict)

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

    def start(self) -> None:
        """(Re)start on the same data directory and a fresh free port; memory peaks restart
        from zero with the new processes. Does not wait for health."""
        if self.spawn is None:
            raise BenchError(f"{self.name}: cannot be restarted")
        self.stop()
        port = free_port()
        self.proc, self.serve_cmd = self.spawn(port)
        self.base = f"http://127.0.0.1:{port}"
        self.peaks = {}


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


def _popen(
    cmd: list[str], cwd: Path, log_path: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    # own session: stop() kills the whole process group (granian's workers included)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, cwd=cwd, env=env, start_new_session=True
        )


def start_pocketbase(tmp: Path) -> Server:
    exe = find_exe("pocketbase")
    version = run_checked([exe, "--version"])
    workdir = tmp / "pocketbase"
    workdir.mkdir()
    data = workdir / "pb_data"
    setup = [exe, "superuser", "upsert", EMAIL, PASSWORD, "--dir", str(data)]
    run_checked(setup)
    log_path = workdir / "server.log"

    def spawn(port: int) -> tuple[subprocess.Popen[bytes], str]:
        cmd = [exe, "serve", "--http", f"127.0.0.1:{port}", "--dir", str(data)]
        return _popen(cmd, workdir, log_path), shlex.join(cmd)

    port = free_port()
    proc, cmd_text = spawn(port)
    return Server(
        "PocketBase",
        f"http://127.0.0.1:{port}",
        proc,
        workdir,
        log_path,
        version,
        cmd_text,
        [shlex.join(setup)],
        spawn=spawn,
        db_path=data / "data.db",
    )


def start_shipyard(tmp: Path, extra_env: dict[str, str] | None = None) -> Server:
    exe = find_exe("shipyard")
    version = "shipyard " + importlib.metadata.version("shipyard")
    workdir = tmp / "shipyard"
    workdir.mkdir()
    data = workdir / "data"
    base_env = {**os.environ, "SHIPYARD_DATA_DIR": str(data), "SHIPYARD_WORKERS": "1"}
    base_env.pop("SHIPYARD_DATABASE_URL", None)  # embedded SQLite, whatever the caller's shell
    base_env.pop("SHIPYARD_CONFIG", None)
    base_env.pop("SHIPYARD_REDIS_URL", None)
    # off unless a benchmark turns it on (bench/ratelimit.py): wrk's one address would
    # be refused past the default rules, and PocketBase's limiter is off by default too
    base_env["SHIPYARD_RATELIMIT_ENABLED"] = "false"
    base_env.update(extra_env or {})

    def env_for(port: int) -> tuple[dict[str, str], str]:
        env = {**base_env, "SHIPYARD_PORT": str(port)}
        workers = base_env["SHIPYARD_WORKERS"]
        rest = "".join(f" {k}={v}" for k, v in (extra_env or {}).items() if k != "SHIPYARD_WORKERS")
        return (
            env,
            f"SHIPYARD_DATA_DIR={data} SHIPYARD_PORT={port} SHIPYARD_WORKERS={workers}{rest}",
        )

    setup = [exe, "superuser", "upsert", EMAIL, PASSWORD]
    port = free_port()
    env, env_txt = env_for(port)
    # cwd=workdir so no stray shipyard.toml from the caller's directory is picked up
    proc_setup = subprocess.run(
        setup, env=env, cwd=workdir, capture_output=True, text=True, timeout=120
    )
    if proc_setup.returncode != 0:
        raise BenchError(f"shipyard superuser upsert failed:\n{proc_setup.stderr}")
    log_path = workdir / "server.log"

    def spawn(port: int) -> tuple[subprocess.Popen[bytes], str]:
        env, env_txt = env_for(port)
        cmd = [exe, "serve"]
        return _popen(cmd, workdir, log_path, env), f"{env_txt} {shlex.join(cmd)}"

    proc, cmd_text = spawn(port)
    return Server(
        "Shipyard",
        f"http://127.0.0.1:{port}",
        proc,
        workdir,
        log_path,
        version,
        cmd_text,
        [f"{env_txt} {shlex.join(setup)}"],
        spawn=spawn,
        db_path=data / "data.db",
        env=base_env,
    )


# --------------------------------------------------------------------------- PostgreSQL


def db_url(admin_url: str, name: str) -> str:
    base, _, query = admin_url.partition("?")
    return base.rsplit("/", 1)[0] + "/" + name + ("?" + query if query else "")


def pg_reachable(url: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=3, autocommit=True) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def pg_admin(url: str, sql: str) -> Any:
    import psycopg

    with psycopg.connect(url, connect_timeout=10, autocommit=True) as conn:
        cur = conn.execute(sql.encode())
        return cur.fetchone() if cur.description else None


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


def create_collection(server: Server, body: dict[str, Any] | None = None) -> None:
    """Create `body` (the records benches' `items` collection by default) on `server`."""
    r = httpx.post(
        server.base + "/api/collections",
        json=collection_body() if body is None else body,
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


def context_switches(pids: list[int]) -> int:
    """Voluntary context switches of every thread of `pids` so far: a thread that waits
    (for the GIL, a lock, I/O) and is woken again counts one."""
    total = 0
    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{pid}/task/{tid}/status") as f:
                    for line in f:
                        if line.startswith("voluntary_ctxt_switches:"):
                            total += int(line.split()[1])
            except (OSError, ValueError):
                pass
    return total


def children_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)  # waited children, i.e. wrk
    return ru.ru_utime + ru.ru_stime


def measured_wrk(
    server: Server,
    url: str,
    duration: str,
    headers: Sequence[str] = (),
    timeout: str | None = None,
) -> tuple[str, str, dict[str, float]]:
    """Run wrk and account where the CPU went: server, wrk, this script (its writer and probe
    threads, if any), anything else on the machine."""
    pids = server.pids()
    t0, busy0, srv0 = time.monotonic(), system_busy_s(), process_cpu_s(pids)
    wrk0, self0 = children_cpu_s(), time.process_time()
    raw, cmd = wrk(url, duration, headers=headers, timeout=timeout)
    t1, busy1, srv1 = time.monotonic(), system_busy_s(), process_cpu_s(pids)
    wrk1, self1 = children_cpu_s(), time.process_time()
    capacity = (t1 - t0) * (os.cpu_count() or 1)
    server_s, wrk_s, self_s = srv1 - srv0, wrk1 - wrk0, self1 - self0
    other_s = max(busy1 - busy0 - server_s - wrk_s - self_s, 0.0)
    cpu = {
        "server": server_s / capacity,
        "wrk": wrk_s / capacity,
        "bench": self_s / capacity,
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


def wrk(
    url: str,
    duration: str,
    latency: bool = True,
    headers: Sequence[str] = (),
    timeout: str | None = None,
) -> tuple[str, str]:
    """One wrk run (-t2 -c64); `timeout` is wrk's per-request timeout (its default is 2s:
    slower responses are dropped from the latency histogram and counted as timeouts)."""
    cmd = ["wrk", "-t2", "-c64", f"-d{duration}"]
    for h in headers:
        cmd += ["-H", h]
    if timeout:
        cmd += ["--timeout", timeout]
    cmd += (["--latency"] if latency else []) + [url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise BenchError(f"wrk failed: {shlex.join(cmd)}\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout, shlex.join(cmd)


def wrk_version() -> str:
    out = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10).stdout
    return (out.splitlines() or ["wrk ?"])[0].split(" [")[0].strip()


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
    """The checked-out commit, read from .git directly: the benchmark never runs git (a
    `git status` can take the index lock while someone else commits)."""
    git = ROOT / ".git"
    try:
        if git.is_file():  # a worktree: `gitdir: …`; its refs live in the common directory
            git = Path(git.read_text().split(":", 1)[1].strip())
            head = (git / "HEAD").read_text().strip()
            git = (git / (git / "commondir").read_text().strip()).resolve()
        else:
            head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head[:7]
        ref = head[5:]
        if (git / ref).exists():
            return (git / ref).read_text().strip()[:7]
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0][:7]
    except OSError:
        pass
    return "?"


def pkg_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def fmt_ms(v: float) -> str:
    return f"{v:.2f} ms" if v < 100 else f"{v:.0f} ms"


def exit_cleanly_on_signals() -> None:
    """SIGTERM/SIGHUP end the run like Ctrl-C does, so `finally` blocks stop the servers."""

    def handler(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)


def set_time_limit(seconds: int) -> None:
    """Abort the whole run (servers are still stopped by the caller's `finally`) if it takes
    longer than this: a hung server or wrk must not keep the machine busy forever."""

    def handler(_signum: int, _frame: Any) -> None:
        raise BenchError(f"time limit of {seconds}s exceeded")

    signal.signal(signal.SIGALRM, handler)
    signal.alarm(seconds)
