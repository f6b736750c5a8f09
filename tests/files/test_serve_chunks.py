"""Local files over 256 KiB go out as body chunks read on the event loop (files/serve.py
LocalChunks): every byte in order, ranges exact, and a client that hangs up stops the
reading (granian drops what is sent after a disconnect without raising)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from shipyard.files.serve import CHUNK, LocalChunks

Message = dict[str, Any]


def _run(resp: LocalChunks, receive: Any) -> list[Message]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)
        await asyncio.sleep(0)  # as a server would, between two messages

    asyncio.run(resp({"type": "http"}, receive, send))  # type: ignore[arg-type]
    return sent


async def _never_disconnects() -> Message:
    await asyncio.Event().wait()
    return {"type": "http.disconnect"}


def test_every_byte_in_chunks_and_ranges(tmp_path: Path) -> None:
    data = bytes(range(256)) * ((CHUNK * 3 + 1000) // 256)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    sent = _run(LocalChunks(str(path), {}, 0, len(data) - 1), _never_disconnects)
    assert sent[0]["type"] == "http.response.start"
    bodies = sent[1:]
    assert b"".join(m["body"] for m in bodies) == data
    assert all(len(m["body"]) <= CHUNK for m in bodies)
    assert [m["more_body"] for m in bodies] == [True] * (len(bodies) - 1) + [False]
    part = _run(LocalChunks(str(path), {}, CHUNK - 5, CHUNK + 4, status=206), _never_disconnects)
    assert part[0]["status"] == 206
    assert b"".join(m["body"] for m in part[1:]) == data[CHUNK - 5 : CHUNK + 5]


def test_a_client_that_hangs_up_stops_the_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(b"x" * (CHUNK * 40))
    hung_up = asyncio.Event()
    sent: list[Message] = []

    async def receive() -> Message:
        await hung_up.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)
        if len(sent) == 3:  # the start and two chunks, then the client is gone
            hung_up.set()
        await asyncio.sleep(0)

    resp = LocalChunks(str(path), {}, 0, CHUNK * 40 - 1)
    asyncio.run(resp({"type": "http"}, receive, send))  # type: ignore[arg-type]
    assert 3 <= len(sent) < 10  # far from the 41 messages of the whole file


def test_a_file_deleted_since_its_stat_is_a_404(tmp_path: Path) -> None:
    sent = _run(LocalChunks(str(tmp_path / "gone"), {}, 0, CHUNK * 2), _never_disconnects)
    assert sent[0]["status"] == 404
