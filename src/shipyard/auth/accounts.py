"""Account mails of auth collections: e-mail verification, password reset and e-mail change.

The links carry purpose tokens (JWTs with `type` = the purpose) signed with the record's
tokenKey among the key material: a password or e-mail change rotates the tokenKey, so each
reset or e-mail change link works once and dies with every session.

Requests for verification and reset must not tell who has an account, by their answer nor
by their time: the request only counts itself against the limits and queues an
`account_mail` job, the same work whatever the address; the job worker looks the address
up, makes the link and talks to the mail server. A mail that cannot be sent fails its job
(retried, then dead-lettered and logged): the operator's problem, never the caller's answer.

The e-mail change follows PocketBase: the record asks with its own token
(`request-email-change`, `{newEmail}`), the mail goes to the new address, and
`confirm-email-change` (`{token, password}`) sets it once the account's password confirms.
"""

from __future__ import annotations

import math
import secrets
import time
from typing import TYPE_CHECKING, Any, Literal

import jwt

from shipyard.auth.mails import MailKind, render
from shipyard.auth.superusers import system_context
from shipyard.kernel.errors import ApiError, bad_request, forbidden, unauthorized
from shipyard.kernel.mail import mailer_from_settings
from shipyard.records.auth import Auth
from shipyard.records.collections import SUPERUSERS, Collection
from shipyard.records.fields import EMAIL_RE
from shipyard.tools.worker import Discard

if TYPE_CHECKING:
    from shipyard.services import Services

Purpose = Literal["verification", "passwordReset", "emailChange"]
# token lifetimes in seconds, PocketBase's defaults
DURATIONS: dict[str, int] = {"verification": 86400, "passwordReset": 1800, "emailChange": 1800}
_MAIL_KIND: dict[Purpose, MailKind] = {
    "verification": "verification",
    "passwordReset": "password-reset",
    "emailChange": "email-change",
}
_VALIDATION = "An error occurred while validating the submitted data."
MAIL_JOB = "account_mail"  # the built-in job kind that sends every account mail
_LOADING = "An error occurred while loading the submitted data."


def _key(svc: Services, coll: Collection, purpose: str, token_key: str) -> str:
    secret = coll.options.get("secrets", {}).get("authToken", "")
    return f"{svc.settings.secret_key}{secret}:{purpose}:{token_key}"


def purpose_token(
    svc: Services,
    coll: Collection,
    rec: dict[str, Any],
    purpose: Purpose,
    extra: dict[str, Any] | None = None,
) -> str:
    claims = {
        "id": rec["id"],
        "collectionId": coll.id,
        "email": rec.get("email", ""),
        "type": purpose,
        "exp": int(time.time()) + DURATIONS[purpose],
        **(extra or {}),
    }
    return jwt.encode(claims, _key(svc, coll, purpose, rec.get("tokenKey", "")), algorithm="HS256")


def _auth_collection(coll: Collection) -> None:
    if coll.type != "auth":
        raise ApiError(404, "Missing or invalid auth collection context.")


def _email(body: dict[str, Any]) -> str:
    """The requested address, checked as PocketBase does (its codes, none of which depends
    on whether an account has the address)."""
    (email,) = _strings(body, "email")
    problem: dict[str, Any] | None = None
    if not email.strip():
        problem = _error("validation_required", "Cannot be blank.")
    elif len(email) > 255:
        problem = {
            **_error("validation_length_out_of_range", "The length must be between 1 and 255."),
            "params": {"max": 255, "min": 1},
        }
    elif not EMAIL_RE.match(email.strip()):
        problem = _error("validation_is_email", "Must be a valid email address.")
    if problem is not None:
        raise bad_request(_VALIDATION, {"email": problem})
    return email.strip()


def _mail_record(coll: Collection, rec: dict[str, Any]) -> dict[str, Any]:
    """What the mail templates may show of a record: no hidden field (as PocketBase)."""
    hidden = {f.name for f in coll.fields if f.hidden}
    return {k: v for k, v in rec.items() if k not in hidden}


async def _within_limits(svc: Services, address: str, ip: str) -> bool:
    """Count this request against the client address, then against the mail address; each
    count is one atomic statement read back after it, so concurrent requests in any
    process cannot all pass. Past the client address's share: 429, whatever the mail
    address. Past the mail address's share: False, nothing more is sent and the caller
    gets the usual answer. Requests count whether or not an account has the address, so
    neither limit tells who has one."""
    s = svc.settings
    window = s.account_mail_window
    wait = await svc.attempts.reserve([(f"mail:ip:{ip}", s.account_mail_max_per_ip)], window)
    if wait is not None:
        seconds = max(1, math.ceil(wait))
        raise ApiError(429, "Too Many Requests.", headers={"Retry-After": str(seconds)})
    to_key = f"mail:to:{address.strip().lower()}"
    if secrets.randbelow(50) == 0:
        await svc.attempts.prune()
    return await svc.attempts.reserve([(to_key, s.account_mail_max_per_address)], window) is None


async def request(
    svc: Services, coll: Collection, body: dict[str, Any], purpose: Purpose, ip: str = ""
) -> None:
    """Queue the mail for the job worker, which sends it if the address belongs to a
    record (for verification, an unverified one); 204 either way."""
    _auth_collection(coll)
    email = _email(body)
    if await _within_limits(svc, email, ip):
        args = {"collection": coll.id, "purpose": purpose, "email": email}
        await svc.jobs.enqueue(MAIL_JOB, args)


async def send_account_mail(ctx: Any, args: Any) -> dict[str, Any]:
    """The `account_mail` job: find the account, make its link, send the mail. The token
    is made here, so job arguments (listed by the jobs API) hold no secret. A mail server
    failure fails the attempt (retried with backoff, then dead-lettered and logged)."""
    svc: Services = ctx.services
    if not isinstance(args, dict):
        raise Discard("account_mail: args must be {collection, purpose, email[, record]}")
    purpose, address = args.get("purpose"), args.get("email")
    coll = svc.store.get(str(args.get("collection", "")))
    if purpose not in _MAIL_KIND or coll is None or coll.type != "auth":
        raise Discard("account_mail: unknown purpose or auth collection")
    if not isinstance(address, str):
        raise Discard("account_mail: 'email' must be an address")
    extra: dict[str, Any] | None = None
    if purpose == "emailChange":  # to the new address, for the record that asked
        rec = await svc.auth.auth_record_by(coll, "id", str(args.get("record", "")))
        to: str | None = address
        extra = {"newEmail": address}
    else:
        rec = await svc.auth.auth_record_by(coll, "email", address)
        to = None
    if rec is None or (purpose == "verification" and rec.get("verified")):
        return {"sent": False}
    settings = await svc.runtime.current()  # /api/settings changes apply at once
    mailer = mailer_from_settings(settings)
    if mailer is None:
        raise Discard("mail is disabled: set SHIPYARD_SMTP_HOST to send account mails")
    token = purpose_token(svc, coll, rec, purpose, extra)
    kind = _MAIL_KIND[purpose]
    message = render(kind, settings, coll.name, _mail_record(coll, rec), token, to=to)
    await mailer.send(message)
    return {"sent": True, "to": message.to}


_INVALID = {"token": {"code": "validation_invalid_token", "message": "Invalid or expired token."}}


def _verified_claims(
    svc: Services, coll: Collection, token: str, purpose: Purpose, rec: dict[str, Any]
) -> bool:
    try:
        jwt.decode(
            token,
            _key(svc, coll, purpose, rec.get("tokenKey", "")),
            algorithms=["HS256"],
            options={"require": ["exp"]},
        )
    except jwt.PyJWTError:
        return False
    return True


async def _record_of(
    svc: Services, coll: Collection, token: Any, purpose: Purpose
) -> dict[str, Any]:
    if not isinstance(token, str) or not token:
        raise bad_request(_VALIDATION, _INVALID)
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
    rec = await svc.auth.auth_record_by(coll, "id", claims["id"])
    if rec is None or rec.get("email") != claims.get("email"):
        raise bad_request("Invalid or expired token.", _INVALID)
    if not _verified_claims(svc, coll, token, purpose, rec):
        raise bad_request("Invalid or expired token.", _INVALID)
    return rec


async def confirm_verification(svc: Services, coll: Collection, body: dict[str, Any]) -> None:
    _auth_collection(coll)
    rec = await _record_of(svc, coll, body.get("token"), "verification")
    if not rec.get("verified"):
        await svc.records.update(coll, rec["id"], {"verified": True}, system_context(svc))


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
    await svc.records.update(coll, rec["id"], change, system_context(svc))


# ---------------------------------------------------------------------- e-mail change


def require_own_collection(auth: Auth, coll: Collection) -> None:
    """PocketBase's RequireSameCollectionContextAuth: 401 without a valid token, 403 with a
    token of another collection (a superuser's token included)."""
    if auth.collection is None:
        raise unauthorized()
    if auth.collection.id != coll.id:
        raise forbidden(f"The request requires auth record from {auth.collection.name} collection.")


def _no_superusers(coll: Collection) -> None:
    if coll.name == SUPERUSERS:
        raise bad_request("All superusers can change their emails directly.")


def _error(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}


def _strings(body: dict[str, Any], *names: str) -> list[str]:
    """The named body values as strings ("" when absent); another type is a 400, as
    PocketBase's form binding answers."""
    out = []
    for name in names:
        value = body.get(name)
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise bad_request(_LOADING)
        out.append(value)
    return out


async def request_email_change(
    svc: Services, coll: Collection, auth: Auth, body: dict[str, Any], ip: str = ""
) -> None:
    """Queue the confirmation mail to the new address (as `request`, with its limits).
    Only the record itself may ask: its own token is required (401 without one, 403 with
    a token of another collection)."""
    require_own_collection(auth, coll)
    _auth_collection(coll)
    _no_superusers(coll)
    (new_email,) = _strings(body, "newEmail")
    # PocketBase's checks in its order; the first failing one is reported
    problem: dict[str, Any] | None = None
    if new_email == "":
        problem = _error("validation_required", "Cannot be blank.")
    elif len(new_email) > 255:
        problem = {
            **_error("validation_length_out_of_range", "The length must be between 1 and 255."),
            "params": {"max": 255, "min": 1},
        }
    elif not EMAIL_RE.match(new_email):
        problem = _error("validation_is_email", "Must be a valid email address.")
    elif new_email == auth.record.get("email"):
        problem = _error("validation_not_in_invalid", "Must not be in list.")
    else:
        other = await svc.auth.auth_record_by(coll, "email", new_email)
        if other is not None and other["id"] != auth.id:
            problem = _error("validation_invalid_new_email", "Invalid new email address.")
    if problem is not None:
        raise bad_request(_VALIDATION, {"newEmail": problem})
    rec = await svc.auth.auth_record_by(coll, "id", auth.id)
    if rec is None:  # deleted since its token was checked
        raise unauthorized()
    if await _within_limits(svc, new_email, ip):
        args = {"collection": coll.id, "purpose": "emailChange", "email": new_email}
        await svc.jobs.enqueue(MAIL_JOB, {**args, "record": rec["id"]})


class _TokenProblem(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.error = _error(code, message)


_INVALID_TOKEN = ("validation_invalid_token", "Invalid or expired token.")


async def _email_change_of(
    svc: Services, coll: Collection, token: str
) -> tuple[dict[str, Any], str]:
    """The record and the new address of a valid e-mail change token; raises _TokenProblem
    with PocketBase's error code otherwise."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        claims = {}
    if not isinstance(claims, dict):
        claims = {}
    new_email = claims.get("newEmail")
    if not isinstance(new_email, str) or not new_email:
        raise _TokenProblem(
            "validation_invalid_token_payload", "Invalid token payload - newEmail must be set."
        )
    rid, cid = claims.get("id"), claims.get("collectionId")
    if claims.get("type") != "emailChange" or not isinstance(rid, str) or not isinstance(cid, str):
        raise _TokenProblem(*_INVALID_TOKEN)
    owner = coll if cid == coll.id else svc.store.get(cid)
    if owner is None or owner.type != "auth":
        raise _TokenProblem(*_INVALID_TOKEN)
    rec = await svc.auth.auth_record_by(owner, "id", rid)
    if rec is None or not _verified_claims(svc, owner, token, "emailChange", rec):
        raise _TokenProblem(*_INVALID_TOKEN)
    if owner.id != coll.id:
        raise _TokenProblem(
            "validation_token_collection_mismatch",
            "The provided token is for different auth collection.",
        )
    # the old address must still be the record's: a link dies once the address changed
    if rec.get("email") != claims.get("email"):
        raise _TokenProblem(*_INVALID_TOKEN)
    if await svc.auth.auth_record_by(coll, "email", new_email) is not None:
        raise _TokenProblem("validation_invalid_token_email", "The new email address is invalid.")
    return rec, new_email


async def confirm_email_change(
    svc: Services, coll: Collection, body: dict[str, Any], ip: str = ""
) -> None:
    """Set the new address once the token and the account's current password check out;
    the record becomes verified (the mail reached the new address) and its tokenKey is
    rotated, so the link and every session issued before die. Wrong passwords count as
    failed logins of the account (brute-force protection, 429 once blocked)."""
    _auth_collection(coll)
    _no_superusers(coll)
    token, password = _strings(body, "token", "password")
    errors: dict[str, Any] = {}
    rec: dict[str, Any] | None = None
    new_email = ""
    if token == "":
        errors["token"] = _error("validation_required", "Cannot be blank.")
    else:
        try:
            rec, new_email = await _email_change_of(svc, coll, token)
        except _TokenProblem as problem:
            errors["token"] = problem.error
    invalid_password = _error(
        "validation_invalid_password", "Missing or invalid auth record password."
    )
    if password == "":
        errors["password"] = _error("validation_required", "Cannot be blank.")
    elif len(password) > 100:
        errors["password"] = {
            **_error("validation_length_out_of_range", "The length must be between 1 and 100."),
            "params": {"max": 100, "min": 1},
        }
    elif rec is None or not await svc.auth.check_password(coll, rec, password, ip):
        errors["password"] = invalid_password
    if errors:
        raise bad_request(_VALIDATION, errors)
    assert rec is not None  # noqa: S101  (narrows a type for mypy; established above)
    try:
        await svc.records.update(
            coll, rec["id"], {"email": new_email, "verified": True}, system_context(svc)
        )
    except ApiError as exc:
        if exc.status != 400:
            raise
        raise bad_request("Failed to confirm email change.", exc.data) from None
    # a new signing key: this link, other links and every token issued so far stop working
    await svc.db.execute(
        f'UPDATE "{coll.table}" SET "tokenKey" = ? WHERE "id" = ?',
        (secrets.token_urlsafe(38)[:50], rec["id"]),
    )
