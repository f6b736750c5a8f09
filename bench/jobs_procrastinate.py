"""procrastinate app for `bench/jobs.py`: the same two tasks as `bench/jobs_hooks.py` (a
no-op, and one that records when its handler started). Workers run it as
`python -m procrastinate --app=jobs_procrastinate.app worker` with `bench/` on PYTHONPATH
and the database in `$BENCH_PG_URL`; the bench itself builds one app per fresh database with
`make_app(url)`.

The connection pool gets the same maximum as Shipyard's default (`SHIPYARD_DB_POOL_MAX`,
10); both also hold one separate connection for LISTEN.
"""

from __future__ import annotations

import os

from jobs_stamp import stamp
from procrastinate import App, PsycopgConnector

POOL_MIN, POOL_MAX = 1, 10


async def noop() -> None:
    return None


async def stamp_task(i: int) -> None:
    stamp("procrastinate", i)


def make_app(url: str) -> App:
    app = App(connector=PsycopgConnector(conninfo=url, min_size=POOL_MIN, max_size=POOL_MAX))
    app.task(name="bench_noop")(noop)
    app.task(name="bench_stamp")(stamp_task)
    return app


app = make_app(os.environ.get("BENCH_PG_URL", ""))
