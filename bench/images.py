#!/usr/bin/env python
"""Image library benchmark: Pillow (what shipyard.images uses) vs pyvips (libvips, from the
`pyvips-binary` wheel) making the same thumbnails of the same 20 generated images.

One run:
  1. generates 20 images (no downloads): 8 photo-like JPEGs from 1200x800 to 4000x3000,
     6 PNGs (graphics with transparency), 4 WebPs and 2 animated GIFs, as an app's uploads;
  2. for each library and output format (PocketBase's: JPEG for JPEG, GIF for GIF, else PNG;
     WebP; AVIF) starts a fresh worker process that reads the 20 files, then makes the
     `100x100` (PocketBase's default) and `640x0` (a responsive width) thumbnail of each,
     `--repeat` times, one after the other on one thread (libvips with VIPS_CONCURRENCY=1:
     Shipyard's ThumbnailPool supplies the parallelism);
  3. reports thumbnails per second and per CPU-second (best repeat; the CPU figure is the
     steadier one on a shared machine), total bytes out, and the worker's peak
     RSS above its RSS after start-up and reading the files (VmHWM), as markdown.

    python bench/images.py                # writes bench/results/images.md
    python bench/images.py --repeat 1 --out /tmp/images.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import ROOT, git_rev, machine_info, pkg_version

SPECS = ["100x100", "640x0"]
FORMATS = ["pocketbase", "webp", "avif"]
LIBRARIES = ["pillow", "pyvips"]
SUFFIX = {"jpg": "jpeg", "png": "png", "webp": "webp", "gif": "gif"}


# --------------------------------------------------------------------------- the images


def generate(directory: Path) -> list[Path]:
    sys.path.insert(0, str(ROOT / "src"))
    from PIL import Image, ImageDraw

    from shipyard.images.demo import demo_image

    rng = random.Random(7)
    paths: list[Path] = []

    def save(im: Image.Image, name: str, fmt: str, **options: Any) -> None:
        path = directory / name
        im.save(path, fmt, **options)
        paths.append(path)

    def photo(i: int, w: int, h: int) -> Image.Image:
        grain = Image.effect_noise((w, h), 40).convert("RGB")
        return Image.blend(demo_image(i, w, h), grain, 0.18)

    sizes = [(1200, 800), (1600, 1200), (2000, 1333), (3000, 2000), (4000, 3000)]
    for i in range(8):
        w, h = sizes[i % len(sizes)]
        im = photo(i, w, h) if i % 3 else photo(i, h, w)  # some portrait
        save(im, f"photo{i}.jpg", "JPEG", quality=88)
    for i in range(6):
        w, h = rng.choice([(1000, 1000), (1600, 900), (1280, 2000)])
        im = Image.new("RGBA", (w, h), (0, 0, 0, 0))
        draw = ImageDraw.Draw(im)
        for _ in range(40):
            x, y, r = rng.randrange(w), rng.randrange(h), rng.randrange(20, 200)
            colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256), 220)
            draw.rounded_rectangle((x - r, y - r // 2, x + r, y + r // 2), r // 4, fill=colour)
        save(im, f"graphic{i}.png", "PNG")
    for i in range(4):
        save(photo(10 + i, 1600, 1066), f"webp{i}.webp", "WEBP", quality=85)
    for i in range(2):
        frames = [demo_image(20 + i + k, 480, 360).quantize(128) for k in range(4)]
        save(frames[0], f"anim{i}.gif", "GIF", save_all=True, append_images=frames[1:], loop=0)
    return paths


# --------------------------------------------------------------------------- the workers


def pocketbase_format(path: Path) -> str:
    kind = SUFFIX[path.suffix[1:]]
    return kind if kind in ("jpeg", "gif") else "png"


def pillow_thumbnailer() -> Any:
    sys.path.insert(0, str(ROOT / "src"))
    from shipyard.images import thumbnail

    return lambda data, spec, fmt: thumbnail(data, spec, fmt)


def vips_thumbnailer() -> Any:
    import pyvips

    crop = {"100x100": dict(height=100, crop="centre"), "640x0": dict(height=10_000_000)}
    save = {
        "jpeg": ".jpg[Q=85,optimize_coding=true,keep=icc]",
        "png": ".png[keep=icc]",
        "gif": ".gif",
        "webp": ".webp[Q=80,keep=icc]",
        "avif": ".avif[Q=50,effort=1,keep=icc]",  # effort 1 = libavif speed 8, as Pillow's
    }

    def make(data: bytes, spec: str, fmt: str) -> bytes:
        width = int(spec.split("x")[0])
        im = pyvips.Image.thumbnail_buffer(data, width, **crop[spec])
        return bytes(im.write_to_buffer(save[fmt]))

    return make


def worker(library: str, fmt: str, directory: Path, repeat: int) -> dict[str, Any]:
    make = pillow_thumbnailer() if library == "pillow" else vips_thumbnailer()
    sources = [(p, p.read_bytes()) for p in sorted(directory.iterdir())]
    base_kb = _hwm_kb()
    best = best_cpu = float("inf")
    total = 0
    for _ in range(repeat):
        total = 0
        start, start_cpu = time.perf_counter(), time.process_time()
        for path, data in sources:
            out_fmt = pocketbase_format(path) if fmt == "pocketbase" else fmt
            for spec in SPECS:
                total += len(make(data, spec, out_fmt))
        best = min(best, time.perf_counter() - start)
        best_cpu = min(best_cpu, time.process_time() - start_cpu)
    count = len(sources) * len(SPECS)
    peak_kb = _hwm_kb()
    return {
        "library": library,
        "format": fmt,
        "count": count,
        "seconds": best,
        "per_second": count / best,
        "cpu_seconds": best_cpu,
        "per_cpu_second": count / best_cpu,
        "bytes": total,
        "base_mib": base_kb / 1024,
        "peak_above_base_mib": (peak_kb - base_kb) / 1024,
    }


def _hwm_kb() -> int:
    """This process's peak RSS (VmHWM: unlike ru_maxrss, not inherited across fork+exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def _rev() -> str:
    """The commit, also in a git worktree (where .git is a file common.git_rev cannot read)."""
    rev = git_rev()
    if rev != "?":
        return rev
    out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=7", "HEAD"],
                         capture_output=True, text=True, check=False)  # fmt: skip
    return out.stdout.strip() or "?"


def run_worker(library: str, fmt: str, directory: Path, repeat: int) -> dict[str, Any]:
    env = {**os.environ, "VIPS_CONCURRENCY": "1"}
    cmd = [sys.executable, __file__, "--worker", library, "--format", fmt, "--dir", str(directory)]
    out = subprocess.run(
        [*cmd, "--repeat", str(repeat)], env=env, check=True, capture_output=True, text=True
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


# --------------------------------------------------------------------------- the report


def render(
    results: list[dict[str, Any]], sources: list[Path], repeat: int, load: tuple[float, ...]
) -> str:
    info = machine_info()
    by = {(r["library"], r["format"]): r for r in results}
    lines = [
        "# Image library benchmark: Pillow vs pyvips",
        "",
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, commit {_rev()}, "
        f"{info['nproc']} CPUs ({info['cpu']}), {info['mem']}; Pillow {pkg_version('pillow')}, "
        f"pyvips {pkg_version('pyvips')} with libvips {pkg_version('pyvips-binary')} "
        "(pyvips-binary). Load average at the start: "
        + " ".join(f"{x:.1f}" for x in load)
        + " (the machine is shared: compare the rows of one run, not runs).",
        "",
        f"{len(sources)} generated images ({_mib(sum(p.stat().st_size for p in sources))} in all: "
        "8 photo-like JPEGs 1200x800 to 4000x3000, 6 PNGs with transparency, 4 WebPs, 2 "
        f"animated GIFs); the `{'` and `'.join(SPECS)}` thumbnail of each, one thread, best of "
        f"{repeat}. `pocketbase`: the format PocketBase writes (JPEG for JPEG, GIF for GIF, "
        "PNG for everything else, WebP included).",
        "",
        "| library | format | thumbnails/s | per CPU-second | bytes out | vs PocketBase's format "
        "| peak RSS above start |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for lib in LIBRARIES:
        for fmt in FORMATS:
            r = by[(lib, fmt)]
            ratio = r["bytes"] / by[(lib, "pocketbase")]["bytes"]
            lines.append(
                f"| {lib} | {fmt} | {r['per_second']:.1f} | {r['per_cpu_second']:.1f} | "
                f"{r['bytes']:,} | {ratio:.2f} | "
                f"{r['peak_above_base_mib']:.1f} MiB |"
            )
    lines += [
        "",
        "Command: `python bench/images.py"
        + (f" --repeat {repeat}" if repeat != 3 else "")
        + "`. Raw results:",
        "",
        "```json",
        json.dumps(results, indent=1),
        "```",
        "",
    ]
    return "\n".join(lines)


def _mib(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "images.md")
    parser.add_argument("--worker", choices=LIBRARIES)
    parser.add_argument("--format", choices=FORMATS)
    parser.add_argument("--dir", type=Path)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.format, args.dir, args.repeat)))
        return
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-images-") as tmp:
        sources = generate(Path(tmp))
        results = []
        for lib in LIBRARIES:
            for fmt in FORMATS:
                results.append(run_worker(lib, fmt, Path(tmp), args.repeat))
                r = results[-1]
                print(
                    f"{lib:7} {fmt:10} {r['per_second']:6.1f}/s "
                    f"{r['per_cpu_second']:6.1f}/CPU-s {r['bytes']:>10,} B",
                    flush=True,
                )
        report = render(results, sources, args.repeat, load)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
