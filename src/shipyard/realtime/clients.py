"""The SSE clients of this process and what each is subscribed to.

Each client holds a bounded queue of ready SSE frames: the fan-out only appends (never
waits on a slow socket), the client's own stream task writes. A client whose queue is full
is closed (`stalled`): one slow reader costs at most `buffer` frames of memory and never
delays anyone else. Topics are indexed by their base (`posts/*`, `posts/ID`), so an event
looks up its few bases instead of scanning every client.
"""

from __future__ import annotations

import asyncio
import secrets
import string
from collections import deque
from collections.abc import Iterator
from typing import Any

from shipyard.realtime.topics import Topic
from shipyard.records.auth import ANONYMOUS, Auth

_ALPHABET = string.ascii_letters + string.digits


def new_client_id() -> str:
    """40 random letters and digits, as PocketBase's client ids."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(40))


def frame(client_id: str, event: str, data: bytes) -> bytes:
    """One SSE message as PocketBase writes it: `id:`, `event:`, `data:`, blank line."""
    name = event.replace("\r", "").replace("\n", "")  # a topic cannot break the framing
    return b"id:" + client_id.encode() + b"\nevent:" + name.encode() + b"\ndata:" + data + b"\n\n"


class Client:
    """One open `GET /api/realtime` stream."""

    __slots__ = (
        "auth",
        "authed",
        "buffer",
        "closed",
        "id",
        "last_write",
        "queue",
        "reason",
        "sending_since",
        "task",
        "topics",
        "wake",
    )

    def __init__(self, buffer: int, client_id: str | None = None) -> None:
        self.id = client_id or new_client_id()
        self.auth: Auth = ANONYMOUS
        self.authed = False  # PocketBase: once a request bound an auth, it may not change
        self.topics: list[Topic] = []
        self.buffer = buffer
        self.queue: deque[bytes] = deque()
        self.wake = asyncio.Event()
        self.closed = False
        self.reason = ""
        # for the hub's watchdog (one timer for every client, not one per write)
        self.last_write = 0.0  # loop time of the last completed write
        self.sending_since = 0.0  # loop time the write in progress began; 0: none
        self.task: asyncio.Task[Any] | None = None  # the stream's task, cancelled if stuck

    def offer(self, data: bytes) -> bool:
        """Queue a frame; a full queue means the client stopped reading: it is closed."""
        if self.closed:
            return False
        if len(self.queue) >= self.buffer:
            self.close("stalled")
            return False
        self.queue.append(data)
        self.wake.set()
        return True

    def close(self, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self.reason = reason
            self.queue.clear()
            self.wake.set()


class Hub:
    """This process's clients by id, and their topics by base."""

    def __init__(self, max_connections: int) -> None:
        self.max_connections = max_connections
        self.clients: dict[str, Client] = {}
        self._by_base: dict[str, dict[str, list[Topic]]] = {}
        self.stalled = 0  # clients cut off for a full buffer, since start

    @property
    def full(self) -> bool:
        return len(self.clients) >= self.max_connections

    def register(self, client: Client) -> None:
        self.clients[client.id] = client

    def unregister(self, client: Client) -> None:
        if client.reason == "stalled":
            self.stalled += 1
        self.set_topics(client, [])
        if self.clients.get(client.id) is client:
            del self.clients[client.id]

    def set_topics(self, client: Client, topics: list[Topic]) -> None:
        """Replace the client's subscriptions (PocketBase: each POST replaces them all)."""
        for t in client.topics:
            bucket = self._by_base.get(t.base)
            if bucket is not None:
                bucket.pop(client.id, None)
                if not bucket:
                    del self._by_base[t.base]
        client.topics = topics
        for t in topics:
            self._by_base.setdefault(t.base, {}).setdefault(client.id, []).append(t)

    def subscribed(self, base: str) -> Iterator[tuple[Client, Topic]]:
        for cid, topics in list(self._by_base.get(base, {}).items()):
            client = self.clients.get(cid)
            if client is None or client.closed:
                continue
            for t in topics:
                yield client, t

    def watch(self, now: float, idle_timeout: float, send_timeout: float) -> None:
        """Close the clients idle for `idle_timeout` (PocketBase's end of a quiet stream)
        and those whose socket took no data for `send_timeout` (stalled: its write is
        cancelled). One pass over the clients, a few times a second."""
        for client in list(self.clients.values()):
            if client.closed:
                continue
            if client.sending_since and now - client.sending_since > send_timeout:
                client.close("stalled")
                if client.task is not None:
                    client.task.cancel()
            elif not client.queue and client.last_write and now - client.last_write > idle_timeout:
                client.close("idle")

    def with_auth(self, collection_id: str, record_id: str) -> list[Client]:
        """The clients bound to one auth record (its update or delete changes them)."""
        return [
            c
            for c in self.clients.values()
            if c.auth.collection is not None
            and c.auth.collection.id == collection_id
            and c.auth.id == record_id
        ]
