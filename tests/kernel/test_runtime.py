"""The runtime settings registry (kernel/runtime.py) over `_params` (tools/params.py), on
SQLite and PostgreSQL, with a section of its own: it knows no capability's settings.
Precedence, types and checks, values stored by hand, two registries on one database
writing at once, and the declaration rules."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from shipyard.kernel.errors import ApiError, FieldError
from shipyard.kernel.runtime import Field, RuntimeSettings, Section, between, required
from shipyard.tools.db import Database, connect
from shipyard.tools.params import ParamsStore


@dataclass(frozen=True)
class Base:
    """Start-up settings of a made-up capability."""

    greeting: str = "hello"
    limit: int = 10
    mode: str = "fast"
    token: str = field(default="", repr=False)
    sources: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)


def _both_or_none(values: Mapping[str, Any]) -> dict[str, FieldError]:
    if values["limit"] > 100 and values["mode"] == "fast":
        return {"mode": FieldError("validation_in_invalid", "Not with a limit over 100.")}
    return {}


DEMO = Section(
    "demo",
    (
        Field("greeting", "string", "greeting", checks=(required,)),
        Field("limit", "integer", "limit", checks=(between(1, 1000),)),
        Field("mode", "string", "mode", enum=("fast", "safe")),
        Field("token", "string", "token", secret=True),
        Field("loud", "boolean", base=lambda s: s.greeting.isupper(), locked_by=("greeting",)),
    ),
    validate=_both_or_none,
)

Body = Callable[[Database], Awaitable[None]]


def run(database_url: str, tmp_path: Path, body: Body) -> None:
    async def main() -> None:
        db = await connect(database_url, tmp_path / "data.db")
        try:
            await body(db)
        finally:
            await db.close()

    asyncio.run(main())


async def _registry(db: Database, base: Base | None = None) -> RuntimeSettings[Base]:
    rt = RuntimeSettings(ParamsStore(db), base or Base())
    rt.declare(DEMO)
    await rt.open()
    return rt


async def _error(rt: RuntimeSettings[Base], body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    with pytest.raises(ApiError) as exc:
        await rt.update(body)
    assert exc.value.status == 400
    return exc.value.message, exc.value.data


def test_defaults_stored_values_and_start_up_values(database_url: str, tmp_path: Path) -> None:
    async def body(db: Database) -> None:
        rt = await _registry(db)
        assert rt.public() == {
            "demo": {"greeting": "hello", "limit": 10, "mode": "fast", "loud": False},
            "readOnly": {},
        }
        await rt.update({"demo": {"greeting": "HI", "limit": 50, "token": "t0k"}})
        now = await rt.current()
        assert (now.greeting, now.limit, now.token, rt.value("demo", "loud")) == (
            "HI",
            50,
            "t0k",
            False,  # `loud` follows the start-up greeting, not the stored one
        )
        # the start-up object wins where it set a value explicitly
        explicit = Base(greeting="YO", token="env", sources={"greeting": "G", "token": "T"})
        locked = await _registry(db, explicit)
        cur = await locked.current()
        assert (cur.greeting, cur.limit, cur.token) == ("YO", 50, "env")
        assert locked.public()["readOnly"] == {
            "demo.greeting": "G",
            "demo.token": "T",
            "demo.loud": "G",
        }
        assert locked.public()["demo"]["loud"] is True
        # another registry (process) sees each write at its next read
        await locked.update({"demo": {"limit": 60, "greeting": "YO", "loud": True}})
        assert (await rt.current()).limit == 60
        await rt.update({"demo": {"limit": None}})  # forgotten: the default again
        assert (await locked.current()).limit == 10

    run(database_url, tmp_path, body)


def test_errors(database_url: str, tmp_path: Path) -> None:
    async def body(db: Database) -> None:
        rt = await _registry(db, Base(sources={"greeting": "SHIPYARD_GREETING"}))
        message, data = await _error(rt, {"demo": {"limit": "5", "nope": 1}, "other": {}})
        assert message == "An error occurred while loading the submitted data."
        assert data == {
            "demo": {
                "limit": {"code": "validation_invalid_value", "message": "Must be an integer."},
                "nope": {
                    "code": "validation_unknown_field",
                    "message": "Shipyard has no such setting.",
                },
            },
            "other": {
                "code": "validation_unknown_field",
                "message": "Shipyard has no settings of this name.",
            },
        }
        message, data = await _error(
            rt, {"demo": {"limit": 500, "greeting": "changed", "mode": "slow"}}
        )
        assert message == "An error occurred while saving the new settings."
        assert data == {
            "demo": {
                "greeting": {
                    "code": "validation_read_only",
                    "message": "Read-only: set by SHIPYARD_GREETING, which takes precedence "
                    "over stored settings.",
                },
                "mode": {"code": "validation_in_invalid", "message": "Must be a valid value."},
            }
        }
        _, data = await _error(rt, {"demo": {"limit": 500}})  # the section's own rule
        assert data["demo"]["mode"]["message"] == "Not with a limit over 100."
        _, data = await _error(rt, {"demo": {"limit": 0}})
        assert data["demo"]["limit"]["code"] == "validation_min_greater_equal_than_required"
        assert await ParamsStore(db).load() == (0, {})  # nothing written, not even the counter

    run(database_url, tmp_path, body)


def test_values_stored_by_hand_that_do_not_fit_are_ignored(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def body(db: Database) -> None:
        rt = await _registry(db)
        doc = '{"limit": "many", "mode": "warp", "greeting": "ok", "token": 5}'
        await db.execute(
            """INSERT INTO "_params" ("key", "value", "updated") VALUES ('demo', ?, '')""", (doc,)
        )
        await db.execute(
            """INSERT INTO "_params" ("key", "value", "updated") VALUES ('junk', 'x', '')"""
        )
        await db.execute("""UPDATE "_params" SET "value" = '7' WHERE "key" = '_version'""")
        now = await rt.current()
        assert (now.greeting, now.limit, now.mode, now.token) == ("ok", 10, "fast", "")

    caplog.set_level(logging.WARNING)
    run(database_url, tmp_path, body)
    warned = [r.getMessage() for r in caplog.records]
    assert sum("stored setting demo." in m for m in warned) == 3
    assert any("'junk' is not a JSON object" in m for m in warned)
    assert not any("warp" in m or "many" in m for m in warned)  # values stay out of the log


def test_concurrent_writers_keep_each_others_changes(database_url: str, tmp_path: Path) -> None:
    async def body(db: Database) -> None:
        one, two = await _registry(db), await _registry(db)
        await asyncio.gather(
            *(one.update({"demo": {"limit": n}}) for n in range(1, 11)),
            *(two.update({"demo": {"greeting": f"g{n}"}}) for n in range(1, 11)),
        )
        version, docs = await ParamsStore(db).load()
        assert version == 20
        assert set(docs["demo"]) == {"limit", "greeting"}
        assert (await one.current()) == (await two.current())

    run(database_url, tmp_path, body)


def test_declaration_rules() -> None:
    rt = RuntimeSettings(ParamsStore(None), Base())  # never opened: no database needed
    rt.declare(DEMO)
    for name in ("demo", "readOnly", "_version"):
        with pytest.raises(ValueError, match="taken or reserved"):
            rt.declare(Section(name, ()))
    with pytest.raises(ValueError, match="needs a setting or a base"):
        rt.declare(Section("x", (Field("orphan", "string"),)))
    with pytest.raises(ValueError, match="limit has a field already"):
        rt.declare(Section("x", (Field("again", "integer", "limit"),)))
    own = Field("own", "integer", base=lambda s: 1)  # no start-up setting: any number of these
    rt.declare(Section("x", (own,)), Section("y", (own,)))
    assert [s.name for s in rt.sections] == ["demo", "x", "y"]
    assert "t0k" not in repr(rt)
