"""Auth tokens shaped like PocketBase's, so the JS SDK's auth store works (passwords: passwords.py).

A token is signed with `settings.secret_key + collection secret + record tokenKey`: rotating
the record's tokenKey (done on every password change) invalidates every token it was given.
"""

from __future__ import annotations

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
