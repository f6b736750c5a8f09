"""The SSE response of `GET /api/realtime`: `PB_CONNECT` first, then the client's frames.

It ends, as PocketBase's does, when the client goes away or after `idle_timeout` without
an event (the SDK reconnects and subscribes again); and, for boundedness, when the client
stops reading: its queue filled up (clients.py), or one write blocked for `send_timeout`.
While it is open it does not count against the gateway's in-flight bound (it calls the
scope's `shipyard.detach`, http/gateway.py): an idle stream is no work in progress.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from shipyard.realtime.clients import Client, Hub, frame

HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-store"),
    (b"x-accel-buffering", b"no"),  # nginx: pass each event through at once
]
DETACH = "shipyard.detach"


class EventStream(Response):
    def __init__(
        self,
        hub: Hub,
        client: Client,
        idle_timeout: float,
        send_timeout: float,
        on_close: Callable[[Client], object] | None = None,
    ) -> None:
        super().__init__()
        self.hub = hub
        self.client = client
        self.idle_timeout = idle_timeout
        self.send_timeout = send_timeout
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        detach = scope.get(DETACH)
        if detach is not None:
            detach()
        client = self.client
        watcher = asyncio.create_task(self._watch(receive))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
            hello = orjson.dumps({"clientId": client.id})
            await self._write(send, frame(client.id, "PB_CONNECT", hello))
            await self._pump(send)
        except (OSError, TimeoutError, asyncio.CancelledError):
            client.close(client.reason or "gone")
        finally:
            client.close(client.reason or "ended")
            watcher.cancel()
            self.hub.unregister(client)
            if self.on_close is not None:
                await asyncio.shield(self._closed())
        with contextlib.suppress(Exception):
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _closed(self) -> None:
        if self.on_close is not None:
            result = self.on_close(self.client)
            if asyncio.iscoroutine(result):
                with contextlib.suppress(Exception):
                    await result

    async def _pump(self, send: Send) -> None:
        client = self.client
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.idle_timeout
        while not client.closed:
            if not client.queue:
                client.wake.clear()
                left = deadline - loop.time()
                if left <= 0:
                    client.close("idle")
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(client.wake.wait(), left)
                continue
            # everything queued in one write: a burst costs one send, not one per event
            queue = client.queue
            data = queue.popleft() if len(queue) == 1 else b"".join(queue)
            queue.clear()
            await self._write(send, data)
            deadline = loop.time() + self.idle_timeout

    async def _write(self, send: Send, data: bytes) -> None:
        try:
            async with asyncio.timeout(self.send_timeout):
                await send({"type": "http.response.body", "body": data, "more_body": True})
        except TimeoutError:
            self.client.close("stalled")
            raise

    async def _watch(self, receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.client.close("gone")
                return
