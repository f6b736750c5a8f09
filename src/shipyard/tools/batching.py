"""Auto-batching of calls to a shared server (Redis): one round trip for many callers.

A request made while a call is in flight waits for that call to return, then goes with
every other such request in the next call. A lone request is sent at once, by itself, so
batching adds no latency; under concurrency the per-call client work (encoding, the socket,
parsing: most of a small call's cost) is shared by the batch. Every batched call starts
after each of its requests was made, so it sees whatever the server held when they were.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Q = TypeVar("Q")
A = TypeVar("A")

# Sends a batch; answers one result per request, in order, or None (server unreachable).
Send = Callable[[list[Q]], Awaitable[Sequence[A] | None]]


class AutoBatcher(Generic[Q, A]):
    """Batches `submit`s that arrive while a `send` is in flight, `max_batch` a call."""

    def __init__(self, send: Send[Q, A], max_batch: int) -> None:
        self.send = send
        self.max_batch = max_batch
        self.calls = 0  # sends made (tests check that concurrent requests share them)
        self._busy = False  # a send is in flight: requests wait in _pending for the next
        self._pending: list[tuple[Q, asyncio.Future[A | None]]] = []
        self._sender: asyncio.Task[None] | None = None

    async def submit(self, request: Q) -> A | None:
        """The answer to `request`, None when the send found the server unreachable."""
        if self._busy:
            future: asyncio.Future[A | None] = asyncio.get_running_loop().create_future()
            self._pending.append((request, future))
            return await future
        self._busy = True
        try:
            got = await self._send([request])
            return None if got is None else got[0]
        finally:
            self._then()

    async def _send(self, batch: list[Q]) -> Sequence[A] | None:
        self.calls += 1
        return await self.send(batch)

    def _then(self) -> None:
        """After a call: send what gathered meanwhile, from a task (a request that is
        cancelled, its client gone, must not strand the others), or be idle."""
        if self._pending:
            self._sender = asyncio.get_running_loop().create_task(self._drain())
        else:
            self._busy = False

    async def _drain(self) -> None:
        """Sends what is pending, up to `max_batch` a call, until nothing is."""
        try:
            while self._pending:
                batch = self._pending[: self.max_batch]
                del self._pending[: self.max_batch]
                got: Sequence[A] | None = None
                try:
                    got = await self._send([request for request, _ in batch])
                finally:
                    for i, (_, future) in enumerate(batch):
                        if not future.done():  # its request may have been cancelled
                            future.set_result(None if got is None else got[i])
        finally:
            self._busy = False
            self._sender = None
            left, self._pending = self._pending, []
            for _, future in left:  # only when cancelled (shutdown): as if unreachable
                if not future.done():
                    future.set_result(None)
