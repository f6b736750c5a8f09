"""Auth tokens shaped like PocketBase's, so the JS SDK's auth store works (passwords: passwords.py).

A token is signed with `settings.secret_key + collection secret + record tokenKey`: rotating
the record's tokenKey (done on every password change) invalidates every token it was given.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import jwt

from shipyard.records.collections import SUPERUSERS, Collection


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


# Verified tokens, so a request with a token seen before skips PyJWT's two decodes (two thirds
# of a write's auth cost). The caller still reads the record each time: a hit only stands
# when the signing key derived from the current tokenKey is the one that verified it, so a
# rotated key (password change, in any process) or an expired token verifies afresh.
_VERIFIED_MAX = 4096  # tokens; the oldest goes first, a miss only costs a decode
_verified: dict[str, tuple[dict[str, Any], str]] = {}  # token -> (claims, signing key)


def _auth_shaped(claims: Any) -> bool:
    return (
        isinstance(claims, dict)
        and claims.get("type") == "auth"
        and isinstance(claims.get("id"), str)
        and isinstance(claims.get("collectionId"), str)
    )


def unverified_claims(token: str) -> dict[str, Any] | None:
    """Read claims only to find the record whose key verifies the signature next."""
    hit = _verified.get(token)
    if hit is not None:
        return dict(hit[0])
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    return claims if _auth_shaped(claims) else None


def verify_token(secret_key: str, token: str, collection: Collection, token_key: str) -> bool:
    key = _signing_key(secret_key, collection, token_key)
    hit = _verified.get(token)
    if hit is not None and hit[1] == key and hit[0]["exp"] > time.time():
        return True
    try:
        claims = jwt.decode(token, key, algorithms=["HS256"], options={"require": ["exp"]})
    except jwt.PyJWTError:
        return False
    # only claims whose validity is the signature and `exp` alone (no `nbf`/`iat` checks)
    exp = claims.get("exp")
    if _auth_shaped(claims) and isinstance(exp, int | float) and not {"nbf", "iat"} & set(claims):
        if len(_verified) >= _VERIFIED_MAX:
            # another thread (a second app in one process) may be evicting too
            with contextlib.suppress(StopIteration, RuntimeError):
                _verified.pop(next(iter(_verified)), None)
        _verified[token] = (claims, key)
    return True
