"""Writes publish nothing while no process has realtime clients (realtime/presence.py):
no outbox row is written then; a live presence row of any process (one that stands for
another process's client here) makes every write publish again, and it stops counting
once it expires or is withdrawn. Delivery across processes with presence in play is
tests/realtime/test_processes.py (the writing process there never has clients)."""

from __future__ import annotations

import time
from pathlib import Path

from shipyard.realtime.presence import TTL
from tests.helpers.jobs_api import open_app


def _outbox(c: object) -> int:
    svc = c.app.state.services  # type: ignore[attr-defined]
    row = c.portal.call(svc.raw_db.fetchone, 'SELECT count(*) FROM "_realtime_events"')  # type: ignore[attr-defined]
    return int(row[0])


def _node(c: object, node: str, expires: float) -> None:
    svc = c.app.state.services  # type: ignore[attr-defined]
    c.portal.call(  # type: ignore[attr-defined]
        svc.raw_db.execute,
        'INSERT OR REPLACE INTO "_realtime_nodes" ("node", "expires") VALUES (?, ?)',
        (node, expires),
    )


def test_writes_publish_only_while_some_process_has_clients(tmp_path: Path) -> None:
    with open_app(tmp_path, "") as (c, su):
        r = c.post(
            "/api/collections",
            json={"name": "notes", "type": "base", "fields": [{"name": "t", "type": "text"}]},
            headers=su,
        )
        assert r.status_code == 200, r.text
        url = "/api/collections/notes/records"

        def create() -> None:
            assert c.post(url, json={"t": "x"}, headers=su).status_code == 200

        before = _outbox(c)
        create()
        assert _outbox(c) == before  # nobody listens anywhere: nothing published

        _node(c, "other", time.time() + TTL)  # another process has a client
        create()
        rid = c.post(url, json={"t": "y"}, headers=su).json()["id"]
        assert c.patch(f"{url}/{rid}", json={"t": "z"}, headers=su).status_code == 200
        assert c.delete(f"{url}/{rid}", headers=su).status_code == 204
        assert _outbox(c) == before + 4  # create, create, update, delete

        _node(c, "other", time.time() - 1)  # it died: its row expired
        create()
        assert _outbox(c) == before + 4

        svc = c.app.state.services
        presence = next(e for e in svc.extensions if e.name == "realtime").service.presence
        c.portal.call(presence.announce)  # this process's own first client
        create()
        assert _outbox(c) == before + 5
        c.portal.call(presence.withdraw)  # its clients are gone at shut-down
        create()
        assert _outbox(c) == before + 5
