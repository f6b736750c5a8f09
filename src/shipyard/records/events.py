"""The record-event bus: how capabilities above records react to record writes.

`Records` asks the bus, inside a write's transaction, who listens to (collection, action)
— before it fetches anything, so a write nobody listens to costs nothing — and then emits
one event to each listener, still inside the transaction. A listener may refuse the write
(raise an ApiError) or enqueue work that commits with it (a transactional outbox).

Job triggers (jobs/) and webhooks (webhooks/) subscribe here exactly as a team's own
extension would; records knows none of them.
"""

from __future__ import annotations

import datetime as dt
import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeVar

from shipyard.kernel.errors import FieldError
from shipyard.kernel.uploads import Upload
from shipyard.records.auth import Auth
from shipyard.records.collections import Collection
from shipyard.tools.db import Executor

SECRET_FIELDS = frozenset({"password", "tokenKey"})  # never in an event


def new_event_id() -> str:
    return "evt_" + secrets.token_hex(12)


def _iso(at: float) -> str:
    d = dt.datetime.fromtimestamp(at, dt.UTC)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"


def without(rec: dict[str, Any] | None, names: frozenset[str]) -> dict[str, Any] | None:
    """`rec` less the named fields (None stays None)."""
    if rec is None:
        return None
    return {k: v for k, v in rec.items() if k not in names}


class RecordChange:
    """One committed-with-the-transaction record write, as listeners see it.

    `event`, the JSON event, is built when a listener first asks for it: realtime, the
    listener of nearly every write, needs only the record, and the event's id, timestamp
    and copies cost a few percent of a write's CPU time (bench/writes_profile.py)."""

    __slots__ = ("_at", "_auth", "_event", "action", "collection", "old", "record", "uploads")

    def __init__(
        self,
        collection: Collection,
        action: str,  # create | update | delete
        record: dict[str, Any],  # the full record (hidden fields included)
        old: dict[str, Any] | None,
        uploads: tuple[Upload, ...] = (),  # new files of this write, to be stored with it
        auth: Auth | None = None,
    ) -> None:
        self.collection = collection
        self.action = action
        self.record = record
        self.old = old
        self.uploads = uploads
        self._auth = auth
        self._at = time.time()  # the event's timestamp: when the write emitted it
        self._event: dict[str, Any] | None = None

    @property
    def event(self) -> dict[str, Any]:
        """The JSON event (no password, no tokenKey), the same object for every listener."""
        if self._event is None:
            auth, c = self._auth, self.collection
            self._event = {
                "id": new_event_id(),
                "type": f"record.{self.action}",
                "action": self.action,
                "collection": c.name,
                "collectionId": c.id,
                "record": without(self.record, SECRET_FIELDS),
                "oldRecord": without(self.old, SECRET_FIELDS),
                "timestamp": _iso(self._at),
                "auth": None
                if auth is None or auth.collection is None
                else {"collection": auth.collection.name, "id": auth.id},
            }
        return self._event


class Listener(Protocol):
    """What one subscriber does with one write, in the write's transaction."""

    async def __call__(self, tx: Executor, change: RecordChange) -> None: ...


L = TypeVar("L")


def keeps_record(listener: L) -> L:
    """Marks a listener that never changes the written record's row: when every listener of
    a write is so marked, the writer answers with the record it read for the event instead
    of reading it again (one statement less per write). Unmarked listeners, a team's own
    included, may change it (a before-commit hook may), and the writer reads it again."""
    listener.keeps_record = True  # type: ignore[attr-defined]
    return listener


def all_keep_record(listeners: Sequence[Listener]) -> bool:
    return all(getattr(fn, "keeps_record", False) for fn in listeners)


class RecordSubscriber(Protocol):
    """A capability that reacts to record writes. `listener` answers None when it has
    nothing to do for this (collection, action), so unobserved writes stay cheap."""

    async def listener(self, tx: Executor, c: Collection, action: str) -> Listener | None: ...


class Listeners(tuple[Listener, ...]):
    """The listeners of one (collection, action), in subscription order."""


class RecordEvents:
    """The bus. Subscribers register once, at start-up, in dependency order."""

    def __init__(self) -> None:
        self._subscribers: list[RecordSubscriber] = []

    def subscribe(self, subscriber: RecordSubscriber) -> None:
        self._subscribers.append(subscriber)

    async def subscribers(self, tx: Executor, c: Collection, action: str) -> Listeners:
        found: list[Listener] = []
        for s in self._subscribers:
            got = await s.listener(tx, c, action)
            if got is not None:
                found.append(got)
        return Listeners(found)

    async def inspect_uploads(
        self, c: Collection, record_id: str, uploads: Mapping[str, Sequence[Upload]]
    ) -> dict[str, FieldError]:
        """A write's new files by field, before its transaction opens: subscribers with an
        `inspect_uploads` method may refuse some (errors by field name, PocketBase's
        validation shape), note what they learn on `Upload.meta`, or prepare for a rollback
        (the files capability enqueues the removal of files the write may leave behind).
        Slow checks (decoding an image) thus never hold the database's write lock."""
        errors: dict[str, FieldError] = {}
        if not uploads:
            return errors
        for s in self._subscribers:
            hook = getattr(s, "inspect_uploads", None)
            if hook is not None:
                errors.update(await hook(c, record_id, uploads))
        return errors

    async def dropped(self, tx: Executor, c: Collection, ids: Sequence[str] | None) -> None:
        """Records leaving without per-record events: a truncate (`ids`) or the whole
        collection dropped (None). Subscribers with a `dropped` method hear of it in the
        transaction (the files capability enqueues the removal of their files)."""
        for s in self._subscribers:
            hook = getattr(s, "dropped", None)
            if hook is not None:
                await hook(tx, c, ids)

    async def emit(
        self,
        tx: Executor,
        listeners: Sequence[Listener],
        c: Collection,
        action: str,
        record: dict[str, Any],
        old: dict[str, Any] | None,
        auth: Auth | None,
        uploads: Sequence[Upload] = (),
    ) -> RecordChange:
        change = RecordChange(c, action, record, old, tuple(uploads), auth)
        for listener in listeners:
            await listener(tx, change)
        return change
