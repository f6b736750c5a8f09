"""Backups tests: an S3 server (moto) for the session, started when a test asks for it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.s3 import moto_server


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    with moto_server() as url:
        yield url
