#!/usr/bin/env python
"""Backups benchmark: backup time, restore time and RTO, Shipyard vs PocketBase, on the same
data, for databases of about 100 MB and 1 GB (`--sizes`).

One run, per size:
  1. starts PocketBase (`pocketbase serve`) and Shipyard (`shipyard serve`, embedded SQLite)
     in fresh temporary directories and creates the same collection on both (the records
     benchmark's `items` plus a `body` text field of about 1 KB);
  2. stops both and fills each one's `items` table straight in its SQLite file with the
     same deterministic rows (loading a gigabyte through HTTP would take most of an hour),
     then starts both again on that data;
  3. backup: `POST /api/backups {"name": "bench.zip"}` (both answer once the archive is
     made; Shipyard's includes its verification: a scratch restore, the integrity check,
     the row counts), timed to the answer;
  4. a marker record is written after the backup; restore: `POST
     /api/backups/bench.zip/restore`, then reads until the marker is gone and the list
     answers with the backup's total. Restore time: to the POST's answer (Shipyard answers
     once restored; PocketBase at once, then restores and restarts itself). RTO: to that
     first read of the restored data;
  5. Shipyard only: `shipyard backup drill bench.zip` (restore into a scratch instance,
     start it, read every collection), its reported RTO.

Target (issue 15): RTO < 60 s for 1 GB. Needs free disk for about 6x the largest size.

    python bench/backups.py                       # 100MB and 1GB; writes bench/results/backups.md
    python bench/backups.py --sizes 20MB --smoke  # quick proof that it runs
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    COLLECTION,
    HERE,
    WORDS,
    BenchError,
    Server,
    authenticate,
    collection_body,
    create_collection,
    exit_cleanly_on_signals,
    find_exe,
    git_rev,
    machine_info,
    start_pocketbase,
    start_shipyard,
    wait_healthy,
)

ROW_BYTES = 1200  # about what one row takes in the file (body ~1 KB plus the rest)
TARGET_RTO_S = 60.0
TARGET_SIZE = 1024**3
STAMP = "2026-01-01 00:00:00.000Z"


def parse_size(text: str) -> int:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(KB|MB|GB)?", text.strip().upper())
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 100MB, 1GB)")
    unit = {"KB": 1024, "MB": 1024**2, "GB": 1024**3, None: 1}[m.group(2)]
    return int(float(m.group(1)) * unit)


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


@dataclass
class Result:
    server: str
    rows: int = 0
    db_bytes: int = 0
    archive_bytes: int = 0
    backup_s: float = 0.0
    restore_s: float = 0.0
    rto_s: float = 0.0
    drill: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def body_collection() -> dict[str, Any]:
    body = collection_body()
    body["fields"].insert(5, {"name": "body", "type": "text", "max": 5000})
    return body


def fill(db: Path, rows: int, seed: int = 7) -> None:
    """The same rows into either server's `items` table, in the shape each stores them."""
    rng = random.Random(seed)
    conn = sqlite3.connect(str(db))
    cols = [r[1] for r in conn.execute(f'PRAGMA table_info("{COLLECTION}")')]
    try:
        conn.execute("BEGIN")
        batch: list[tuple[Any, ...]] = []
        for i in range(rows):
            words = " ".join(rng.choice(WORDS) for _ in range(170))[:1000]
            rec = {
                "id": f"bk{i:013d}",
                "title": f"item {i}",
                "category": rng.choice(["c1", "c2", "c3", "c4", "c5"]),
                "price": round(rng.random() * 1000, 2),
                "active": int(rng.random() < 0.7),
                "tags": json.dumps(sorted(rng.sample(["red", "green", "blue"], 2))),
                "body": words,
                "created": STAMP,
                "updated": STAMP,
            }
            batch.append(tuple(rec.get(c, "") for c in cols))
            if len(batch) == 5000:
                _insert(conn, cols, batch)
                batch = []
        _insert(conn, cols, batch)
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def _insert(conn: sqlite3.Connection, cols: list[str], batch: list[tuple[Any, ...]]) -> None:
    if batch:
        names = ", ".join(f'"{c}"' for c in cols)
        marks = ", ".join("?" for _ in cols)
        conn.executemany(f'INSERT INTO "{COLLECTION}" ({names}) VALUES ({marks})', batch)


def db_bytes(server: Server) -> int:
    assert server.db_path is not None
    return sum(p.stat().st_size for p in server.db_path.parent.glob("data.db*") if p.is_file())


def _auth(server: Server) -> dict[str, str]:
    return {"Authorization": server.token}


def backup(server: Server, res: Result, timeout: float) -> None:
    t0 = time.monotonic()
    r = httpx.post(
        server.base + "/api/backups", json={"name": "bench.zip"}, headers=_auth(server),
        timeout=timeout,
    )  # fmt: skip
    res.backup_s = time.monotonic() - t0
    if r.status_code != 204:
        raise BenchError(f"{server.name}: backup failed: HTTP {r.status_code} {r.text}")
    listed = httpx.get(server.base + "/api/backups", headers=_auth(server), timeout=30).json()
    res.archive_bytes = next(int(i["size"]) for i in listed if i["key"] == "bench.zip")


def restore(server: Server, res: Result, rows: int, timeout: float) -> None:
    """Restore, then read until the restored data is served: the marker written after the
    backup is gone and the list counts the backup's rows."""
    url = f"{server.base}/api/collections/{COLLECTION}/records"
    r = httpx.post(url, json={"id": "markerafterbk01", "title": "after the backup"},
                   headers=_auth(server), timeout=30)  # fmt: skip
    if r.status_code != 200:
        raise BenchError(f"{server.name}: marker write failed: HTTP {r.status_code} {r.text}")
    t0 = time.monotonic()
    try:
        r = httpx.post(server.base + "/api/backups/bench.zip/restore", headers=_auth(server),
                       timeout=timeout)  # fmt: skip
        if r.status_code != 204:
            raise BenchError(f"{server.name}: restore failed: HTTP {r.status_code} {r.text}")
    except httpx.HTTPError as exc:  # PocketBase may restart under an open request
        res.notes.append(f"restore request: {exc!r}")
    res.restore_s = time.monotonic() - t0
    deadline = t0 + timeout
    with httpx.Client(timeout=5) as client:
        while time.monotonic() < deadline:
            try:
                gone = client.get(url + "/markerafterbk01").status_code == 404
                listed = client.get(url, params={"perPage": 1}) if gone else None
                served = listed is not None and listed.status_code == 200
                if served and listed.json().get("totalItems") == rows:  # type: ignore[union-attr]
                    res.rto_s = time.monotonic() - t0
                    return
            except httpx.HTTPError:
                pass  # restarting
            time.sleep(0.05)
    raise BenchError(f"{server.name}: restored data not served within {timeout:g} s")


def drill(server: Server, res: Result, timeout: float) -> None:
    env = dict(server.env)
    out = subprocess.run(
        [sys.executable, "-m", "shipyard.cli", "backup", "drill", "bench.zip"],
        env=env, cwd=server.workdir, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    if out.returncode != 0:
        raise BenchError(f"shipyard backup drill failed:\n{out.stdout}\n{out.stderr}")
    res.drill = json.loads(out.stdout)


def run_size(size: int, tmp: Path, timeout: float) -> list[Result]:
    rows = max(1000, size // ROW_BYTES)
    results = []
    for start in (start_pocketbase, start_shipyard):
        server = start(tmp)
        res = Result(server.name, rows=rows)
        try:
            wait_healthy(server, 60)
            authenticate(server)
            create_collection(server, body_collection())
            server.stop()
            assert server.db_path is not None
            t = time.monotonic()
            fill(server.db_path, rows)
            print(f"  {server.name}: {rows} rows filled in {time.monotonic() - t:.1f} s")
            server.start()
            wait_healthy(server, 120)
            authenticate(server)
            res.db_bytes = db_bytes(server)
            backup(server, res, timeout)
            restore(server, res, rows, timeout)
            if server.name == "Shipyard":
                authenticate(server)
                drill(server, res, timeout)
        finally:
            server.stop()
            shutil.rmtree(server.workdir, ignore_errors=True)
        print(f"  {server.name}: backup {res.backup_s:.1f} s, restore {res.restore_s:.1f} s, "
              f"RTO {res.rto_s:.1f} s")  # fmt: skip
        results.append(res)
    return results


def report(by_size: dict[int, list[Result]], smoke: bool, versions: dict[str, str]) -> str:
    m = machine_info()
    lines = [
        "# Backups: Shipyard vs PocketBase",
        "",
        (
            "**Smoke run** (a small size only, on a shared machine, to prove the script "
            "runs; not a measurement — the lead runs the full one on a quiet machine)."
            if smoke
            else "Full run."
        ),
        "",
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, commit {git_rev()}, "
        f"{m['nproc']} CPUs ({m['cpu']}), {m['mem']}, kernel {m['kernel']}; "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
        + ".",
        "",
        "Same rows in both (`items`, ~1 KB each, written straight into each SQLite file); one "
        "run each. Backup: `POST /api/backups` to its answer (Shipyard's includes the "
        "verification: a scratch restore and checks). Restore: `POST "
        "/api/backups/{key}/restore` to its answer (PocketBase answers at once, then "
        "restores and restarts). RTO: from the restore request to the first read that "
        "serves the restored data. Drill RTO: `shipyard backup drill`, from its start to the "
        "scratch instance's first successful read.",
        "",
        "| Size | Server | Rows | Database | Archive | Backup | Restore | RTO | Drill RTO |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for size, results in by_size.items():
        for r in results:
            drill_rto = r.drill.get("rto")
            lines.append(
                f"| {human(size)} | {r.server} | {r.rows} | {human(r.db_bytes)} | "
                f"{human(r.archive_bytes)} | {r.backup_s:.1f} s | {r.restore_s:.1f} s | "
                f"{r.rto_s:.1f} s | {'—' if drill_rto is None else f'{drill_rto:.1f} s'} |"
            )
            if r.server == "Shipyard" and size >= TARGET_SIZE:
                ok = r.rto_s < TARGET_RTO_S
                verdicts.append(f"{human(size)}: RTO {r.rto_s:.1f} s — "
                                f"{'meets' if ok else 'MISSES'} the target")  # fmt: skip
    lines += ["", f"Target: RTO < {TARGET_RTO_S:.0f} s for 1 GB."]
    lines += [f"- {v}" for v in verdicts] or [
        "- not measured in this run (no size of 1 GB or more)."
    ]
    notes = [f"- {r.server} {human(s)}: {n}" for s, rs in by_size.items() for r in rs
             for n in r.notes]  # fmt: skip
    if notes:
        lines += ["", "Notes:", *notes]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="100MB,1GB", help="comma-separated (default 100MB,1GB)")
    ap.add_argument("--out", default=str(HERE / "results" / "backups.md"))
    ap.add_argument("--smoke", action="store_true", help="mark the report as a smoke run")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per step")
    args = ap.parse_args()
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    exit_cleanly_on_signals()
    tmp = Path(tempfile.mkdtemp(prefix="bench-backups-"))
    by_size: dict[int, list[Result]] = {}
    versions: dict[str, str] = {}
    try:
        for size in sizes:
            print(f"size {human(size)}:")
            sub = tmp / f"s{size}"
            sub.mkdir()
            by_size[size] = run_size(size, sub, args.timeout)
        out = subprocess.run([find_exe("pocketbase"), "--version"], capture_output=True, text=True)
        versions["PocketBase"] = out.stdout.strip().split()[-1] if out.stdout else "?"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    text = report(by_size, args.smoke, versions)
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
