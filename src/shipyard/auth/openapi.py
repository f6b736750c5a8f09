"""The auth part of the OpenAPI document: password login, token refresh, impersonation and
the verification, password reset and e-mail change flows, for any auth collection by name
and for each live one (with its `AuthRecord` schema), and the page the account mails link
to. Per-collection operations carry the collection's tag, which the records part declares."""

from __future__ import annotations

from collections.abc import Sequence

from shipyard.auth import pages
from shipyard.kernel.spec import (
    GUARD_EMAILED_TOKEN,
    GUARD_EMAILED_TOKEN_AND_PASSWORD,
    GUARD_IDENTITY_PASSWORD,
    GUARD_OWN_TOKEN,
    GUARD_PUBLIC,
    GUARD_SUPERUSER,
    OpenAPIPart,
    Schema,
    Viewer,
    errors,
    form_body,
    json_ok,
    param_ref,
    schema_ref,
)
from shipyard.records.collections import Collection
from shipyard.records.openapi_schemas import record_schema

_AUTH_METHODS: Schema = {
    "type": "object",
    "properties": {
        "password": {
            "type": "object",
            "properties": {
                "enabled": {"type": "boolean"},
                "identityFields": {"type": "array", "items": {"type": "string"}},
            },
        },
        "oauth2": {"type": "object"},
        "mfa": {"type": "object"},
        "otp": {"type": "object"},
    },
    "required": ["password", "oauth2", "mfa", "otp"],
}

_EMAIL: Schema = {"type": "string", "minLength": 1, "maxLength": 255}
_TOKEN: Schema = {
    "type": "string",
    "minLength": 1,
    "description": "The token from the mailed link.",
}


def _object(props: Schema, required: list[str]) -> Schema:
    return {"type": "object", "properties": props, "required": required}


def _codes(field: str, *codes: str) -> str:
    """`field`: `code`, `code` (note), … — a note after a code stays outside the code span."""
    spans = []
    for c in codes:
        code, _, note = c.partition(" ")
        spans.append(f"`{code}`" + (f" {note}" if note else ""))
    return f"`{field}`: " + ", ".join(spans)


def _validation_note(*fields: str) -> str:
    return (
        " A 400 lists the failing fields in `data` as `{code, message}` ("
        + "; ".join(fields)
        + ")."
    )


class _AccountAction:
    """One account endpoint of auth collections: its body, guard and error statuses."""

    def __init__(
        self,
        summary: str,
        guard: str,
        description: str,
        body: Schema,
        errors: tuple[int, ...],
        security: list[Schema] | None = None,
    ) -> None:
        self.summary = summary
        self.guard = guard
        self.description = description
        self.body = body
        self.errors = errors
        self.security = security or [{}]


_ACCOUNT_MAIL_CODES = _validation_note(
    _codes("email", "validation_required", "validation_length_out_of_range", "validation_is_email")
)
_ACCOUNT_ACTIONS: dict[str, _AccountAction] = {
    "request-verification": _AccountAction(
        "Mail a verification link",
        GUARD_PUBLIC,
        "Public: anyone may ask; the link goes to the address, so only its owner can use it. "
        "Answers 204 whether or not the address belongs to an (unverified) account, in the "
        "same time, so it cannot reveal who has one: the job queue sends the mail (template "
        "`verification`, docs/mail.md). Limited per address (further requests: 204, no "
        "mail) and per client address (429)." + _ACCOUNT_MAIL_CODES,
        _object({"email": _EMAIL}, ["email"]),
        (400, 404, 413, 429),
    ),
    "confirm-verification": _AccountAction(
        "Mark the account verified with the mailed token",
        GUARD_EMAILED_TOKEN,
        "Guarded by the mailed `verification` token (valid 1 day, dies when the address or "
        "the password changes); no auth token needed."
        + _validation_note(_codes("token", "validation_invalid_token")),
        _object({"token": _TOKEN}, ["token"]),
        (400, 404, 413),
    ),
    "request-password-reset": _AccountAction(
        "Mail a password reset link",
        GUARD_PUBLIC,
        "Public: anyone may ask; the link goes to the address, so only its owner can use it. "
        "Answers 204 whether or not the address has an account, in the same time: the job "
        "queue sends the mail (template `password-reset`). Limited as request-verification."
        + _ACCOUNT_MAIL_CODES,
        _object({"email": _EMAIL}, ["email"]),
        (400, 404, 413, 429),
    ),
    "confirm-password-reset": _AccountAction(
        "Set a new password with the mailed token",
        GUARD_EMAILED_TOKEN,
        "Guarded by the mailed `passwordReset` token (valid 30 minutes, works once). Sets the "
        "password, marks the address verified and rotates the tokenKey: every earlier auth "
        "token stops working."
        + _validation_note(
            _codes("token", "validation_invalid_token"),
            _codes(
                "password",
                "validation_required",
                "validation_min_text_constraint",
                "validation_max_text_constraint",
            ),
            _codes("passwordConfirm", "validation_values_mismatch"),
        ),
        _object(
            {
                "token": _TOKEN,
                "password": {"type": "string", "minLength": 1, "writeOnly": True},
                "passwordConfirm": {"type": "string", "minLength": 1, "writeOnly": True},
            },
            ["token", "password", "passwordConfirm"],
        ),
        (400, 404, 413, 503),
    ),
    "request-email-change": _AccountAction(
        "Mail a link confirming a new e-mail address",
        GUARD_OWN_TOKEN,
        "Guarded by the record's own auth token: 401 without a valid token, 403 with a token "
        "of another collection (superusers included: they change addresses directly, and on "
        "`_superusers` this answers 400). The mail (template `email-change`) goes to the new "
        "address through the job queue and carries an `emailChange` token valid 30 minutes; "
        "nothing changes until it is confirmed. Limited as request-verification (429)."
        + _validation_note(
            _codes(
                "newEmail",
                "validation_required",
                "validation_length_out_of_range",
                "validation_is_email",
                "validation_not_in_invalid (the current address)",
                "validation_invalid_new_email (taken)",
            )
        ),
        _object(
            {"newEmail": {**_EMAIL, "format": "email", "description": "The new address."}},
            ["newEmail"],
        ),
        (400, 401, 403, 404, 413, 429),
        security=[{"Authorization": []}],
    ),
    "confirm-email-change": _AccountAction(
        "Switch to the new e-mail address with the mailed token and the password",
        GUARD_EMAILED_TOKEN_AND_PASSWORD,
        "Guarded by the mailed `emailChange` token together with the account's current "
        "password; no auth token needed. Sets the new address, marks it verified and rotates "
        "the tokenKey, so the link works once and every earlier auth token stops working. "
        "Wrong passwords count as failed logins of the account: after too many, 429 with "
        "`Retry-After`."
        + _validation_note(
            _codes(
                "token",
                "validation_required",
                "validation_invalid_token_payload",
                "validation_invalid_token",
                "validation_token_collection_mismatch",
                "validation_invalid_token_email (the address was taken meanwhile)",
            ),
            _codes(
                "password",
                "validation_required",
                "validation_length_out_of_range",
                "validation_invalid_password",
            ),
        ),
        _object(
            {
                "token": _TOKEN,
                "password": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 100,
                    "writeOnly": True,
                    "description": "The account's current password.",
                },
            },
            ["token", "password"],
        ),
        (400, 404, 413, 429, 503),
    ),
}


def _where(c: Collection | None) -> str:
    return f"`{c.name}`" if c else "an auth collection"


def _suffix(c: Collection | None) -> str:
    return f"_{c.name}" if c else ""


def _auth_methods_op(c: Collection | None) -> Schema:
    return {
        "tags": [c.name if c else "auth"],
        "operationId": f"authMethods{_suffix(c)}",
        "summary": f"The ways to log in to {_where(c)}",
        "description": "Public: no token needed. 404 when the collection is not an auth "
        "collection.",
        "security": [{}],
        "x-shipyard-guard": GUARD_PUBLIC,
        "responses": {**json_ok(_AUTH_METHODS), **errors(404)},
    }


def _account_op(c: Collection | None, action: str, spec: _AccountAction) -> Schema:
    camel = "".join(p.capitalize() for p in action.split("-"))
    return {
        "tags": [c.name if c else "auth"],
        "operationId": f"{camel[0].lower()}{camel[1:]}{_suffix(c)}",
        "summary": f"{spec.summary} ({_where(c)})",
        "description": spec.description,
        "security": spec.security,
        "x-shipyard-guard": spec.guard,
        "requestBody": form_body(spec.body),
        "responses": {"204": {"description": "Done; no content."}, **errors(*spec.errors)},
    }


def _impersonate_op(c: Collection | None, login: Schema) -> Schema:
    return {
        "tags": [c.name if c else "auth"],
        "operationId": f"impersonate{_suffix(c)}",
        "summary": f"Superusers only: a non-refreshable token acting as a record of {_where(c)}",
        "description": "Guarded by a superuser's token: 401 without a valid token, 403 with "
        "any other. The token lives `duration` seconds (default: the collection's token "
        "duration) and cannot be refreshed."
        + _validation_note(_codes("duration", "validation_invalid_duration")),
        "security": [{"Authorization": []}],
        "x-shipyard-guard": GUARD_SUPERUSER,
        "requestBody": form_body(
            {"type": "object", "properties": {"duration": {"type": "integer", "minimum": 0}}},
            required=False,
        ),
        "responses": {"200": login["responses"]["200"], **errors(400, 401, 403, 404, 413)},
    }


def _auth_ops(c: Collection | None) -> tuple[Schema, Schema]:
    """Password login and refresh, generic (any auth collection) or for one collection."""
    suffix = _suffix(c)
    tag = c.name if c else "auth"
    if c is None:
        response: Schema = schema_ref("AuthResponse")
    else:
        response = {
            "type": "object",
            "properties": {
                "token": {"type": "string"},
                "record": schema_ref(f"{c.name}.AuthRecord"),
            },
            "required": ["token", "record"],
        }
    where = _where(c)
    login = {
        "tags": [tag],
        "operationId": f"authWithPassword{suffix}",
        "summary": f"Log in to {where} with identity and password",
        "description": "Guarded by the identity (e-mail, or another identity field of the "
        "collection) and its password; no token needed. Returns a token to send as the "
        "`Authorization` header (raw or `Bearer `). Wrong credentials answer 400 `Failed to "
        "authenticate.`; after too many failures for the account or the client address, 429 "
        "with `Retry-After`; 503 with `Retry-After` while every password-hashing slot is "
        "taken."
        + _validation_note(
            _codes("identity", "validation_required"), _codes("password", "validation_required")
        ),
        "security": [{}],
        "x-shipyard-guard": GUARD_IDENTITY_PASSWORD,
        "requestBody": form_body(schema_ref("PasswordAuth")),
        "responses": {**json_ok(response), **errors(400, 404, 413, 429, 503)},
    }
    refresh = {
        "tags": [tag],
        "operationId": f"authRefresh{suffix}",
        "summary": f"Exchange a valid token of {where} for a fresh one",
        "description": "Guarded by the record's own auth token: 401 without a valid token, 403 "
        "with a token of another collection or a non-refreshable (impersonation) token.",
        "security": [{"Authorization": []}],
        "x-shipyard-guard": GUARD_OWN_TOKEN,
        "responses": {**json_ok(response), **errors(401, 403, 404)},
    }
    return login, refresh


def _schemas() -> Schema:
    return {
        "PasswordAuth": {
            "type": "object",
            "properties": {
                "identity": {
                    "type": "string",
                    "minLength": 1,
                    "description": "E-mail (or another identity field).",
                },
                "password": {"type": "string", "minLength": 1, "writeOnly": True},
                "identityField": {"type": "string"},
            },
            "required": ["identity", "password"],
        },
        "AuthResponse": {
            "type": "object",
            "properties": {"token": {"type": "string"}, "record": schema_ref("Record")},
            "required": ["token", "record"],
        },
    }


def _paths(prefix: str, c: Collection | None) -> Schema:
    """The auth paths of `c`, or of any auth collection named in the path when None."""
    login, refresh = _auth_ops(c)
    shared: Schema = {} if c else {"parameters": [param_ref("collection")]}
    paths: Schema = {
        f"{prefix}/auth-with-password": {**shared, "post": login},
        f"{prefix}/auth-refresh": {**shared, "post": refresh},
        f"{prefix}/auth-methods": {**shared, "get": _auth_methods_op(c)},
    }
    for action, spec in _ACCOUNT_ACTIONS.items():
        paths[f"{prefix}/{action}"] = {**shared, "post": _account_op(c, action, spec)}
    imp_params = [
        *shared.get("parameters", []),
        {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},
    ]
    paths[f"{prefix}/impersonate/{{id}}"] = {
        "parameters": imp_params,
        "post": _impersonate_op(c, login),
    }
    return paths


def openapi(collections: Sequence[Collection], viewer: Viewer) -> list[OpenAPIPart]:
    """The auth part for the auth collections among `collections`."""
    by_key = {c.id: c for c in collections} | {c.name: c for c in collections}
    schemas = _schemas()
    paths: Schema = {**pages.openapi_paths(), **_paths("/api/collections/{collection}", None)}
    for c in collections:
        if c.type == "auth":
            schemas[f"{c.name}.AuthRecord"] = record_schema(c, by_key, complete=True)
            paths.update(_paths(f"/api/collections/{c.name}", c))
    tags = [
        {
            "name": "auth",
            "description": "Auth collections: password login, token refresh, impersonation, "
            "and the verification, password reset and e-mail change flows.",
        }
    ]
    return [OpenAPIPart(paths=paths, schemas=schemas, tags=tags)]
