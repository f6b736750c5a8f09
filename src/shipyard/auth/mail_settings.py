"""The runtime settings the auth package owns, since it sends the mail: `meta` (the app's
name and public URL, the sender) and `smtp` (the mail server), under PocketBase's names.

Each field stands for a start-up setting (docs/mail.md), which gives its default and,
set explicitly, makes it read-only in `/api/settings` (docs/settings-api.md). Mail code
reads them through `RuntimeSettings.current()`, so a change applies to the next mail on
every process without a restart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shipyard.kernel.errors import FieldError
from shipyard.kernel.runtime import (
    Field,
    Section,
    between,
    host,
    length,
    matches,
    one_line,
    positive,
    required,
)
from shipyard.records.fields import EMAIL_RE, URL_RE
from shipyard.tools.mailer import TLS_MODES

_URL = matches(URL_RE, "validation_is_url", "Must be a valid URL.")
_EMAIL = matches(EMAIL_RE, "validation_is_email", "Must be a valid email address.")

META = Section(
    "meta",
    (
        Field(
            "appName",
            "string",
            "app_name",
            "The name in mails and on the account pages.",
            checks=(required, length(1, 255), one_line),
        ),
        Field(
            "appURL",
            "string",
            "app_url",
            "The public base URL of the links in mails.",
            checks=(required, _URL, one_line),
        ),
        Field(
            "senderName",
            "string",
            "mail_sender_name",
            "The name mails come from.",
            checks=(required, length(1, 255), one_line),
        ),
        Field(
            "senderAddress",
            "string",
            "mail_sender_address",
            "The address mails come from.",
            checks=(required, _EMAIL),
        ),
    ),
    "The application as mails present it.",
)


def _tls(raw: Any) -> str:
    """Shipyard's mode, or PocketBase's boolean: `true` is implicit TLS, `false` STARTTLS."""
    if isinstance(raw, bool):
        return "implicit" if raw else "starttls"
    if isinstance(raw, str):
        return raw  # one of TLS_MODES: the field's `enum`
    raise FieldError("validation_invalid_value", "Must be a string (or true or false).")


def _smtp_rules(values: Mapping[str, Any]) -> dict[str, FieldError]:
    if values["enabled"] and not values["host"]:
        return {"host": FieldError("validation_required", "Cannot be blank.")}
    return {}


def _smtp_settings(values: Mapping[str, Any]) -> dict[str, Any]:
    """Mail is off when `smtp_host` is empty: `enabled: false` keeps the host, unused."""
    return {
        "smtp_host": values["host"] if values["enabled"] else "",
        "smtp_port": values["port"],
        "smtp_username": values["username"],
        "smtp_password": values["password"],
        "smtp_tls": values["tls"],
        "smtp_timeout": values["timeout"],
    }


SMTP = Section(
    "smtp",
    (
        Field(
            "enabled",
            "boolean",
            description="Send mail (needs `host`). Read-only when SHIPYARD_SMTP_HOST is set.",
            base=lambda s: bool(s.smtp_host),
            locked_by=("smtp_host",),
        ),
        Field("host", "string", "smtp_host", "The SMTP server.", checks=(host,)),
        Field("port", "integer", "smtp_port", checks=(between(1, 65535),)),
        Field("username", "string", "smtp_username", "Empty: no login.", checks=(one_line,)),
        Field(
            "password",
            "string",
            "smtp_password",
            "Write-only: never returned.",
            secret=True,
        ),
        Field(
            "tls",
            "string",
            "smtp_tls",
            "`off`, `starttls` or `implicit`; PocketBase's `true` / `false` are taken as "
            "`implicit` / `starttls`.",
            enum=TLS_MODES,
            parse=_tls,
        ),
        Field(
            "timeout",
            "number",
            "smtp_timeout",
            "Seconds per SMTP network step.",
            checks=(positive, between(0, 600)),
        ),
    ),
    "The mail server.",
    validate=_smtp_rules,
    overlay=_smtp_settings,
)

MAIL_SECTIONS = (META, SMTP)
