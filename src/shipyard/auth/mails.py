"""The auth collections' mails: verification, password reset and e-mail change confirmation.

Templates and placeholders follow PocketBase (`{APP_NAME}`, `{APP_URL}`, `{TOKEN}`,
`{RECORD:field}`), so PocketBase templates can be reused. Users override a template with
files in `settings.mail_templates_dir` (see docs/mail.md); overrides are read on every send,
so editing them needs no restart.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args

from shipyard.settings import Settings
from shipyard.tools.mailer import Mailer, MailError, Message, html_to_text

MailKind = Literal["verification", "password-reset", "email-change"]
MAIL_KINDS: tuple[MailKind, ...] = get_args(MailKind)

_FOOTER = """<p><i>{notice}</i></p>
<p>
  Thanks,<br/>
  {{APP_NAME}} team
</p>"""


def _body(intro: str, action: str, label: str, notice: str) -> str:
    return (
        f"<p>Hello,</p>\n{intro}\n<p>\n"
        f'  <a class="btn" href="{{APP_URL}}/_/#/auth/{action}/{{TOKEN}}" '
        f'target="_blank" rel="noopener">{label}</a>\n</p>\n' + _FOOTER.format(notice=notice)
    )


# (subject, html body); the action links are PocketBase's defaults, served at /_/ as there
BUILTIN: dict[MailKind, tuple[str, str]] = {
    "verification": (
        "Verify your {APP_NAME} email",
        _body(
            "<p>Thank you for joining us at {APP_NAME}.</p>\n"
            "<p>Click on the button below to verify your email address.</p>",
            "confirm-verification",
            "Verify",
            "If you didn't recently register, please ignore this email.",
        ),
    ),
    "password-reset": (
        "Reset your {APP_NAME} password",
        _body(
            "<p>Click on the button below to reset your password.</p>",
            "confirm-password-reset",
            "Reset password",
            "If you didn't ask to reset your password, please ignore this email.",
        ),
    ),
    "email-change": (
        "Confirm your {APP_NAME} new email address",
        _body(
            "<p>Click on the button below to confirm your new email address.</p>",
            "confirm-email-change",
            "Confirm new email",
            "If you didn't ask to change your email address, please ignore this email.",
        ),
    ),
}

_LAYOUT = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  body {{ font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
         font-size: 14px; line-height: 1.5; color: #16161a; background: #fff; }}
  .btn {{ display: inline-block; padding: 8px 16px; border-radius: 4px;
          background: #16161a; color: #fff !important; text-decoration: none; }}
</style>
</head>
<body>
{content}
</body>
</html>
"""

# record fields that must never reach a mail even if the caller passes the raw row
_NEVER_EXPOSED = frozenset({"password", "tokenKey", "passwordConfirm"})
_PLACEHOLDER = re.compile(r"\{(APP_NAME|APP_URL|TOKEN|RECORD:[A-Za-z0-9_]+)\}")
_SAFE_DIR_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def _stringify(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False, default=str)


def _placeholders(settings: Settings, record: Mapping[str, Any], token: str) -> dict[str, str]:
    values = {
        "APP_NAME": settings.app_name,
        "APP_URL": settings.app_url.rstrip("/"),
        "TOKEN": token,
    }
    for name, value in record.items():
        if name not in _NEVER_EXPOSED:
            values[f"RECORD:{name}"] = _stringify(value)
    return values


def _substitute(template: str, values: Mapping[str, str], *, escape: bool) -> str:
    """One pass, so a value that itself looks like `{TOKEN}` is never expanded; unknown
    placeholders stay as written (as in PocketBase) so a typo is visible, not silent."""

    def repl(m: re.Match[str]) -> str:
        value = values.get(m.group(1))
        if value is None:
            return m.group(0)
        return html.escape(value, quote=True) if escape else value

    return _PLACEHOLDER.sub(repl, template)


def _read_override(settings: Settings, collection_name: str, filename: str) -> str | None:
    """Collection-specific file first, then `default/`; None when neither exists."""
    if not settings.mail_templates_dir:
        return None
    root = Path(settings.mail_templates_dir).expanduser()
    dirs = [collection_name] if _SAFE_DIR_NAME.match(collection_name) else []
    for directory in [*dirs, "default"]:
        path = root / directory / filename
        if path.is_file():
            try:
                return path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise MailError(f"mail template {path}: cannot read it ({exc})") from None
    return None


def load_template(settings: Settings, kind: MailKind, collection_name: str) -> tuple[str, str]:
    """(subject, html body) for `kind`; subject and body are overridden independently."""
    if kind not in BUILTIN:
        raise ValueError(f"unknown mail kind {kind!r}; expected one of {', '.join(MAIL_KINDS)}")
    subject, body = BUILTIN[kind]
    subject_override = _read_override(settings, collection_name, f"{kind}.subject.txt")
    body_override = _read_override(settings, collection_name, f"{kind}.html")
    if subject_override is not None and subject_override.strip():
        subject = subject_override
    if body_override is not None and body_override.strip():
        body = body_override
    return subject, body


def render(
    kind: MailKind,
    settings: Settings,
    collection_name: str,
    record: Mapping[str, Any],
    token: str,
    *,
    to: str | None = None,
) -> Message:
    """The mail for `record`. `to` defaults to the record's email; the e-mail change mail
    passes the new address instead. `record` should be the API projection: hidden fields
    would otherwise become placeholders (password and tokenKey are always dropped)."""
    subject_tpl, body_tpl = load_template(settings, kind, collection_name)
    values = _placeholders(settings, record, token)
    recipient = to if to is not None else _stringify(record.get("email"))
    if not recipient:
        raise MailError(f"cannot send the {kind} mail: the record has no email address")
    # a subject is one header line: values with line breaks must not add headers
    subject = " ".join(_substitute(subject_tpl, values, escape=False).split())
    content = _substitute(body_tpl, values, escape=True)
    page = content if "<html" in content.lower() else _LAYOUT.format(content=content.strip())
    return Message(to=recipient, subject=subject, html=page, text=html_to_text(content))


async def send_auth_mail(
    mailer: Mailer | None,
    kind: MailKind,
    settings: Settings,
    collection_name: str,
    record: Mapping[str, Any],
    token: str,
    *,
    to: str | None = None,
) -> Message:
    """Render and send; returns the sent message. Raises MailError (also when mail is off)."""
    if mailer is None:
        raise MailError("mail is disabled: set SHIPYARD_SMTP_HOST to send mails")
    message = render(kind, settings, collection_name, record, token, to=to)
    await mailer.send(message)
    return message
