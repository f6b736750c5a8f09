"""The mailer as settings configure it: shared by every capability that sends mail
(account mails, the send_email job, the settings test mail)."""

from __future__ import annotations

from shipyard.settings import Settings
from shipyard.tools.mailer import TLS_MODES, Mailer, MailError


def mailer_from_settings(settings: Settings) -> Mailer | None:
    """None when mail is disabled (no SHIPYARD_SMTP_HOST)."""
    if not settings.smtp_host:
        return None
    tls = next((mode for mode in TLS_MODES if mode == settings.smtp_tls), None)
    if tls is None:  # load_settings already rejects this; a hand-built Settings may not
        raise MailError(f"SHIPYARD_SMTP_TLS: unsupported value {settings.smtp_tls!r}")
    return Mailer(
        host=settings.smtp_host,
        port=settings.smtp_port,
        username=settings.smtp_username,
        password=settings.smtp_password,
        tls=tls,
        sender_address=settings.mail_sender_address,
        sender_name=settings.mail_sender_name,
        timeout=settings.smtp_timeout,
    )
