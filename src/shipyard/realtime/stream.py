"""The SSE response of `GET /api/realtime`: `PB_CONNECT` first, then the client's frames.

It ends, as PocketBase's does, when the client goes away or after the idle timeout without
an event (the SDK reconnects and subscribes again); and, for boundedness, when the client
stops reading: its queue filled up, or one write blocked for the send timeout (both
watched by the hub, clients.py: one timer for all clients, none per write).
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
        self, hub: Hub, client: Client, on_close: Callable[[Client], object] | None = None
    ) -> None:
        super().__init__()
        self.hub = hub
        self.client = client
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        detach = scope.get(DETACH)
        if detach is not None:
            detach()
        client = self.client
        client.task = asyncio.current_task()
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
        queue = client.queue
        while not client.closed:
            if not queue:
                client.wake.clear()
                await client.wake.wait()
                continue
            # everything queued in one write: a burst costs one send, not one per event
            data = queue.popleft() if len(queue) == 1 else b"".join(queue)
            queue.clear()
            await self._write(send, data)

    async def _write(self, send: Send, data: bytes) -> None:
        """One write, timed by the hub's watchdog (Hub.watch), which cancels it when the
        socket takes nothing for the send timeout."""
        client = self.client
        loop = asyncio.get_running_loop()
        client.sending_since = loop.time()
        await send({"type": "http.response.body", "body": data, "more_body": True})
        client.sending_since = 0.0
        client.last_write = loop.time()

    async def _watch(self, receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.client.close("gone")
                return
