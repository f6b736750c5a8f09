"""Whether any process has realtime clients: when none has, a write publishes nothing.

Publishing a change costs an embedded write about a tenth of its CPU time (the event
serialized, an outbox row, every process's reader woken), and most writes happen while
nobody listens. Each process with clients keeps a row in `_realtime_nodes`, in the main
database, with an expiry it renews while it has clients (a process that dies stops
renewing; its row then expires). A write asks, inside its transaction, whether any row
is live, and publishes only then.

Why no event is lost: a process writes its row before it answers a new client's
`GET /api/realtime`, so before that client can subscribe to anything. On SQLite, write
transactions run one at a time: a write that began after the row was written sees it and
publishes; a write that began before commits before the row, so before the client
connected, and no subscriber could have been owed its event. This holds for the embedded
database only, where every process shares one file (and one clock); on PostgreSQL, where
asking would cost a round trip per write, writes always publish.
"""

from __future__ import annotations

import logging
import secrets
import time

from shipyard.tools.db import Database, Executor

log = logging.getLogger("shipyard.realtime")

TTL = 60.0  # seconds a process's row stays live without being renewed
NODES_DDL = """CREATE TABLE IF NOT EXISTS "_realtime_nodes" (
    "node" TEXT PRIMARY KEY NOT NULL, "expires" REAL NOT NULL
)"""


class Presence:
    def __init__(self, db: Database, enabled: bool) -> None:
        self.db = db
        self.enabled = enabled  # False: every write publishes (PostgreSQL)
        self.node = secrets.token_hex(8)
        self._until = 0.0  # when this process's row expires, as last written

    async def migrate(self) -> None:
        if self.enabled:
            await self.db.execute(NODES_DDL)

    async def announce(self) -> None:
        """This process has clients: its row live for at least TTL/2 more seconds (a write
        only when it is due; called before each new client is answered, and while any is
        connected)."""
        if not self.enabled:
            return
        now = time.time()
        if self._until - now > TTL / 2:
            return
        until = now + TTL
        async with self.db.transaction() as tx:
            await tx.execute(
                'INSERT INTO "_realtime_nodes" ("node", "expires") VALUES (?, ?) '
                'ON CONFLICT ("node") DO UPDATE SET "expires" = excluded."expires"',
                (self.node, until),
            )
            await tx.execute('DELETE FROM "_realtime_nodes" WHERE "expires" < ?', (now - TTL,))
        self._until = until

    async def anyone(self, tx: Executor) -> bool:
        """Whether any process may have clients, read in a write's transaction."""
        if not self.enabled:
            return True
        row = await tx.fetchone(
            'SELECT 1 FROM "_realtime_nodes" WHERE "expires" > ? LIMIT 1', (time.time(),)
        )
        return row is not None

    async def withdraw(self) -> None:
        """At shut-down, once this process's clients are gone."""
        if not self.enabled or not self._until:
            return
        try:
            await self.db.execute('DELETE FROM "_realtime_nodes" WHERE "node" = ?', (self.node,))
        except Exception as exc:  # the row expires on its own
            log.warning("realtime: could not withdraw this process's presence: %s", exc)
        self._until = 0.0
