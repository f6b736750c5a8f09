"""Passwords: argon2id hashing and checking, off the event loop and bounded per process.

One hash or check costs tens of milliseconds of CPU and 64 MiB, on purpose. Run on the
event loop it would stall every other request (cached reads included); unbounded, a burst
of sign-ups or logins would exhaust CPU and memory. So argon2 runs in a pool of `limit`
threads (it releases the GIL), and a request beyond the limit is refused at once with 503
and `Retry-After` rather than queued, which would only turn the overload into latency.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from shipyard.kernel.errors import ApiError, FieldError

T = TypeVar("T")
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


def hashing_busy() -> ApiError:
    return ApiError(
        503,
        "Too many password checks are running; try again in a moment.",
        headers={"Retry-After": "1"},
    )


class PasswordHashing:
    """hash/verify in a pool of `limit` threads; a 503 when every slot is taken."""

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


# ---------------------------------------------------------------------- passwords of writes


@dataclass
class NewPassword:
    """A password a write will set, hashed only once the write is otherwise valid (record
    validation is synchronous; argon2 runs later, off the event loop)."""

    plain: str
    old_hash: str | None = None  # set: `old_password` must verify against it first
    old_password: str = ""

    def old_key(self) -> tuple[str, ...]:
        return ("verify", str(self.old_hash), self.old_password)


Done = dict[tuple[str, ...], Any]  # argon2 results by input, computed outside a transaction


class HashLater(Exception):
    """argon2 work due inside a transaction: the caller leaves it (nothing written yet),
    runs the work outside with `run` and tries the write again with the results."""

    def __init__(self, pending: list[NewPassword], hash_too: bool) -> None:
        super().__init__("argon2 work outside the transaction")
        self.pending = pending
        self.hash_too = hash_too

    async def run(self, hashing: PasswordHashing, done: Done) -> None:
        for new in self.pending:
            ok = True
            if new.old_hash is not None:
                ok = bool(new.old_password)
                if ok and new.old_key() not in done:
                    done[new.old_key()] = await hashing.verify(new.old_hash, new.old_password)
                ok = ok and bool(done[new.old_key()])
            if ok and self.hash_too and ("hash", new.plain) not in done:
                done[("hash", new.plain)] = await hashing.hash(new.plain)


def _old_password_ok(new: NewPassword, done: Done) -> bool | None:
    """Whether the old password checks out; None while that needs argon2."""
    if new.old_hash is None:
        return True
    if not new.old_password:
        return False
    return done.get(new.old_key())


async def hash_new_passwords(
    hashing: PasswordHashing, values: dict[str, Any], errors: dict[str, Any], done: Done | None
) -> None:
    """Replace each NewPassword in `values` by its hash; a wrong old password is reported
    as PocketBase does (`oldPassword`). Nothing is hashed for a write that will fail.

    Inside a transaction pass `done`: work not found there raises HashLater instead of
    running argon2 while the transaction (on SQLite: the process's database) is held.
    """
    pending = [(k, values.pop(k)) for k, v in list(values.items()) if isinstance(v, NewPassword)]
    results: Done = {} if done is None else done
    if done is None:  # no transaction held: run what is due right here
        await HashLater([new for _, new in pending], not errors).run(hashing, results)
    for _, new in pending:
        ok = _old_password_ok(new, results)
        if ok is None or (ok and not errors and ("hash", new.plain) not in results):
            raise HashLater([new for _, new in pending], not errors)
    for name, new in pending:
        if not _old_password_ok(new, results):
            errors["oldPassword"] = FieldError(
                "validation_invalid_old_password", "Missing or invalid old password."
            )
        elif not errors:
            values[name] = results[("hash", new.plain)]


async def outside_transaction(
    hashing: PasswordHashing, attempt: Callable[[Done | None], Awaitable[T]]
) -> T:
    """Run a write whose transaction calls hash_new_passwords with the `done` it is given:
    a pass that finds argon2 work due gives up (HashLater), the work runs here, outside any
    transaction, and the write is tried again with the results. Should a stored hash keep
    changing under it, the last try runs argon2 in the transaction after all."""
    done: Done = {}
    for _ in range(3):
        try:
            return await attempt(done)
        except HashLater as later:
            await later.run(hashing, done)
    return await attempt(None)
