"""The PostgreSQL tools' invocation: the password never on a command line, and a clear
refusal when no pg_dump can dump the server."""

from __future__ import annotations

import pytest

from shipyard.backups import pg_copy


def test_the_password_goes_in_the_environment() -> None:
    arg, env = pg_copy._dbname("postgresql://app:s3cr%40t@db.example.com:5433/shop?sslmode=require")
    assert "s3cr" not in arg
    assert env["PGPASSWORD"] == "s3cr@t"
    assert "host=db.example.com" in arg
    assert "port=5433" in arg
    assert "dbname=shop" in arg
    assert "sslmode=require" in arg


def test_no_usable_pg_dump_is_a_clear_error() -> None:
    with pytest.raises(pg_copy.PgToolError, match="no pg_dump of version 99 or newer"):
        pg_copy.pick_pg_dump("", 99)
    with pytest.raises(pg_copy.PgToolError, match="SHIPYARD_BACKUPS_PG_DUMP"):
        pg_copy.pick_pg_dump("/nonexistent/pg_dump", 10)
