"""Fuzz the auth token path: the Authorization header (kernel/web.py token_from_header), the
unverified read of a token's claims that picks the record to check it against, and the
signature check (records/auth.py), as auth/login.py authenticate() runs them.

An input is either a raw header value (first byte even: decoded as Latin-1, as the ASGI
server hands headers over), or (first byte odd) a JWT assembled from a fuzzed header and
payload (split at the first NUL), signed with the right key (bit 1 of the first byte) or a
wrong one, so that claims reach validation. The
documented outcome of any bad token is "anonymous" (None / False): every exception is a
crash.

    python fuzz/fuzz_token.py -max_total_time=600 fuzz/corpus/token   # a longer run
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import sys

import atheris

with atheris.instrument_imports(include=["shipyard", "jwt"]):
    from shipyard.kernel.web import token_from_header
    from shipyard.records.auth import _signing_key, unverified_claims, verify_token
    from shipyard.records.collections import collection_from_dict

SECRET = "fuzz-secret-key-of-at-least-32-characters"  # noqa: S105  (the fuzzed tokens' key)
TOKEN_KEY = "record-token-key"  # noqa: S105  (a record's tokenKey, made up)
USERS = collection_from_dict(
    {"id": "pbc_users", "name": "users", "type": "auth", "fields": []}, trusted=True
)


def _b64(raw: bytes) -> bytes:
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


def _signed(header: bytes, payload: bytes, key: str) -> str:
    signing_input = _b64(header) + b"." + _b64(payload)
    sig = hmac.new(key.encode(), signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + _b64(sig)).decode()


def test_one(data: bytes) -> None:
    if not data:
        return
    mode, rest = data[0], data[1:]
    if mode & 1:  # `header\x00payload`, signed with the right key when bit 1 is set
        header, _, payload = rest.partition(b"\x00")
        key = _signing_key(SECRET, USERS, TOKEN_KEY) if mode & 2 else "wrong"
        token = _signed(header or b'{"alg":"HS256","typ":"JWT"}', payload, key)
    else:
        token = token_from_header(rest.decode("latin-1"))
    claims = unverified_claims(token)
    if claims is not None and not isinstance(claims["id"], str):
        raise TypeError("unverified_claims let a non-text id through")
    verify_token(SECRET, token, USERS, TOKEN_KEY)


def main() -> None:
    atheris.Setup(sys.argv, test_one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
