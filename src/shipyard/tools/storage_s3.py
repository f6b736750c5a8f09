"""Storage in any S3-compatible bucket (AWS, MinIO, R2, moto…) through aiobotocore.

Large files go up as multipart uploads of `PART` bytes, read one part at a time, and come
down as ranged GETs streamed in chunks: memory per transfer stays bounded."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from aiobotocore.session import get_session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from shipyard.tools.storage import CHUNK, Listed, Stat, StorageError, check_key

PART = 8 * 1024 * 1024  # S3's parts are at least 5 MiB (but the last)


@dataclass(frozen=True)
class S3Config:
    bucket: str
    region: str = ""
    endpoint: str = ""
    access_key: str = ""
    secret: str = ""
    force_path_style: bool = False


def _missing(exc: ClientError) -> bool:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NotFound")


class S3Storage:
    def __init__(self, config: S3Config) -> None:
        self.config = config
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None

    async def _s3(self) -> Any:
        if self._client is None:
            c = self.config
            self._client = await self._stack.enter_async_context(
                get_session().create_client(
                    "s3",
                    region_name=c.region or "us-east-1",
                    endpoint_url=c.endpoint or None,
                    aws_access_key_id=c.access_key or None,
                    aws_secret_access_key=c.secret or None,
                    config=Config(
                        s3={"addressing_style": "path" if c.force_path_style else "auto"},
                        retries={"max_attempts": 3, "mode": "standard"},
                        connect_timeout=10,
                        read_timeout=60,
                    ),
                )
            )
        return self._client

    async def put_file(self, key: str, file: BinaryIO, size: int, content_type: str) -> None:
        s3, bucket = await self._s3(), self.config.bucket
        file.seek(0)
        try:
            if size <= PART:
                await s3.put_object(
                    Bucket=bucket, Key=check_key(key), Body=file.read(), ContentType=content_type
                )
                return
            up = await s3.create_multipart_upload(
                Bucket=bucket, Key=check_key(key), ContentType=content_type
            )
            parts = []
            try:
                n = 1
                while chunk := file.read(PART):
                    got = await s3.upload_part(
                        Bucket=bucket, Key=key, UploadId=up["UploadId"], PartNumber=n, Body=chunk
                    )
                    parts.append({"ETag": got["ETag"], "PartNumber": n})
                    n += 1
                await s3.complete_multipart_upload(
                    Bucket=bucket,
                    Key=key,
                    UploadId=up["UploadId"],
                    MultipartUpload={"Parts": parts},
                )
            except BaseException:
                with contextlib.suppress(ClientError, BotoCoreError):
                    await s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=up["UploadId"])
                raise
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"S3 upload of {key} failed: {exc}") from exc

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        s3 = await self._s3()
        try:
            await s3.put_object(
                Bucket=self.config.bucket, Key=check_key(key), Body=data, ContentType=content_type
            )
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"S3 upload of {key} failed: {exc}") from exc

    async def stat(self, key: str) -> Stat | None:
        s3 = await self._s3()
        try:
            head = await s3.head_object(Bucket=self.config.bucket, Key=check_key(key))
        except ClientError as exc:
            if _missing(exc):
                return None
            raise StorageError(f"S3 stat of {key} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"S3 stat of {key} failed: {exc}") from exc
        return Stat(
            int(head["ContentLength"]),
            str(head.get("ContentType") or "application/octet-stream"),
            head["LastModified"].timestamp(),
            str(head.get("ETag") or ""),
        )

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        s3 = await self._s3()
        ranged = {} if start == 0 and end is None else {"Range": f"bytes={start}-{end or ''}"}
        try:
            got = await s3.get_object(Bucket=self.config.bucket, Key=check_key(key), **ranged)
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"S3 read of {key} failed: {exc}") from exc
        async with got["Body"] as body:
            while chunk := await body.read(CHUNK):
                yield chunk

    async def delete(self, keys: Sequence[str]) -> None:
        s3 = await self._s3()
        for start in range(0, len(keys), 1000):
            batch = [{"Key": check_key(k)} for k in keys[start : start + 1000]]
            try:
                await s3.delete_objects(
                    Bucket=self.config.bucket, Delete={"Objects": batch, "Quiet": True}
                )
            except (ClientError, BotoCoreError) as exc:
                raise StorageError(f"S3 delete failed: {exc}") from exc

    async def delete_prefix(self, prefix: str) -> None:
        s3 = await self._s3()
        prefix = check_key(prefix.rstrip("/")) + "/"
        try:
            pages = s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.config.bucket, Prefix=prefix
            )
            keys = [o["Key"] async for page in pages for o in page.get("Contents", [])]
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"S3 listing of {prefix} failed: {exc}") from exc
        await self.delete(keys)

    async def listing(self, prefix: str = "") -> list[Listed]:
        s3 = await self._s3()
        try:
            pages = s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.config.bucket, Prefix=prefix
            )
            found = [
                Listed(o["Key"], int(o["Size"]), o["LastModified"].timestamp())
                async for page in pages
                for o in page.get("Contents", [])
            ]
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"S3 listing of {prefix!r} failed: {exc}") from exc
        return sorted(found, key=lambda item: item.key)

    async def close(self) -> None:
        self._client = None
        await self._stack.aclose()
