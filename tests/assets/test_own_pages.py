"""Shipyard's own pages (the account page at /_/, the API docs at /api/docs) reference
their files by fingerprinted names, served immutable and precompressed, on SQLite and
PostgreSQL."""

from __future__ import annotations

import re

import brotli
import pytest
from starlette.testclient import TestClient

from shipyard.auth import pages
from shipyard.http import openapi
from shipyard.tools.staticfiles import IMMUTABLE


@pytest.mark.parametrize(
    ("page", "base", "names"),
    [
        ("/_/", "/_/static/", ["account.css", "account.js", "icon.svg"]),
        ("/api/docs", "/api/docs/app/", ["docs.js"]),
    ],
)
def test_own_files_fingerprinted_and_precompressed(
    client: TestClient, page: str, base: str, names: list[str]
) -> None:
    html = client.get(page).text
    files = pages.STATIC_FILES if page == "/_/" else openapi.OWN_FILES
    for name in names:
        fp = files.url(name)
        stem, ext = name.rsplit(".", 1)
        assert re.fullmatch(rf"{re.escape(stem)}\.[0-9a-f]{{10}}\.{ext}", fp)
        assert f'"{base.removeprefix("/_/").removeprefix("/api/")}{fp}"' in html
        plain = client.get(base + name, headers={"accept-encoding": "identity"})
        assert plain.headers["cache-control"] == "no-cache"
        with client.stream("GET", base + fp, headers={"accept-encoding": "gzip, br"}) as r:
            raw = b"".join(r.iter_raw())
            headers = r.headers
        assert r.status_code == 200
        assert headers["cache-control"] == IMMUTABLE
        if "content-encoding" in headers:  # files too small to gain are sent as they are
            assert headers["content-encoding"] == "br"
            assert brotli.decompress(raw) == plain.content
            assert "Accept-Encoding" in headers["vary"]
        else:
            assert raw == plain.content
        again = client.get(
            base + fp, headers={"if-none-match": headers["etag"], "accept-encoding": "gzip, br"}
        )
        assert (again.status_code, again.content) == (304, b"")
        head = client.head(base + fp, headers={"accept-encoding": "identity"})
        assert head.status_code == 200
        assert head.content == b""
        assert head.headers["content-length"] == str(len(plain.content))
    assert client.get(base + "nope.js").status_code == 404
    assert client.post(base + names[0]).status_code == 405
