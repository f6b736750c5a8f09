"""Files tests run on SQLite and PostgreSQL, each with local disk and with S3: a real
S3 server (moto's, the one installable here) started once per test session."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.settings import Settings, load_settings
from tests.helpers.servers import free_port


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    srv = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    srv.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.stop()


def new_bucket(endpoint: str) -> str:
    import boto3

    name = "shipyard-" + secrets.token_hex(6)
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    s3.create_bucket(Bucket=name)
    return name


def s3_env(endpoint: str, bucket: str) -> dict[str, str]:
    return {
        "SHIPYARD_S3_ENABLED": "true",
        "SHIPYARD_S3_BUCKET": bucket,
        "SHIPYARD_S3_REGION": "us-east-1",
        "SHIPYARD_S3_ENDPOINT": endpoint,
        "SHIPYARD_S3_ACCESS_KEY": "test",
        "SHIPYARD_S3_SECRET": "test",
        "SHIPYARD_S3_FORCE_PATH_STYLE": "true",
    }


@pytest.fixture(params=["local", "s3"])
def storage_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def files_env(storage_kind: str, request: pytest.FixtureRequest) -> dict[str, str]:
    if storage_kind == "local":
        return {}
    endpoint = request.getfixturevalue("s3_endpoint")
    return s3_env(endpoint, new_bucket(endpoint))


@pytest.fixture
def settings(database_url: str, tmp_path: Path, files_env: dict[str, str]) -> Settings:
    """The root conftest's `client` is built on these."""
    return load_settings(env=files_env, data_dir=str(tmp_path / "data"), database_url=database_url)
