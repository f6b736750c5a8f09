"""A real S3 server for tests (moto's, the one installable here) and fresh buckets on it.
(tests/files/conftest.py has the same for the files tests; this copy is importable.)"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator

from tests.helpers.servers import free_port


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """An S3 endpoint URL, served from a thread until the block ends."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    srv = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    srv.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.stop()


def s3_client(endpoint: str) -> object:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def new_bucket(endpoint: str) -> str:
    name = "shipyard-" + secrets.token_hex(6)
    s3_client(endpoint).create_bucket(Bucket=name)  # type: ignore[attr-defined]
    return name


def s3_env(endpoint: str, bucket: str, prefix: str = "SHIPYARD_S3_") -> dict[str, str]:
    """The settings of a bucket on it, for the files' storage or (with `prefix`
    SHIPYARD_BACKUPS_S3_) the backups'."""
    return {
        f"{prefix}ENABLED": "true",
        f"{prefix}BUCKET": bucket,
        f"{prefix}REGION": "us-east-1",
        f"{prefix}ENDPOINT": endpoint,
        f"{prefix}ACCESS_KEY": "test",
        f"{prefix}SECRET": "test",
        f"{prefix}FORCE_PATH_STYLE": "true",
    }
