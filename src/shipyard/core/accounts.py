"""Account mails of auth collections: e-mail verification and password reset.

The links carry purpose tokens (JWTs with `type` = the purpose) signed with the record's
tokenKey among the key material: a password reset rotates the tokenKey, so each reset link
works once. Requests always answer the same whether or not the address exists, so they
cannot be used to find out who has an account.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Literal

import jwt

from shipyard.core.collections import Collection
from shipyard.core.errors import ApiError, bad_request
from shipyard.core.mails import mailer_from_settings, send_auth_mail
from shipyard.core.superusers import system_actor
from shipyard.tools.mailer import MailError

if TYPE_CHECKING:
    from shipyard.core.services import Services

log = logging.getLogger("shipyard.accounts")
Purpose = Literal["verification", "passwordReset"]
DURATIONS: dict[str, int] = {"verification": 259200, "passwordReset": 1800}  # as PocketBase
_MAIL_KIND = {"verification": "verification", "passwordReset": "password-reset"}


def _key(svc: Services, coll: Collection, purpose: str, token_key: str) -> str:
    secret = coll.options.get("secrets", {}).get("authToken", "")
    return f"{svc.settings.secret_key}{secret}:{purpose}:{token_key}"


def purpose_token(svc: Services, coll: Collection, rec: dict[str, Any], purpose: Purpose) -> str:
    claims = {
        "id": rec["id"],
        "collectionId": coll.id,
        "email": rec.get("email", ""),
        "type": purpose,
        "exp": int(time.time()) + DURATIONS[purpose],
    }
    return jwt.encode(claims, _key(svc, coll, purpose, rec.get("tokenKey", "")), algorithm="HS256")


def _auth_collection(coll: Collection) -> None:
    if coll.type != "auth":
        raise ApiError(404, "Missing or invalid auth collection context.")


def _email(body: dict[str, Any]) -> str:
    email = body.get("email")
    if not isinstance(email, str) or not email.strip() or len(email) > 255:
        raise bad_request(
            "An error occurred while validating the submitted data.",
            {"email": {"code": "validation_required", "message": "Cannot be blank."}},
        )
    return email.strip()


async def request(svc: Services, coll: Collection, body: dict[str, Any], purpose: Purpose) -> None:
    """Send the mail if the address belongs to a record (and, for verification, an unverified
    one); answer the same either way."""
    _auth_collection(coll)
    email = _email(body)
    rec = await svc.auth_record_by(coll, "email", email)
    if rec is None or (purpose == "verification" and rec.get("verified")):
        return
    token = purpose_token(svc, coll, rec, purpose)
    try:
        await send_auth_mail(
            mailer_from_settings(svc.settings),
            _MAIL_KIND[purpose],  # type: ignore[arg-type]
            svc.settings,
            coll.name,
            rec,
            token,
        )
    except MailError as exc:
        log.error("could not send the %s mail: %s", purpose, exc)
        raise bad_request("Failed to send the e-mail; try again later.") from None


_INVALID = {"token": {"code": "validation_invalid_token", "message": "Invalid or expired token."}}


async def _record_of(
    svc: Services, coll: Collection, token: Any, purpose: Purpose
) -> dict[str, Any]:
    if not isinstance(token, str) or not token:
        raise bad_request("An error occurred while validating the submitted data.", _INVALID)
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise bad_request("Invalid or expired token.", _INVALID) from None
    if (
        not isinstance(claims, dict)
        or claims.get("type") != purpose
        or claims.get("collectionId") != coll.id
        or not isinstance(claims.get("id"), str)
    ):
        raise bad_request("Invalid or expired token.", _INVALID)
    rec = await svc.auth_record_by(coll, "id", claims["id"])
    if rec is None or rec.get("email") != claims.get("email"):
        raise bad_request("Invalid or expired token.", _INVALID)
    try:
        jwt.decode(
            token,
            _key(svc, coll, purpose, rec.get("tokenKey", "")),
            algorithms=["HS256"],
            options={"require": ["exp"]},
        )
    except jwt.PyJWTError:
        raise bad_request("Invalid or expired token.", _INVALID) from None
    return rec


async def confirm_verification(svc: Services, coll: Collection, body: dict[str, Any]) -> None:
    _auth_collection(coll)
    rec = await _record_of(svc, coll, body.get("token"), "verification")
    if not rec.get("verified"):
        await svc.records.update(coll, rec["id"], {"verified": True}, system_actor(svc), {})


async def confirm_password_reset(svc: Services, coll: Collection, body: dict[str, Any]) -> None:
    """Set the new password (which rotates the tokenKey: the link and old sessions die) and
    mark the address verified, since the mail reached its owner."""
    _auth_collection(coll)
    rec = await _record_of(svc, coll, body.get("token"), "passwordReset")
    change = {
        "password": body.get("password"),
        "passwordConfirm": body.get("passwordConfirm"),
        "verified": True,
    }
    await svc.records.update(coll, rec["id"], change, system_actor(svc), {})
