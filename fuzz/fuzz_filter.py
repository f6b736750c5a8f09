"""Fuzz the filter and sort language: parse, compile for SQLite and PostgreSQL, run on SQLite.

An input is a filter as a client sends it (`?filter=` decoded as UTF-8, undecodable bytes
replaced, as the gateway does). The only allowed failure is the documented one: an ApiError
400 (FilterSyntaxError from the bare parser). Anything else, a 5xx, or SQL that SQLite
refuses to run, is a crash. The filter's first line is also tried as a sort.

    python fuzz/fuzz_filter.py -max_total_time=600 fuzz/corpus/filter   # a longer run
"""

from __future__ import annotations

import contextlib
import sqlite3
import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' schema, below

with atheris.instrument_imports(include=["shipyard"]):
    from shipyard.kernel.errors import ApiError
    from shipyard.records.query import compile_filter, compile_sort
    from shipyard.tools.filterexpr import FilterSyntaxError, parse, parse_sort

# the filter compiler's test schema: seven collections related in every way it handles
from tests.helpers.query_schema import ALL, NOW, POSTS, REGISTRY, REQUEST


def _database() -> sqlite3.Connection:
    """One row per table, every column at its zero value, so that compiled SQL is run."""
    db = sqlite3.connect(":memory:", isolation_level=None)
    for c in ALL:
        cols = ['"id" TEXT PRIMARY KEY NOT NULL']
        cols += [f'"{f.name}" {f.column_type("sqlite")}' for f in c.fields if f.name != "id"]
        db.execute(f'CREATE TABLE "{c.name}" ({", ".join(cols)})')
        db.execute(f"INSERT INTO \"{c.name}\" (id) VALUES ('r1')")
    return db


DB = _database()


def _check(exc: ApiError) -> None:
    if exc.status != 400:
        raise exc


def test_one(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    with contextlib.suppress(FilterSyntaxError):
        parse(text)
    for dialect in ("sqlite", "postgres"):
        try:
            sql, params = compile_filter(text, POSTS, REGISTRY, dialect, request=REQUEST, now=NOW)
        except ApiError as exc:
            _check(exc)
            continue
        if dialect == "sqlite":
            DB.execute(f'SELECT "_r"."id" FROM "posts" AS "_r" WHERE {sql}', params).fetchall()
    sort = text.split("\n", 1)[0]
    with contextlib.suppress(FilterSyntaxError):
        parse_sort(sort)
    try:
        body = compile_sort(sort, POSTS, REGISTRY, "sqlite")
    except ApiError as exc:
        _check(exc)
        return
    if body:
        DB.execute(f'SELECT "_r"."id" FROM "posts" AS "_r" ORDER BY {body}').fetchall()


def main() -> None:
    atheris.Setup(sys.argv, test_one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
