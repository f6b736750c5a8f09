"""`shipyard assets build` end to end: the command run as a user runs it, its output
served, and the template helper's URLs (with and without a CDN)."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import brotli
import orjson
import pytest

from shipyard.tools.assetbuild import BuildError, build, fingerprinted_name, minify

ROOT = Path(__file__).resolve().parents[2]
JS = "/* big comment */\nfunction add ( a , b ) {\n  // sum\n  return a + b ;\n}\n" * 20


def _cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    e["PYTHONPATH"] = str(ROOT / "src")
    e.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "shipyard.cli", "assets", "build", *args],
        cwd=cwd, env=e, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _site(root: Path) -> None:
    (root / "web" / "js").mkdir(parents=True)
    (root / "web" / "js" / "app.js").write_text(JS)
    (root / "web" / "js" / "vendor.min.js").write_text("var x = 1 ;  // kept as is\n")
    (root / "web" / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    (root / "web" / "index.html").write_text(
        "<script src=\"{{ asset_url('js/app.js') }}\"></script>"
        '<img src="{{asset_url("logo.png")}}">' + "<p>x</p>" * 100
    )
    (root / "web" / ".git").mkdir()
    (root / "web" / ".git" / "config").write_text("secret")


def test_build_command_end_to_end(tmp_path: Path) -> None:
    _site(tmp_path)
    r = _cli(cwd=tmp_path)  # defaults: ./web into ./shipyard_public (beside shipyard_data)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "shipyard_public"
    assert "built 4 files" in r.stdout
    assert "into shipyard_public" in r.stdout
    manifest = orjson.loads((out / "manifest.json").read_bytes())
    assert set(manifest) == {"js/app.js", "js/vendor.min.js", "logo.png"}
    app = manifest["js/app.js"]
    assert app.startswith("js/app.")
    assert app.endswith(".js")
    assert len(app) == len("js/app.js") + 11
    code = (out / app).read_bytes()
    assert code == (out / "js/app.js").read_bytes()
    assert b"comment" not in code
    assert b"// sum" not in code
    assert len(code) < len(JS) / 2
    assert brotli.decompress((out / (app + ".br")).read_bytes()) == code
    assert gzip.decompress((out / (app + ".gz")).read_bytes()) == code
    # already minified: untouched; binary: no useless compressed siblings
    assert (out / manifest["js/vendor.min.js"]).read_text() == "var x = 1 ;  // kept as is\n"
    assert not (out / (manifest["logo.png"] + ".br")).exists()
    page = (out / "index.html").read_text()
    assert f'<script src="/{app}"></script>' in page
    assert f'<img src="/{manifest["logo.png"]}">' in page
    assert (out / "index.html.br").exists()
    assert not (out / ".git").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_build_with_cdn_and_errors(tmp_path: Path) -> None:
    _site(tmp_path)
    cdn = {"SHIPYARD_CDN_URL": "https://cdn.example.com/site/"}
    r = _cli("web", "--out", "dist", cwd=tmp_path, env=cdn)
    assert r.returncode == 0, r.stderr
    manifest = orjson.loads((tmp_path / "dist" / "manifest.json").read_bytes())
    page = (tmp_path / "dist" / "index.html").read_text()
    assert f'src="https://cdn.example.com/site/{manifest["js/app.js"]}"' in page
    (tmp_path / "web" / "index.html").write_text('{{ asset_url("nope.css") }}')
    r = _cli("web", "--out", "dist", cwd=tmp_path)
    assert r.returncode == 1
    assert "index.html: asset_url('nope.css') names no file of the source" in r.stderr
    assert (tmp_path / "dist" / "manifest.json").exists()  # the old build stays whole
    r = _cli("missing", cwd=tmp_path)
    assert r.returncode != 0
    r = _cli("web", "--out", "web/dist", cwd=tmp_path)
    assert r.returncode == 1
    assert "must not contain or be inside" in r.stderr


def test_fingerprints_and_minifiers() -> None:
    assert fingerprinted_name("a/b.min.js", b"x") == "a/b.min.2d711642b7.js"
    assert fingerprinted_name("LICENSE", b"x") == "LICENSE.2d711642b7"
    assert minify("s.css", b"a {  color : red ; }") == b"a{color:red}"
    assert minify("s.js", b"var  a = 1 ;\n// c\n") == b"var a=1;"
    assert minify("s.txt", b"as  is") == b"as  is"


def test_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "bad.css").write_bytes(b"\xff\xfe")
    with pytest.raises(BuildError, match=r"bad\.css: not UTF-8"):
        build(tmp_path / "src", tmp_path / "out")
