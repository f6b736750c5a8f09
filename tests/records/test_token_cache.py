"""Verified tokens are remembered (records/auth.py) without changing what verifies: a
remembered token still fails once its record's key changed or it expired, and claims read
from the memory cannot be changed by their reader."""

from __future__ import annotations

import pytest

from shipyard.records import auth
from shipyard.records.collections import Collection

USERS = Collection(id="pbc_users0000001", name="users", type="auth")
SECRET = "s" * 32  # HS256 wants 32 bytes of key at least
OTHER = "o" * 32


def test_a_remembered_token_follows_the_key() -> None:
    token = auth.issue_token(SECRET, USERS, "u1", "key-1", 3600)
    assert auth.verify_token(SECRET, token, USERS, "key-1")
    assert token in auth._verified  # remembered
    assert auth.verify_token(SECRET, token, USERS, "key-1")  # from memory
    # a rotated tokenKey (a password change, in any process) or another secret: refused
    assert not auth.verify_token(SECRET, token, USERS, "key-2")
    assert not auth.verify_token(OTHER, token, USERS, "key-1")


def test_a_remembered_token_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    token = auth.issue_token(SECRET, USERS, "u3", "key", -10)  # expired 10 s ago
    claims = auth.unverified_claims(token)
    assert claims is not None
    # as if it had been remembered while it was still valid
    monkeypatch.setitem(auth._verified, token, (claims, SECRET + "key"))
    assert not auth.verify_token(SECRET, token, USERS, "key")


def test_remembered_claims_are_copies() -> None:
    token = auth.issue_token(SECRET, USERS, "u2", "key", 3600)
    assert auth.verify_token(SECRET, token, USERS, "key")
    claims = auth.unverified_claims(token)
    assert claims is not None
    assert claims["id"] == "u2"
    claims["id"] = "someone-else"
    assert auth.unverified_claims(token) == {**claims, "id": "u2"}


def test_the_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "_VERIFIED_MAX", 3)
    monkeypatch.setattr(auth, "_verified", {})
    tokens = [auth.issue_token(SECRET, USERS, f"u{i}", "key", 3600) for i in range(5)]
    for t in tokens:
        assert auth.verify_token(SECRET, t, USERS, "key")
    assert list(auth._verified) == tokens[2:]  # the oldest went first
    # a forgotten token still verifies, the slow way
    assert auth.verify_token(SECRET, tokens[0], USERS, "key")
