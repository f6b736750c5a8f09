"""Record, schema (collections) and settings writes answer 503 while a restore runs, in
every process: what they wrote would be lost — the safety backup is already taken and
the archive's data replaces everything.

A subscriber on the record-event bus, asked inside each write's transaction: it reads the
lock row (in that transaction when the lock lives in the same database, PostgreSQL; else
one indexed read of the auxiliary SQLite file) and refuses the write while the holder is
a restore. Jobs that write records get the same refusal and are retried later. Schema
writes ask the same inside their transaction (the schema store's write gates); settings
writes ask just before theirs (the runtime settings' write gates).
"""

from __future__ import annotations

from typing import Any

from shipyard.backups.state import State
from shipyard.kernel.errors import ApiError
from shipyard.records.collections import Collection
from shipyard.records.events import Listener
from shipyard.tools.db import Executor

MESSAGE = "A backup is being restored; try again shortly."
RETRY_AFTER = "5"


class RestoreGuard:
    def __init__(self, state: State, same_database: bool) -> None:
        self.state = state
        self.same_database = same_database

    async def check(self, tx: Executor | None = None) -> None:
        """ApiError 503 while a restore runs; `tx`: a transaction on the main database."""
        running = await self.state.running(tx if self.same_database else None)
        if running == "restore":
            raise ApiError(503, MESSAGE, headers={"Retry-After": RETRY_AFTER})

    async def listener(self, tx: Executor, c: Collection, action: str) -> Listener | None:
        await self.check(tx)
        return None

    async def settings_gate(self) -> None:
        await self.check()


def guard_for(services: Any, state: State) -> RestoreGuard:
    """The guard, registered on the schema store's and the runtime settings' writes; the
    caller subscribes it to record writes."""
    guard = RestoreGuard(state, services.aux_db is services.raw_db)
    services.store.write_gates.append(guard.check)
    services.runtime.write_gates.append(guard.settings_gate)
    return guard
