"""A write answers with the record as it stands at the end of its transaction: a record-bus
listener that changes the row (unmarked, as a team's own may be) shows in the answer, and
when every listener keeps the record, the answer read once for the event is the same as a
fresh read (records/events.py `keeps_record`)."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

from shipyard.records.events import RecordChange, keeps_record

H = dict[str, str]
COLLECTION = {
    "name": "notes",
    "listRule": "",
    "viewRule": "",
    "fields": [
        {"name": "title", "type": "text"},
        {"name": "tags", "type": "json"},
        {"name": "secret", "type": "text", "hidden": True},
    ],
}


class Stamper:
    """Sets the title in the write's transaction: it does not keep the record."""

    async def listener(self, tx: Any, c: Any, action: str) -> Any:
        if c.name != "notes":
            return None

        async def stamp(tx: Any, change: RecordChange) -> None:
            await tx.execute(
                'UPDATE "notes" SET "title" = ? WHERE "id" = ?',
                (f"stamped {change.action}", change.record["id"]),
            )

        return stamp


class Watcher:
    """Only looks: it keeps the record."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def listener(self, tx: Any, c: Any, action: str) -> Any:
        @keeps_record
        async def look(tx: Any, change: RecordChange) -> None:
            self.seen.append(change.action)

        return look if c.name == "notes" else None


def _subscribe(client: TestClient, subscriber: Any) -> None:
    client.app.state.services.events.subscribe(subscriber)  # type: ignore[attr-defined]


def test_a_listener_changing_the_record_shows_in_the_answer(client: TestClient, su: H) -> None:
    assert client.post("/api/collections", json=COLLECTION, headers=su).status_code == 200
    _subscribe(client, Stamper())
    r = client.post("/api/collections/notes/records", json={"title": "a"}, headers=su)
    assert r.status_code == 200, r.text
    assert r.json()["title"] == "stamped create"
    rid = r.json()["id"]
    r = client.patch(f"/api/collections/notes/records/{rid}", json={"title": "b"}, headers=su)
    assert r.status_code == 200, r.text
    assert r.json()["title"] == "stamped update"


def test_listeners_keeping_the_record_answer_as_a_fresh_read(client: TestClient, su: H) -> None:
    open_to_all = {**COLLECTION, "createRule": "", "updateRule": ""}
    assert client.post("/api/collections", json=open_to_all, headers=su).status_code == 200
    watcher = Watcher()
    _subscribe(client, watcher)
    url = "/api/collections/notes/records"
    body = {"title": "a", "tags": ["x", "y"], "secret": "s"}
    for who in (su, {}):  # a superuser sees the hidden field, a guest does not
        created = client.post(url, json=body, headers=who)
        assert created.status_code == 200, created.text
        rid = created.json()["id"]
        assert created.json() == client.get(f"{url}/{rid}", headers=who).json()
        updated = client.patch(f"{url}/{rid}", json={"title": "b"}, headers=who)
        assert updated.status_code == 200, updated.text
        fresh = client.get(f"{url}/{rid}", headers=who).json()
        assert updated.json() == fresh
        assert list(updated.json()) == list(fresh)  # the same fields in the same order
        assert ("secret" in fresh) == bool(who)
    assert watcher.seen == ["create", "update"] * 2
