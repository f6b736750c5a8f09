"""A real `shipyard serve` with the default public directory (shipyard_public beside the
data directory): requests written byte by byte on a socket, as no HTTP client would
normalise them, never reach the data directory next door."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.tools.assetbuild import build
from tests.helpers.servers import Server, start_server, stop_server


@pytest.fixture
def site(database_url: str, tmp_path: Path) -> Iterator[Server]:
    root = tmp_path / "srv"
    (root / "web").mkdir(parents=True)
    (root / "web" / "index.html").write_text("<p>the app</p>\n" * 50)
    (root / "outside.txt").write_text("outside the public directory")
    build(root / "web", root / "shipyard_public")
    srv = start_server(root / "data", database_url)
    try:
        yield srv
    finally:
        stop_server(srv)


def _raw(url: str, request: str) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(request.encode("latin-1"))
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


TARGETS = [
    "/../outside.txt",
    "/../data/data.db",
    "/%2e%2e/data/data.db",
    "/%2E%2E%2Fdata%2Fdata.db",
    "/..%5cdata%5cdata.db",
    "/x/../../outside.txt",
    "/..",
]


def test_traversal_on_the_wire_and_headers(site: Server) -> None:
    for target in TARGETS:
        got = _raw(site.url, f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert b"outside the public directory" not in got, target
        assert b"SQLite format 3" not in got, target
        status = got.split(b" ", 2)[1]
        assert status in (b"200", b"400", b"404"), got[:200]
        if status == b"200":  # a page path: the app's index.html
            assert b"<p>the app</p>" in got, target
    got = _raw(
        site.url,
        "HEAD / HTTP/1.1\r\nHost: x\r\nAccept-Encoding: br\r\nConnection: close\r\n\r\n",
    )
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"content-encoding: br" in head.lower()
    assert b"cache-control: no-cache" in head.lower()
    assert body == b""
