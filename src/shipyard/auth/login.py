"""Password login, tokens and the auth record lookups every auth route shares.

One object per process, built by the composition root from the parts it needs — no
back-reference to the whole application.
"""

from __future__ import annotations

import math
import secrets
from typing import Any

from shipyard.kernel.errors import ApiError, bad_request
from shipyard.records.auth import (
    ANONYMOUS,
    Auth,
    issue_token,
    unverified_claims,
    verify_token,
)
from shipyard.records.codecs import decode_row
from shipyard.records.collections import Collection, quote_ident, unique_index
from shipyard.records.passwords import PasswordHashing
from shipyard.records.schema import SchemaStore
from shipyard.settings import Settings
from shipyard.tools.attempts import AttemptLimiter
from shipyard.tools.db import Executor
from shipyard.tools.metrics import Registry


class AuthService:
    def __init__(
        self,
        settings: Settings,
        store: SchemaStore,
        db: Executor,
        attempts: AttemptLimiter,
        passwords: PasswordHashing,
        metrics: Registry | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.db = db
        self.attempts = attempts
        self.passwords = passwords
        self.failures = (metrics or Registry()).counter(
            "shipyard_auth_failures_total",
            "Failed password checks (wrong password or unknown identity) and attempts "
            "refused by the brute-force limit.",
        )

    async def _auth_row(
        self, coll: Collection, where: str, args: list[Any]
    ) -> dict[str, Any] | None:
        sh = self.store.shapes.of(coll, "internal")
        row = await self.db.fetchone(
            f'SELECT {sh.columns}, "_r"."password" FROM "{coll.table}" AS "_r" WHERE {where}', args
        )
        if row is None:
            return None
        rec = decode_row(coll, sh, row[:-1])
        rec["password"] = row[-1]
        return rec

    def _identity_match(self, coll: Collection, field: str) -> tuple[str, bool] | None:
        """SQL comparing `field` with one value the way its UNIQUE index compares, and
        whether that ignores (ASCII) case (a COLLATE NOCASE index); None if no such index
        makes the field an identity. So a lookup finds at most one record, and no name
        outside the collection's fields reaches the SQL."""
        idef = unique_index(coll.indexes, field)
        col = '"_r".' + quote_ident(field)
        if idef is None and field == "email" and coll.type == "auth":
            return f"{col} = ?", False  # its index dropped by an old version: as that one did
        if idef is None or coll.field(field) is None:
            return None
        if not idef.columns[0][2]:
            return f"{col} = ?", False
        # the very expressions the engines' indexes are built on (IndexDef.sql)
        if self.db.dialect == "postgres":
            return f"LOWER({col}) = LOWER(?)", True
        return f"{col} = ? COLLATE NOCASE", True

    async def auth_record_by(
        self, coll: Collection, field: str, value: Any
    ) -> dict[str, Any] | None:
        """An auth record with its tokenKey (for signing), by id or by a unique field."""
        if field == "id":
            return await self._auth_row(coll, '"_r"."id" = ?', [value])
        match = self._identity_match(coll, field)
        if match is None:
            raise ValueError(field)
        return await self._auth_row(coll, match[0], [value])

    async def authenticate(self, token: str) -> Auth:
        """The auth record of a valid token; anonymous for an invalid one (as PocketBase)."""
        claims = unverified_claims(token)
        if claims is None:
            return ANONYMOUS
        coll = self.store.get(claims["collectionId"])
        if coll is None or coll.type != "auth":
            return ANONYMOUS
        rec = await self._auth_row(coll, '"_r"."id" = ?', [claims["id"]])
        if rec is None or not verify_token(
            self.settings.secret_key, token, coll, rec.get("tokenKey", "")
        ):
            return ANONYMOUS
        return Auth(
            collection=coll,
            record=public_auth_record(rec),
            refreshable=claims.get("refreshable", True) is not False,
        )

    def token_for(self, coll: Collection, rec: dict[str, Any]) -> str:
        duration = int(coll.options.get("authToken", {}).get("duration") or 0)
        if coll.name == "_superusers":
            duration = self.settings.superuser_token_duration
        return issue_token(
            self.settings.secret_key, coll, rec["id"], rec.get("tokenKey", ""), duration or 604800
        )

    async def auth_with_password(
        self,
        coll: Collection,
        identity: Any,
        password: Any,
        identity_field: Any = None,
        ip: str = "",
    ) -> tuple[str, dict[str, Any]]:
        if coll.type != "auth":
            raise bad_request("The collection is not an auth collection.")
        errors = {}
        if not isinstance(identity, str) or not identity:
            errors["identity"] = {"code": "validation_required", "message": "Cannot be blank."}
        if not isinstance(password, str) or not password:
            errors["password"] = {"code": "validation_required", "message": "Cannot be blank."}
        if errors:
            raise bad_request("An error occurred while validating the submitted data.", errors)
        assert isinstance(identity, str)  # noqa: S101  (narrows a type for mypy; established above)
        assert isinstance(password, str)  # noqa: S101  (narrows a type for mypy; established above)
        fields = coll.options.get("passwordAuth", {}).get("identityFields") or ["email"]
        if identity_field:
            if identity_field not in fields:
                raise bad_request("Invalid identity field.")
            fields = [identity_field]
        # a stored name without a UNIQUE index (saved before that was checked) finds nothing
        matches = [m for m in (self._identity_match(coll, str(n)) for n in fields) if m]
        rec = None
        for where, _ in matches:
            rec = await self._auth_row(coll, where, [identity])
            if rec is not None:
                break
        # an unknown identity's count is shared by the spellings a lookup would not tell apart
        folds = bool(matches) and all(nocase for _, nocase in matches)
        unknown = f"login:id:{coll.id}:{identity.lower() if folds else identity}"
        if not await self.check_password(coll, rec, password, ip, unknown):
            raise ApiError(400, "Failed to authenticate.")
        assert rec is not None  # noqa: S101  (narrows a type for mypy; established above)
        return self.token_for(coll, rec), public_auth_record(rec)

    async def check_password(
        self,
        coll: Collection,
        rec: dict[str, Any] | None,
        password: str,
        ip: str,
        unknown_key: str = "",
    ) -> bool:
        """Whether `password` is the auth record's, as one attempt counted against the account
        and the client address (brute-force protection, docs/settings.md).

        The attempt is reserved before argon2 runs, atomically across processes, so no more
        than the limit of guesses is ever verified per window: past it the answer is 429
        with Retry-After, even for the right password. An unknown identity (`rec` None)
        counts under `unknown_key` and still pays for one verification, so it answers and
        locks like a known one. A right password takes its attempt back and clears the
        account's count. Busy hashing is a 503 that counts nothing.
        """
        s = self.settings
        id_key = f"login:rec:{coll.id}:{rec['id']}" if rec is not None else unknown_key
        ip_key = f"login:ip:{ip}"
        hashing = self.passwords
        hashing.refuse_if_busy()  # before touching the database
        wait = await self.attempts.reserve(
            [(id_key, s.auth_max_failures_per_identity), (ip_key, s.auth_max_failures_per_ip)],
            s.auth_failure_window,
        )
        if wait is not None:
            self.failures.inc()
            seconds = max(1, math.ceil(wait))
            raise ApiError(
                429,
                "Too many failed authentication attempts; try again later.",
                {"retryAfter": seconds},
                headers={"Retry-After": str(seconds)},
            )
        try:
            ok = await hashing.verify(rec["password"] if rec else "", password)
        except ApiError:  # every slot taken meanwhile: this guess was never checked
            await self.attempts.release([id_key, ip_key])
            raise
        if ok and rec is not None:
            await self.attempts.reset([id_key])
            await self.attempts.release([ip_key])
            return True
        self.failures.inc()
        if secrets.randbelow(50) == 0:
            await self.attempts.prune()
        return False

    async def impersonate(
        self, actor: Auth, coll: Collection, rid: str, duration: Any
    ) -> tuple[str, dict[str, Any]]:
        """A superuser acts as a user for support: a token for that record that cannot be
        refreshed and lives `duration` seconds (default: the collection's token duration)."""
        if not actor.is_superuser:
            raise ApiError(403, "Only superusers can perform this action.")
        if coll.type != "auth":
            raise ApiError(404, "Missing or invalid auth collection context.")
        default = int(coll.options.get("authToken", {}).get("duration") or 604800)
        if duration in (None, "", 0):
            duration = default
        if (
            not isinstance(duration, int)
            or isinstance(duration, bool)
            or not 1 <= duration <= 31536000
        ):
            raise bad_request(
                "Invalid duration.",
                {
                    "duration": {
                        "code": "validation_invalid_duration",
                        "message": "Must be 1..31536000 seconds.",
                    }
                },
            )
        rec = await self._auth_row(coll, '"_r"."id" = ?', [rid])
        if rec is None:
            raise ApiError(404, "The requested resource wasn't found.")
        token = issue_token(
            self.settings.secret_key, coll, rec["id"], rec.get("tokenKey", ""), duration, False
        )
        return token, public_auth_record(rec)

    async def refresh(self, auth: Auth) -> tuple[str, dict[str, Any]]:
        if auth.collection is None:
            raise ApiError(401, "The request requires valid record authorization token.")
        if not auth.refreshable:
            raise ApiError(403, "The current auth token is not refreshable.")
        rec = await self._auth_row(auth.collection, '"_r"."id" = ?', [auth.id])
        if rec is None:
            raise ApiError(401, "The request requires valid record authorization token.")
        return self.token_for(auth.collection, rec), public_auth_record(rec)


def public_auth_record(rec: dict[str, Any]) -> dict[str, Any]:
    """An auth record as it may leave the server: no password hash, no tokenKey."""
    return {k: v for k, v in rec.items() if k not in ("password", "tokenKey")}


__all__ = ["ANONYMOUS", "AuthService", "public_auth_record"]
