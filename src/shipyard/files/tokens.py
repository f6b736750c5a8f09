"""Protected-file tokens (`POST /api/files/token`), shaped like PocketBase's: a short-lived
JWT of type `file`, signed with the server secret, the collection's secret and the record's
tokenKey, so a password change ends them like it ends auth tokens."""

from __future__ import annotations

import time
from typing import Any

import jwt

from shipyard.records.auth import Auth
from shipyard.records.collections import Collection


def _key(secret_key: str, c: Collection, token_key: str) -> str:
    secret = c.options.get("secrets", {}).get("authToken", "")
    return f"{secret_key}file{secret}{token_key}"


def issue(secret_key: str, auth: Auth, token_key: str, duration: int) -> str:
    assert auth.collection is not None  # noqa: S101  (callers checked it)
    claims = {
        "collectionId": auth.collection.id,
        "exp": int(time.time()) + duration,
        "id": auth.id,
        "type": "file",
    }
    return jwt.encode(claims, _key(secret_key, auth.collection, token_key), algorithm="HS256")


def claims_of(token: str) -> dict[str, Any] | None:
    """Unverified claims of a file token, to find the record whose key verifies it."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    if not isinstance(claims, dict) or claims.get("type") != "file":
        return None
    if not isinstance(claims.get("id"), str) or not isinstance(claims.get("collectionId"), str):
        return None
    return claims


def verify(secret_key: str, token: str, c: Collection, token_key: str) -> bool:
    try:
        jwt.decode(
            token,
            _key(secret_key, c, token_key),
            algorithms=["HS256"],
            options={"require": ["exp"]},
        )
    except jwt.PyJWTError:
        return False
    return True
