"""`/api/settings`: the runtime settings, for superusers, as PocketBase serves them.

- `GET /api/settings` — every declared section with the values in effect (secrets left
  out) and `readOnly`: the fields set at start-up, which win over stored values;
- `PATCH /api/settings` — change some values; answers like GET;
- `POST /api/settings/test/email` — render one of the account mails for a made-up record
  and send it now (not through the job queue, as PocketBase does), so a wrong SMTP setting
  shows in the answer rather than in a job's log.

The sections come from the capabilities that declare them (`Extension.settings_sections`,
kernel/runtime.py); this module knows none. See docs/settings-api.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from shipyard.auth.mails import MAIL_KINDS, send_auth_mail
from shipyard.kernel import spec
from shipyard.kernel.errors import bad_request
from shipyard.kernel.extension import Extension
from shipyard.kernel.mail import mailer_from_settings
from shipyard.kernel.runtime import READ_ONLY_KEY, RuntimeSettings, Section
from shipyard.kernel.spec import OpenAPIPart, Viewer
from shipyard.kernel.web import JSON, parse_body, services
from shipyard.records.collections import SUPERUSERS
from shipyard.records.context import require_superuser
from shipyard.records.fields import EMAIL_RE
from shipyard.tools.mailer import MailError

TEST_EMAIL_FAILED = "Failed to send the test email."  # PocketBase's message


async def settings(request: Request) -> Response:
    await require_superuser(request)
    runtime = services(request).runtime
    if request.method == "PATCH":
        await runtime.update(await parse_body(request))
    else:
        await runtime.refresh()
    return JSON(runtime.public())


def _error(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}


async def test_email(request: Request) -> Response:
    """PocketBase's checks and codes: `email` (required, an address of at most 255
    characters), `template` (one of the mails), `collection` (optional, an auth collection;
    default `_superusers`)."""
    await require_superuser(request)
    svc = services(request)
    body = await parse_body(request)
    email, template, name = body.get("email"), body.get("template"), body.get("collection")
    errors: dict[str, Any] = {}
    if name not in (None, ""):
        found = svc.store.get(name) if isinstance(name, str) else None
        if found is None or found.type != "auth":
            errors["collection"] = _error(
                "validation_invalid_auth_collection", "Must be a valid auth collection id or name."
            )
    if email in (None, ""):
        errors["email"] = _error("validation_required", "Cannot be blank.")
    elif isinstance(email, str) and len(email) > 255:
        errors["email"] = _error(
            "validation_length_out_of_range", "The length must be between 1 and 255."
        )
    elif not isinstance(email, str) or not EMAIL_RE.match(email):
        errors["email"] = _error("validation_is_email", "Must be a valid email address.")
    if template in (None, ""):
        errors["template"] = _error("validation_required", "Cannot be blank.")
    elif template not in MAIL_KINDS:
        errors["template"] = _error("validation_in_invalid", "Must be a valid value.")
    if errors:
        raise bad_request(TEST_EMAIL_FAILED, errors)
    assert isinstance(email, str)  # noqa: S101  (narrows a type for mypy; established above)
    assert template in MAIL_KINDS  # noqa: S101  (narrows a type for mypy; established above)
    coll = svc.store.require(name or SUPERUSERS)
    # a made-up record, as PocketBase's: every visible field shows its name
    record = {f.name: f"__test_{f.name}__" for f in coll.fields if not f.hidden}
    record["email"] = email
    current = await svc.runtime.current()
    try:
        await send_auth_mail(
            mailer_from_settings(current),
            template,
            current,
            coll.name,
            record,
            "__test_token__",
            to=email,
        )
    except MailError as exc:  # its text never holds the SMTP password
        raise bad_request(f"{TEST_EMAIL_FAILED} Raw error: \n{exc}") from None
    return Response(status_code=204)


routes: list[BaseRoute] = [
    Route("/api/settings", settings, methods=["GET", "PATCH"]),
    Route("/api/settings/test/email", test_email, methods=["POST"]),
]


# ------------------------------------------------------------------ OpenAPI


def _section_schema(section: Section, request: bool) -> dict[str, Any]:
    fields = [f for f in section.fields if request or not f.secret]
    out: dict[str, Any] = {
        "type": "object",
        "properties": {f.name: f.schema(request) for f in fields},
    }
    if section.description:
        out["description"] = section.description
    if not request:
        out["required"] = [f.name for f in fields]
    return out


def settings_schema(sections: Sequence[Section], *, request: bool) -> dict[str, Any]:
    """The settings object as GET returns it, or as PATCH takes it (every key optional;
    `null` forgets stored values)."""
    props: dict[str, Any] = {s.name: _section_schema(s, request) for s in sections}
    read_only = {
        "type": "object",
        "additionalProperties": {"type": "string"},
        "description": "The fields set at start-up (`smtp.host`: `SHIPYARD_SMTP_HOST`): they "
        "win over stored values, and a PATCH may not change them. Ignored in a PATCH.",
    }
    props[READ_ONLY_KEY] = read_only
    out: dict[str, Any] = {"type": "object", "properties": props}
    if not request:
        out["required"] = list(props)
    out["additionalProperties"] = False
    return out


TAG = {
    "name": "settings",
    "description": "Runtime settings: app name and URL, sender, SMTP (superusers only).",
}


def openapi_paths(sections: Sequence[Section]) -> dict[str, Any]:
    """The paths of this module for the declared `sections`."""
    doc = "docs/settings-api.md"
    current = spec.ok(settings_schema(sections, request=False), "The settings in effect")
    bad = spec.error("BadRequest")
    test_body = {
        "type": "object",
        "properties": {
            "email": {"type": "string", "format": "email", "maxLength": 255},
            "template": {"type": "string", "enum": list(MAIL_KINDS)},
            "collection": {"type": "string", "description": "Default `_superusers`."},
        },
        "required": ["email", "template"],
    }
    return {
        "/api/settings": {
            "get": spec.superuser_op(
                "settings", "getSettings", "The runtime settings", doc, {"200": current}
            ),
            "patch": spec.superuser_op(
                "settings",
                "updateSettings",
                "Change runtime settings; every process applies them at once",
                doc,
                {"200": current, "400": bad, "413": spec.error("TooLarge")},
                requestBody=spec.body(settings_schema(sections, request=True)),
            ),
        },
        "/api/settings/test/email": {
            "post": spec.superuser_op(
                "settings",
                "testEmail",
                "Send a test mail now with the SMTP settings in effect",
                doc,
                {"204": {"description": "Sent"}, "400": bad},
                requestBody=spec.body(test_body),
            ),
        },
    }


class SettingsApiExtension(Extension):
    """The API over the runtime settings every capability declared."""

    def __init__(self, runtime: RuntimeSettings[Any]) -> None:
        super().__init__(name="settings", requires=("auth",))  # the test mail is auth's
        self.runtime = runtime

    def routes(self) -> Sequence[BaseRoute]:
        return routes

    def openapi(self, collections: Sequence[Any], viewer: Viewer) -> Sequence[OpenAPIPart]:
        return [OpenAPIPart(paths=openapi_paths(self.runtime.sections), tags=[TAG])]


__all__ = ["SettingsApiExtension", "openapi_paths", "routes", "settings_schema"]
