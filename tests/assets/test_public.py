"""The public directory at / through HTTP, on SQLite and PostgreSQL: a built site served
with negotiated precompression, cache headers, 304s, the SPA fallback, and nothing outside
the directory or in front of /api and /metrics."""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from pathlib import Path

import brotli
import orjson
import pytest
from starlette.testclient import TestClient

from shipyard.app import create_app
from shipyard.assets.config import public_path
from shipyard.settings import Settings, load_settings
from shipyard.tools.assetbuild import build
from shipyard.tools.staticfiles import IMMUTABLE, safe_join

CSS = "/* the site's look */\nbody  {\n  color : #123456 ;\n  margin : 0 ;\n}\n" * 30
JS = "// greets\nfunction greet ( name ) {\n  return 'hello ' + name ;\n}\n" * 30
PAGE = '<!doctype html><link rel="stylesheet" href="{{ asset_url("css/site.css") }}">' + (
    "<p>Shipyard</p>\n" * 40
)


def _source(root: Path) -> Path:
    (root / "css").mkdir(parents=True)
    (root / "css" / "site.css").write_text(CSS)
    (root / "app.js").write_text(JS)
    (root / "index.html").write_text(PAGE)
    (root / "docs").mkdir()
    (root / "docs" / "index.html").write_text("<p>the docs</p>")
    (root / "api").mkdir()  # files that must never shadow the API
    (root / "api" / "health").write_text("shadowed!")
    (root / "metrics").write_text("shadowed!")
    (root / ".env").write_text("SECRET=1")
    return root


@pytest.fixture
def public(tmp_path: Path) -> Path:
    out = tmp_path / "public"
    build(_source(tmp_path / "web"), out)
    (tmp_path / "outside.txt").write_text("outside the public directory")
    (out / ".env").write_text("SECRET=1")  # a hidden file someone copied in
    os.symlink(tmp_path / "outside.txt", out / "leak.txt")
    (out / "inside.txt").write_text("inside " * 100)
    os.symlink(tmp_path / "outside.txt", out / "inside.txt.gz")  # a sibling that leads out
    return out


@pytest.fixture
def settings(database_url: str, tmp_path: Path, public: Path) -> Settings:
    return load_settings(
        env={}, data_dir=str(tmp_path / "data"), database_url=database_url, public_dir=str(public)
    )


def _manifest(public: Path) -> dict[str, str]:
    return dict(orjson.loads((public / "manifest.json").read_bytes()))


def _raw(client: TestClient, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and the body as sent (not decoded)."""
    with client.stream("GET", path, headers=headers) as r:
        return r.status_code, dict(r.headers), b"".join(r.iter_raw())


def test_negotiated_precompressed_and_immutable(client: TestClient, public: Path) -> None:
    fp = _manifest(public)["css/site.css"]
    minified = (public / fp).read_bytes()
    assert len(minified) < len(CSS) / 2  # minified
    url = "/" + fp
    status, h, body = _raw(client, url, **{"accept-encoding": "gzip, deflate, br"})
    assert status == 200
    assert h["content-encoding"] == "br"
    assert brotli.decompress(body) == minified
    assert h["cache-control"] == IMMUTABLE
    assert "Accept-Encoding" in h["vary"]
    assert h["content-type"].startswith("text/css")
    assert h["x-content-type-options"] == "nosniff"
    # public content: loadable from pages of other origins; the page policy is the team's
    assert h["cross-origin-resource-policy"] == "cross-origin"
    assert h["content-security-policy"] == "frame-ancestors 'self'"
    assert int(h["content-length"]) == len(body) < len(minified)
    status, h2, body = _raw(client, url, **{"accept-encoding": "gzip"})
    assert (status, h2["content-encoding"]) == (200, "gzip")
    assert gzip.decompress(body) == minified
    status, h3, body = _raw(client, url, **{"accept-encoding": "br;q=0.5, gzip;q=0.9"})
    assert h3["content-encoding"] == "gzip"
    for accept in ("identity", "", "br;q=0, gzip;q=0"):
        status, h4, body = _raw(client, url, **{"accept-encoding": accept})
        assert (status, h4.get("content-encoding"), body) == (200, None, minified), accept
    # each representation has its own ETag; all are immutable
    assert len({h["etag"], h2["etag"], h4["etag"]}) == 3
    # HEAD: the same headers, no body
    r = client.head(url, headers={"accept-encoding": "br"})
    assert (r.status_code, r.content, r.headers["content-encoding"]) == (200, b"", "br")
    assert r.headers["etag"] == h["etag"]
    # ranges of the representation sent
    part = client.get(url, headers={"accept-encoding": "identity", "range": "bytes=0-9"})
    assert (part.status_code, part.content) == (206, minified[:10])
    # the logical name is served too, but revalidated (its content changes between builds)
    status, h5, _ = _raw(client, "/css/site.css", **{"accept-encoding": "br"})
    assert (status, h5["cache-control"]) == (200, "no-cache")


def test_html_no_cache_etag_and_304(client: TestClient, public: Path) -> None:
    fp = _manifest(public)["css/site.css"]
    r = client.get("/", headers={"accept-encoding": "identity"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.headers["cache-control"] == "no-cache"
    assert f'href="/{fp}"' in r.text  # the page references the current build
    etag = r.headers["etag"]
    assert etag.startswith('"')
    assert len(etag) > 10
    again = client.get("/", headers={"if-none-match": etag, "accept-encoding": "identity"})
    assert (again.status_code, again.content) == (304, b"")
    assert again.headers["etag"] == etag
    assert again.headers["cache-control"] == "no-cache"
    weak = client.get(
        "/index.html", headers={"if-none-match": f'"x", W/{etag}', "accept-encoding": "identity"}
    )
    assert weak.status_code == 304
    other = client.get("/", headers={"if-none-match": '"other"'})
    assert other.status_code == 200
    since = client.get("/", headers={"if-modified-since": r.headers["last-modified"]})  # any coding
    assert since.status_code == 304
    old = client.get("/", headers={"if-modified-since": "Mon, 01 Jan 2001 00:00:00 GMT"})
    assert old.status_code == 200
    # the same page compressed has another ETag, and revalidates as such
    br = client.get("/", headers={"accept-encoding": "br"})
    assert br.headers["content-encoding"] == "br"
    assert br.headers["etag"] != etag
    assert (
        client.get(
            "/", headers={"accept-encoding": "br", "if-none-match": br.headers["etag"]}
        ).status_code
        == 304
    )


def test_spa_fallback_directories_and_missing_files(client: TestClient) -> None:
    r = client.get("/dashboard/settings/profile")
    assert r.status_code == 200
    assert "<p>Shipyard</p>" in r.text
    assert r.headers["cache-control"] == "no-cache"
    missing = client.get("/missing.js")
    assert missing.status_code == 404
    assert missing.json() == {
        "status": 404, "message": "The requested resource wasn't found.", "data": {}
    }  # fmt: skip
    r = client.get("/docs", follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (301, "/docs/")
    assert client.get("/docs/").text == "<p>the docs</p>"
    assert client.post("/index.html").status_code in (404, 405)


def test_no_fallback_when_turned_off(database_url: str, tmp_path: Path, public: Path) -> None:
    s = load_settings(
        env={"SHIPYARD_INDEX_FALLBACK": "false"},
        data_dir=str(tmp_path / "data2"),
        database_url=database_url,
        public_dir=str(public),
    )
    with TestClient(create_app(s)) as c:
        assert c.get("/dashboard").status_code == 404
        assert c.get("/").status_code == 200


def test_api_and_metrics_are_never_shadowed(client: TestClient, public: Path) -> None:
    r = client.get("/api/health")
    assert r.status_code == 200
    assert r.json()["message"] == "API is healthy."
    r = client.get("/api/nothing-here")
    assert r.status_code == 404
    assert r.json()["status"] == 404
    assert client.get("/api").status_code == 404
    assert client.get("/api/").status_code == 404
    m = client.get("/metrics")
    assert "shadowed" not in m.text
    # an unknown method on a known API path is still the API's answer
    assert client.delete("/api/health").status_code == 405


@pytest.mark.parametrize(
    "path",
    [
        "/../outside.txt",
        "/%2e%2e/outside.txt",
        "/docs/%2e%2e/%2e%2e/outside.txt",
        "/docs/..%2f..%2foutside.txt",
        "/..%5coutside.txt",
        "/%5c..%5coutside.txt",
        "/leak.txt",  # a symbolic link out of the directory
        "/.env",
        "/docs/../.env",
        "/%00index.html",
    ],
)
def test_nothing_outside_the_directory(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert "outside the public directory" not in r.text
    assert "SECRET" not in r.text
    assert r.status_code in (404, 400) or "<p>Shipyard</p>" in r.text


def test_a_sibling_that_leads_out_is_not_sent(client: TestClient) -> None:
    status, h, body = _raw(client, "/inside.txt", **{"accept-encoding": "gzip"})
    assert (status, h.get("content-encoding"), body) == (200, None, b"inside " * 100)


def test_safe_join_refuses_escapes(public: Path) -> None:
    root = os.path.realpath(public)
    assert safe_join(root, "index.html") == os.path.join(root, "index.html")
    assert safe_join(root, "") == root
    for bad in ("../outside.txt", "docs/../../outside.txt", "a\\..\\b", "x\x00", ".env",
                "leak.txt", "docs/./index.html"):  # fmt: skip
        assert safe_join(root, bad) is None, bad
    assert safe_join(root, ".well-known/security.txt") is not None


def test_a_new_build_is_served_at_once(client: TestClient, public: Path, tmp_path: Path) -> None:
    old = _manifest(public)["css/site.css"]
    src = tmp_path / "web"
    (src / "css" / "site.css").write_text(CSS.replace("#123456", "#654321"))
    build(src, public)
    new = _manifest(public)["css/site.css"]
    assert new != old
    assert f'href="/{new}"' in client.get("/").text
    r = client.get("/" + new)
    assert r.status_code == 200
    assert r.headers["cache-control"] == IMMUTABLE
    # the previous build's fingerprinted file stays one more build for open pages
    assert client.get("/" + old).status_code == 200


@pytest.fixture
def no_public_client(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    s = load_settings(env={}, data_dir=str(tmp_path / "d" / "data"), database_url=database_url)
    assert public_path(s) == tmp_path / "d" / "shipyard_public"
    with TestClient(create_app(s)) as c:
        yield c


def test_no_public_directory(no_public_client: TestClient) -> None:
    assert no_public_client.get("/").status_code == 404
    assert no_public_client.get("/api/health").status_code == 200


@pytest.mark.parametrize(
    "raw", ["/../outside.txt", "/docs/../../outside.txt", "/..\\outside.txt", "/leak.txt", "/.env"]
)
def test_raw_paths_reach_nothing_outside(client: TestClient, raw: str) -> None:
    """The paths as an ASGI server passes them (decoded, not normalised by a client)."""
    sent: list[dict[str, object]] = []
    not_found: list[str] = []

    async def fallback(scope: object, receive: object, send: object) -> None:
        not_found.append(raw)  # what the app answers 404 for

    svc = client.app.state.services  # type: ignore[attr-defined]
    app = svc.extension("assets").public_app(fallback)

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": raw, "query_string": b"",
             "headers": [(b"accept-encoding", b"identity")]}  # fmt: skip
    client.portal.call(app, scope, receive, send)  # type: ignore[union-attr]
    assert not_found == [raw]
    assert sent == []
