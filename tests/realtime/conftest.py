"""Realtime's servers: per database two `shipyard serve` processes on one database (a
subscriber on one, writes on the other), started once per test session (and xdist worker)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.realtime import Pair, start_pair


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def pair(request: pytest.FixtureRequest) -> Iterator[Pair]:
    yield from start_pair(str(request.param), request)
