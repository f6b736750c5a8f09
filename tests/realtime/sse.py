"""A test's SSE client for `/api/realtime` on a plain socket (so that closing it really
closes the connection): reads the stream in a thread and keeps every event, so a test can
wait for what it expects without sleeping."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from typing import Any
from urllib.parse import urlsplit

import httpx

from tests.helpers.wait import poll_until, wait_until


class Stream:
    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.url = url
        self.events: list[tuple[str, str]] = []
        self.status = 0
        self.headers: dict[str, str] = {}
        self.ended = False
        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port or 80), timeout=30)
        head = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.sock.sendall(
            f"GET /api/realtime HTTP/1.1\r\nHost: {parts.netloc}\r\n{head}\r\n".encode()
        )
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        wait_until(lambda: self.events or self.ended, what="PB_CONNECT")
        self.client_id = json.loads(self.events[0][1])["clientId"] if self.events else ""

    def _read(self) -> None:
        try:
            buf = self._head()
            chunked = self.headers.get("transfer-encoding") == "chunked"
            text = b""
            while True:
                if chunked:
                    piece, buf = self._chunk(buf)
                    if piece is None:
                        return
                    text += piece
                else:
                    text += buf + self._recv()
                    buf = b""
                while b"\n\n" in text:
                    block, text = text.split(b"\n\n", 1)
                    self._event(block.decode())
        except (OSError, ValueError, EOFError):
            pass
        finally:
            self.ended = True

    def _head(self) -> bytes:
        """Read the status line and headers; what came after them."""
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += self._recv()
        head, buf = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {
            k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])
        }
        return buf

    def _chunk(self, buf: bytes) -> tuple[bytes | None, bytes]:
        """One chunk of a chunked body (None for the last one) and what follows it."""
        while b"\r\n" not in buf:
            buf += self._recv()
        size_line, buf = buf.split(b"\r\n", 1)
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return None, buf
        while len(buf) < size + 2:
            buf += self._recv()
        return buf[:size], buf[size + 2 :]

    def _event(self, block: str) -> None:
        name = data = ""
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:]
            elif line.startswith("data:"):
                data = line[5:]
        self.events.append((name, data))

    def _recv(self) -> bytes:
        got = self.sock.recv(65536)
        if not got:
            raise EOFError
        return got

    def subscribe(self, *topics: str, token: str = "", via: str = "") -> httpx.Response:
        headers = {"Authorization": token} if token else {}
        return httpx.post(
            (via or self.url) + "/api/realtime",
            json={"clientId": self.client_id, "subscriptions": list(topics)},
            headers=headers,
        )

    def records(self, topic: str | None = None) -> list[dict[str, Any]]:
        """The `{action, record}` of every event so far (of one topic, when given)."""
        return [json.loads(d) for n, d in self.events if n != "PB_CONNECT" and (topic in (None, n))]

    def wait(self, n: int, topic: str | None = None, timeout: float = 10.0) -> list[Any]:
        got = wait_until(
            lambda: len(self.records(topic)) >= n and self.records(topic),
            timeout,
            what=f"{n} event(s) on {topic or 'any topic'}",
        )
        return list(got)

    def quiet(self, n: int, topic: str | None = None, settle: float = 0.5) -> list[Any]:
        """The events after a short wait in which no event beyond the first `n` arrives."""
        poll_until(lambda: len(self.records(topic)) > n, settle)
        return self.records(topic)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._thread.join(timeout=5)
