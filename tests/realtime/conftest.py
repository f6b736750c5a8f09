"""Realtime's servers: per database two `shipyard serve` processes on one database (a
subscriber on one, writes on the other), started once per run and shared by the xdist
workers (tests/helpers/realtime.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.realtime import Pair, start_pair


@pytest.fixture(scope="session")
def sqlite_pair(request: pytest.FixtureRequest) -> Iterator[Pair]:
    yield from start_pair("sqlite", request)


@pytest.fixture(scope="session")
def postgres_pair(request: pytest.FixtureRequest) -> Iterator[Pair]:
    yield from start_pair("postgres", request)


@pytest.fixture
def pair(request: pytest.FixtureRequest) -> Pair:
    """The pair of the backend each module parametrizes it with (`ON_BACKENDS`)."""
    found: Pair = request.getfixturevalue(f"{request.param}_pair")
    return found
