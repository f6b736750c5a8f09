"""Webhooks as a subscriber of the record-event bus, like a team's own extension.

Each matching active subscription becomes a delivery job inserted in the write's own
transaction, so a delivery exists if and only if the write commits.
"""

from __future__ import annotations

from shipyard.records.collections import Collection
from shipyard.records.events import SECRET_FIELDS, Listener, RecordChange, keeps_record, without
from shipyard.tools.db import Executor
from shipyard.webhooks.webhooks import Webhooks


class WebhookTriggers:
    def __init__(self, webhooks: Webhooks) -> None:
        self.webhooks = webhooks

    async def listener(self, tx: Executor, c: Collection, action: str) -> Listener | None:
        hooks = await self.webhooks.matching(tx, c.name, action)
        if not hooks:
            return None

        @keeps_record
        async def deliver(tx: Executor, change: RecordChange) -> None:
            # leaving the server: hidden fields are left out, as the records API leaves them out
            hidden = SECRET_FIELDS | {f.name for f in change.collection.fields if f.hidden}
            outgoing = {
                **change.event,
                "record": without(change.record, hidden),
                "oldRecord": without(change.old, hidden),
            }
            for w in hooks:
                await self.webhooks.enqueue_delivery(tx, w, outgoing)

        return deliver
