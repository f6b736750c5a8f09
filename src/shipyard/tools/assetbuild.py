"""`shipyard assets build`: a source directory turned into a directory a CDN can cache
forever.

For every file of the source (hidden files skipped, `.well-known` kept):
- CSS and JavaScript are minified (rcssmin, rjsmin: small, maintained, C-accelerated);
  names containing `.min.` are taken as already minified;
- every file but HTML is written twice: under its own name and under a fingerprinted one,
  `app.3f9c2d1e0a.css` (the first 10 hex digits of the SHA-256 of the written bytes), and
  `manifest.json` maps the one to the other; HTML pages keep their names (they are the
  entry points, served `no-cache`);
- `{{ asset_url("app.css") }}` in an HTML page becomes the fingerprinted URL (behind the
  CDN's base URL when one is given), so pages always reference the current build;
- text-like files get `.br` (brotli, quality 11) and `.gz` (gzip 9) siblings when that
  saves bytes, chosen per request by `Accept-Encoding` (tools/staticfiles.py).

The output is built beside the destination and swapped in by renames, so a server never
sees half a build; the previous build's fingerprinted files are carried over once, so
pages still open in browsers keep loading their assets after a deploy.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import brotli
import orjson
import rcssmin  # type: ignore[import-untyped]
import rjsmin  # type: ignore[import-untyped]

from shipyard.tools.staticfiles import ENCODINGS, MANIFEST

HASH_LEN = 10
COMPRESSIBLE = {
    ".html", ".htm", ".css", ".js", ".mjs", ".json", ".map", ".svg", ".xml", ".txt",
    ".csv", ".md", ".wasm", ".ico", ".webmanifest", ".ttf", ".otf", ".eot",
}  # fmt: skip
MIN_COMPRESS = 256  # bytes: smaller files gain nothing worth a second request path
_HTML = (".html", ".htm")
_PLACEHOLDER = re.compile(r"""\{\{\s*asset_url\(\s*(["'])([^"']+)\1\s*\)\s*\}\}""")


class BuildError(ValueError):
    """The source cannot be built; the message names the file."""


@dataclass
class BuildReport:
    manifest: dict[str, str] = field(default_factory=dict)
    files: int = 0
    bytes_in: int = 0
    bytes_out: int = 0  # minified, uncompressed
    compressed: int = 0  # files that got .br/.gz siblings


def fingerprinted_name(rel: str, data: bytes) -> str:
    """`css/app.css` → `css/app.<10 hex>.css` (before the last extension)."""
    digest = hashlib.sha256(data).hexdigest()[:HASH_LEN]
    head, slash, name = rel.rpartition("/")
    stem, dot, ext = name.rpartition(".")
    new = f"{stem}.{digest}.{ext}" if dot and stem else f"{name}.{digest}"
    return f"{head}{slash}{new}"


def minify(rel: str, data: bytes) -> bytes:
    if ".min." in rel.rsplit("/", 1)[-1]:
        return data
    if rel.endswith(".css"):
        return str(rcssmin.cssmin(data.decode("utf-8"))).encode("utf-8")
    if rel.endswith((".js", ".mjs")):
        return str(rjsmin.jsmin(data.decode("utf-8"))).encode("utf-8")
    return data


def _sources(src: Path) -> list[str]:
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") or d == ".well-known")
        for name in sorted(filenames):
            if not name.startswith("."):
                out.append(Path(dirpath, name).relative_to(src).as_posix())
    return out


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _compress(path: Path, data: bytes) -> bool:
    if path.suffix.lower() not in COMPRESSIBLE or len(data) < MIN_COMPRESS:
        return False
    made = False
    for body, (_, suffix) in (
        (brotli.compress(data, quality=11), ENCODINGS[0]),
        (gzip.compress(data, compresslevel=9, mtime=0), ENCODINGS[1]),
    ):
        if len(body) < len(data):
            path.with_name(path.name + suffix).write_bytes(body)
            made = True
    return made


def _render(rel: str, text: str, manifest: dict[str, str], base: str) -> str:
    def url(m: re.Match[str]) -> str:
        name = m.group(2).lstrip("/")
        if name not in manifest:
            raise BuildError(f"{rel}: asset_url({name!r}) names no file of the source")
        return f"{base}/{manifest[name]}"

    return _PLACEHOLDER.sub(url, text)


def _carry_over(old: Path, new: Path, manifest: dict[str, str]) -> None:
    """The previous build's fingerprinted files that this build no longer has."""
    try:
        previous = orjson.loads((old / MANIFEST).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return
    keep = set(manifest.values())
    for fp in previous.values() if isinstance(previous, dict) else ():
        fp = str(fp)
        if fp in keep or not re.fullmatch(r"[^\\\x00]+", fp) or ".." in fp.split("/"):
            continue
        for suffix in ("", *(s for _, s in ENCODINGS)):
            source = old / (fp + suffix)
            if source.is_file() and not (new / (fp + suffix)).exists():
                (new / fp).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, new / (fp + suffix))


def build(src: Path, out: Path, *, base_url: str = "") -> BuildReport:
    """Build `src` into `out` (replaced). `base_url` prefixes the URLs written into HTML
    (a CDN's, e.g. https://cdn.example.com); empty: root-relative `/…` URLs."""
    src, out = src.resolve(), out.resolve()
    if not src.is_dir():
        raise BuildError(f"{src}: the source directory does not exist")
    if out == src or src in out.parents or out in src.parents:
        raise BuildError(f"{out}: the output must not contain or be inside the source {src}")
    base = base_url.rstrip("/")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.build-{secrets.token_hex(4)}")
    report = BuildReport()
    try:
        pages: list[tuple[str, bytes]] = []
        for rel in _sources(src):
            raw = (src / rel).read_bytes()
            report.files += 1
            report.bytes_in += len(raw)
            if rel.lower().endswith(_HTML):
                pages.append((rel, raw))
                continue
            try:
                data = minify(rel, raw)
            except UnicodeDecodeError:
                raise BuildError(f"{rel}: not UTF-8 text") from None
            fp = fingerprinted_name(rel, data)
            report.manifest[rel] = fp
            for name in (rel, fp):
                _write(tmp / name, data)
                report.compressed += _compress(tmp / name, data)
            report.bytes_out += len(data)
        for rel, raw in pages:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise BuildError(f"{rel}: not UTF-8 text") from None
            data = _render(rel, text, report.manifest, base).encode("utf-8")
            _write(tmp / rel, data)
            report.compressed += _compress(tmp / rel, data)
            report.bytes_out += len(data)
        _write(tmp / MANIFEST, orjson.dumps(report.manifest, option=orjson.OPT_SORT_KEYS))
        if out.is_dir():
            _carry_over(out, tmp, report.manifest)
        _swap(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report


def _swap(tmp: Path, out: Path) -> None:
    old = out.with_name(f".{out.name}.old-{secrets.token_hex(4)}")
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


__all__ = ["BuildError", "BuildReport", "build", "fingerprinted_name", "minify"]
