"""Shared set-up of the security suite.

Building a world of collections, users and records costs seconds (every sign-up and login
runs argon2id on purpose), far too much to repeat for each of the several hundred
authorization cases. So each backend gets ONE running app per test session (per xdist
worker), built exactly like the `client` fixture of tests/conftest.py, and each test module
builds its world into it once (`SharedApp.world`). Tests that change state work on records
and users of their own; tests that need an app of their own (other settings, counters that
must start at zero) use the function-scoped `client` fixture instead.

Every failed password login counts against the client address ("testclient"), so nothing
run against a shared app may fail a login: brute-force tests use apps of their own.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.security import (
    BACKENDS,
    SharedApp,
    SharedApps,
)


@pytest.fixture(scope="session")
def shared_apps(
    tmp_path_factory: pytest.TempPathFactory, pg_admin_url: str
) -> Iterator[SharedApps]:
    # depends on pg_admin_url so that the PostgreSQL server outlives the apps using it
    apps = SharedApps(tmp_path_factory, pg_admin_url)
    with apps.stack:
        yield apps


@pytest.fixture(scope="module", params=BACKENDS)
def shared(request: pytest.FixtureRequest, shared_apps: SharedApps) -> SharedApp:
    """The running app of this backend, shared by the whole session."""
    return shared_apps.get(str(request.param))
