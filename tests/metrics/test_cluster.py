"""The shared metrics table on SQLite and PostgreSQL: several processes — here, several
`ClusterMetrics` each with its own registry and its own database connection(s), as separate
processes have — publish, read each other, and fold the rows of dead ones exactly once,
also when they clean at the same time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from shipyard.metrics.cluster import RETIRED, TABLE, ClusterMetrics
from shipyard.tools.db import Database, connect
from shipyard.tools.metrics import Registry, exposition
from tests.helpers.promtext import samples, value

INTERVAL = 0.5


class Proc:
    """One process's part: a registry with a request counter and a memory gauge."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.registry = Registry()
        self.requests = self.registry.counter("t_requests_total", "Requests.", ("route",))
        self.memory = self.registry.gauge("t_memory_bytes", "Memory.", merge="process")
        self.memory.set(1000.0)
        self.cluster = ClusterMetrics(db, self.registry, INTERVAL)

    def count(self, n: int) -> None:
        self.requests.inc(("/x",), n)


def with_dbs(body: Callable[[list[Database]], Awaitable[None]]) -> Callable[[str, Path], None]:
    """A test running `body` with three connections (pools on PostgreSQL) to one fresh
    database, like three processes have."""

    def test(database_url: str, tmp_path: Path) -> None:
        async def main() -> None:
            dbs = [await connect(database_url, tmp_path / "data.db") for _ in range(3)]
            try:
                await body(dbs)
            finally:
                for db in dbs:
                    await db.close()

        asyncio.run(main())

    test.__doc__ = body.__doc__
    return test


async def _procs(dbs: list[Database]) -> list[Proc]:
    procs = [Proc(db) for db in dbs]
    await procs[0].cluster.ensure_schema()
    return procs


async def _age(db: Database, instance: str, seconds: float) -> None:
    """Make a process look silent for `seconds` (as if it had died that long ago)."""
    await db.execute(
        f'UPDATE "{TABLE}" SET "updated" = "updated" - ? WHERE "instance" = ?', (seconds, instance)
    )


async def _rows(db: Database) -> set[str]:
    return {str(r[0]) for r in await db.fetchall(f'SELECT "instance" FROM "{TABLE}"')}


def _instances(text: str) -> set[str]:
    return {labels["instance"] for n, labels, _ in samples(text) if n == "t_memory_bytes"}


@with_dbs
async def test_every_process_is_counted_once(dbs: list[Database]) -> None:
    a, b, c = await _procs(dbs)
    for p, n in ((a, 3), (b, 5), (c, 7)):
        p.count(n)
        await p.cluster.publish()
    a.count(10)  # not published yet: the reader's own live values count
    text = exposition(await a.cluster.read())
    assert value(text, "t_requests_total", route="/x") == 3 + 10 + 5 + 7
    assert _instances(text) == {a.cluster.instance, b.cluster.instance, c.cluster.instance}
    # every reader sees the same totals (b reads a's stored row: 3, not its live 13)
    assert value(exposition(await b.cluster.read()), "t_requests_total") == 3 + 5 + 7


@with_dbs
async def test_a_dead_process_keeps_its_counts_and_loses_its_series(dbs: list[Database]) -> None:
    a, b, _ = await _procs(dbs)
    a.count(2)
    b.count(40)
    await a.cluster.publish()
    await b.cluster.publish()
    await _age(a.db, b.cluster.instance, 3 * INTERVAL + 1)
    # not folded yet: readers already count it as dead
    text = exposition(await a.cluster.read())
    assert value(text, "t_requests_total") == 42
    assert _instances(text) == {a.cluster.instance}
    assert await a.cluster.reap() == 1
    assert await _rows(a.db) == {RETIRED, a.cluster.instance}
    text = exposition(await a.cluster.read())
    assert value(text, "t_requests_total") == 42
    assert _instances(text) == {a.cluster.instance}
    assert await a.cluster.reap() == 0  # nothing left to fold


@with_dbs
async def test_processes_cleaning_at_once_fold_each_row_once(dbs: list[Database]) -> None:
    procs = await _procs(dbs)
    dead = [Proc(dbs[i % 3]) for i in range(6)]
    for i, p in enumerate(dead):
        p.count(i + 1)
        await p.cluster.publish()
        await _age(p.db, p.cluster.instance, 3 * INTERVAL + 1)
    folded = await asyncio.gather(*(p.cluster.reap() for p in procs))
    assert sum(folded) == 6
    text = exposition(await procs[0].cluster.read())
    assert value(text, "t_requests_total") == sum(range(1, 7))
    assert await _rows(dbs[0]) == {RETIRED}


@with_dbs
async def test_a_stalled_process_republishes_only_what_is_new(dbs: list[Database]) -> None:
    a, b, _ = await _procs(dbs)
    b.count(5)
    await b.cluster.publish()
    first = b.cluster.instance
    await _age(a.db, first, 3 * INTERVAL + 1)
    assert await a.cluster.reap() == 1  # b looked dead and was folded
    b.count(2)  # … but it was only stalled, and goes on
    await b.cluster.publish()
    assert b.cluster.instance != first
    text = exposition(await a.cluster.read())
    assert value(text, "t_requests_total") == 7
    assert _instances(text) == {b.cluster.instance}  # a never published


@with_dbs
async def test_a_clean_stop_folds_its_own_row(dbs: list[Database]) -> None:
    a, b, _ = await _procs(dbs)
    a.count(1)
    b.count(4)
    await a.cluster.publish()
    await b.cluster.publish()
    b.count(1)  # counted after its last publication: retire publishes it
    await b.cluster.retire()
    assert await _rows(a.db) == {RETIRED, a.cluster.instance}
    text = exposition(await a.cluster.read())
    assert value(text, "t_requests_total") == 6
    assert _instances(text) == {a.cluster.instance}
    listed = await a.cluster.processes()
    assert [p["instance"] for p in listed] == [a.cluster.instance]


@with_dbs
async def test_off_reads_nothing(dbs: list[Database]) -> None:
    (a, *_) = await _procs(dbs)
    off = ClusterMetrics(dbs[0], a.registry, INTERVAL, enabled=False)
    a.count(1)
    await a.cluster.publish()
    assert await off.read() == {}
