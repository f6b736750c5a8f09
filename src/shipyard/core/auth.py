"""Passwords (argon2id) and auth tokens shaped like PocketBase's, so the JS SDK's auth store works.

A token is signed with `settings.secret_key + collection secret + record tokenKey`: rotating
the record's tokenKey (done on every password change) invalidates every token it was given.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from shipyard.core.collections import SUPERUSERS, Collection
from shipyard.core.errors import ApiError, FieldError

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
_DUMMY_HASH = _hasher.hash("shipyard-timing-equalizer")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(hashed: str, password: str) -> bool:
    """Constant-ish time: an unknown identity still pays for one verification."""
    try:
        return _hasher.verify(hashed or _DUMMY_HASH, password) and bool(hashed)
    except (VerificationError, InvalidHashError):
        return False


T = TypeVar("T")


def hashing_busy() -> ApiError:
    return ApiError(
        503,
        "Too many password checks are running; try again in a moment.",
        headers={"Retry-After": "1"},
    )


class PasswordHashing:
    """argon2id off the event loop, at most `limit` at once in this process.

    One hash or verification costs tens of milliseconds of CPU and 64 MiB: run on the event
    loop it stalls every other request (cached reads included), and unbounded a burst of
    sign-ups or logins exhausts CPU and memory. So argon2 runs in a pool of `limit` threads
    (it releases the GIL) and a request beyond the limit is refused at once with 503 and
    `Retry-After` rather than queued, which would only turn the overload into latency.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._running = 0
        self._lock = threading.Lock()  # released from pool threads
        self._pool = ThreadPoolExecutor(max_workers=limit, thread_name_prefix="argon2")

    @property
    def running(self) -> int:
        return self._running

    def refuse_if_busy(self) -> None:
        """A 503 now, before any other work, if every slot is taken."""
        if self._running >= self.limit:
            raise hashing_busy()

    async def hash(self, password: str) -> str:
        return await self._run(hash_password, password)

    async def verify(self, hashed: str, password: str) -> bool:
        return await self._run(verify_password, hashed, password)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        with self._lock:
            if self._running >= self.limit:
                raise hashing_busy()
            self._running += 1
        try:
            job = self._pool.submit(fn, *args)
        except BaseException:
            self._done(None)
            raise
        # the slot is freed when the thread finishes, even if the request was cancelled
        job.add_done_callback(self._done)
        return await asyncio.wrap_future(job)

    def _done(self, _: Future[Any] | None) -> None:
        with self._lock:
            self._running -= 1

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


@dataclass
class NewPassword:
    """A password a write will set, hashed only once the write is otherwise valid (the
    record code validates synchronously; argon2 must run off the event loop)."""

    plain: str
    old_hash: str | None = None  # set: `old_password` must verify against it first
    old_password: str = ""


async def hash_new_passwords(
    hashing: PasswordHashing, values: dict[str, Any], errors: dict[str, Any]
) -> None:
    """Replace each NewPassword in `values` by its hash; a wrong old password is reported
    as PocketBase does (`oldPassword`). Nothing is hashed for a write that will fail."""
    pending = [k for k, v in values.items() if isinstance(v, NewPassword)]
    for name in pending:
        new: NewPassword = values.pop(name)
        if new.old_hash is not None and not (
            new.old_password and await hashing.verify(new.old_hash, new.old_password)
        ):
            errors["oldPassword"] = FieldError(
                "validation_invalid_old_password", "Missing or invalid old password."
            )
        elif not errors:
            values[name] = await hashing.hash(new.plain)


@dataclass
class Auth:
    """Who is asking: nobody, or a record of an auth collection."""

    collection: Collection | None = None
    record: dict[str, Any] = field(default_factory=dict)
    refreshable: bool = True  # impersonation tokens are not

    @property
    def is_superuser(self) -> bool:
        return self.collection is not None and self.collection.name == SUPERUSERS

    @property
    def id(self) -> str:
        return str(self.record.get("id", ""))


ANONYMOUS = Auth()


def _signing_key(secret_key: str, collection: Collection, token_key: str) -> str:
    secret = collection.options.get("secrets", {}).get("authToken", "")
    return f"{secret_key}{secret}{token_key}"


def issue_token(
    secret_key: str,
    collection: Collection,
    record_id: str,
    token_key: str,
    duration: int,
    refreshable: bool = True,
) -> str:
    now = int(time.time())
    claims = {
        "collectionId": collection.id,
        "exp": now + duration,
        "id": record_id,
        "refreshable": refreshable,
        "type": "auth",
    }
    return jwt.encode(claims, _signing_key(secret_key, collection, token_key), algorithm="HS256")


def unverified_claims(token: str) -> dict[str, Any] | None:
    """Read claims only to find the record whose key verifies the signature next."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    if not isinstance(claims, dict) or claims.get("type") != "auth":
        return None
    if not isinstance(claims.get("id"), str) or not isinstance(claims.get("collectionId"), str):
        return None
    return claims


def verify_token(secret_key: str, token: str, collection: Collection, token_key: str) -> bool:
    try:
        jwt.decode(
            token,
            _signing_key(secret_key, collection, token_key),
            algorithms=["HS256"],
            options={"require": ["exp"]},
        )
    except jwt.PyJWTError:
        return False
    return True
