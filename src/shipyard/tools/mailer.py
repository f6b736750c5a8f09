"""Async SMTP sending over `aiosmtplib`: one MIME-building, error-normalising place for mail.

Callers get one exception type (`MailError`) whose message says what went wrong and where,
so an API handler can report it without knowing SMTP. The password never reaches a message,
a repr or a log line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from html.parser import HTMLParser
from typing import Literal

import aiosmtplib

TLSMode = Literal["off", "starttls", "implicit"]
TLS_MODES: tuple[TLSMode, ...] = ("off", "starttls", "implicit")


class MailError(Exception):
    """Sending failed, or the message cannot be sent; the text is safe to log and show."""


@dataclass(frozen=True)
class Message:
    """One mail to one recipient. `text` empty: derived from `html`, so every mail has both."""

    to: str
    subject: str
    html: str = field(repr=False)  # bodies carry action tokens: keep them out of logs
    text: str = field(default="", repr=False)


@dataclass(frozen=True, repr=False)
class Mailer:
    """SMTP connection settings; each `send` opens its own connection (mail is rare, and a
    fresh connection never trips over a server-side idle timeout)."""

    host: str
    port: int = 587
    username: str = ""
    password: str = ""
    tls: TLSMode = "starttls"
    sender_address: str = "noreply@example.com"
    sender_name: str = ""
    timeout: float = 10.0  # seconds per network step (connect, each command)

    def __post_init__(self) -> None:
        if self.tls not in TLS_MODES:
            raise ValueError(f"tls must be one of {', '.join(TLS_MODES)}, got {self.tls!r}")
        if self.timeout <= 0:
            raise ValueError("timeout must be greater than 0")

    def __repr__(self) -> str:
        secret = "'********'" if self.password else "''"
        return (
            f"Mailer(host={self.host!r}, port={self.port!r}, username={self.username!r}, "
            f"password={secret}, tls={self.tls!r}, sender_address={self.sender_address!r}, "
            f"sender_name={self.sender_name!r}, timeout={self.timeout!r})"
        )

    def build(self, message: Message) -> EmailMessage:
        """The MIME message `send` would transmit: multipart/alternative, text first (clients
        show the last part they understand, so HTML wins where supported)."""
        try:
            mime = EmailMessage()
            mime["From"] = Address(self.sender_name, addr_spec=self.sender_address)
            mime["To"] = Address(addr_spec=message.to)
            mime["Subject"] = message.subject
            mime["Date"] = formatdate(localtime=False, usegmt=True)
            domain = self.sender_address.rpartition("@")[2] or None
            mime["Message-ID"] = make_msgid(domain=domain)
            mime.set_content(message.text or html_to_text(message.html))
            mime.add_alternative(message.html, subtype="html")
        except (ValueError, IndexError, HeaderParseError) as exc:
            # header injection (CR/LF) and malformed addresses end up here
            raise MailError(f"cannot build mail to {message.to!r}: {exc}") from None
        return mime

    async def send(self, message: Message) -> None:
        mime = self.build(message)
        where = f"SMTP server {self.host}:{self.port}"
        try:
            await aiosmtplib.send(
                mime,
                sender=self.sender_address,
                recipients=[message.to],
                hostname=self.host,
                port=self.port,
                username=self.username or None,
                password=(self.password or None) if self.username else None,
                use_tls=self.tls == "implicit",
                start_tls=self.tls == "starttls",
                timeout=self.timeout,
            )
        except aiosmtplib.SMTPAuthenticationError as exc:
            reason = self._safe(f"{exc.code} {exc.message}")
            raise MailError(
                f"{where} rejected the login of user {self.username!r}: {reason}"
            ) from None
        except aiosmtplib.SMTPRecipientsRefused as exc:
            reason = self._safe("; ".join(f"{e.code} {e.message}" for e in exc.recipients))
            raise MailError(f"{where} refused recipient {message.to!r}: {reason}") from None
        except (aiosmtplib.SMTPConnectTimeoutError, aiosmtplib.SMTPTimeoutError):
            raise MailError(f"{where} did not answer within {self.timeout:g} s") from None
        except aiosmtplib.SMTPConnectError as exc:
            raise MailError(f"cannot connect to {where}: {self._safe(str(exc))}") from None
        except aiosmtplib.SMTPException as exc:
            raise MailError(f"{where} failed to send mail: {self._safe(str(exc))}") from None
        except OSError as exc:  # DNS failures, TLS handshake errors, resets
            raise MailError(f"cannot send mail via {where}: {self._safe(str(exc))}") from None

    def _safe(self, text: str) -> str:
        """Server replies are untrusted text: never let them echo the password back to us."""
        text = text.strip() or "no reason given"
        return text.replace(self.password, "********") if self.password else text


# -- HTML to plain text ---------------------------------------------------------------------

_BLOCKS = {"p", "div", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol"}
_SKIP = {"style", "script", "head", "title"}


class _TextExtractor(HTMLParser):
    """Source whitespace collapses as a browser would; only tags make line breaks."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0
        self._links: list[tuple[str | None, int]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self._skip += 1
        elif tag == "br":
            self.parts.append("\n")
        elif tag in _BLOCKS:
            self.parts.append("\n\n")
        elif tag == "a":
            self._links.append((dict(attrs).get("href"), len(self.parts)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCKS:
            self.parts.append("\n\n")
        elif tag == "a" and self._links:
            href, start = self._links.pop()
            label = "".join(self.parts[start:]).strip()
            if href and href != label:
                self.parts.append(f" ({href})" if label else href)

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(re.sub(r"\s+", " ", data))


def html_to_text(markup: str) -> str:
    """A readable plain-text alternative: paragraphs kept, links spelled out as "label (url)"
    so a text-only client can still follow the action link."""
    parser = _TextExtractor()
    parser.feed(markup)
    parser.close()
    lines = [line.strip() for line in "".join(parser.parts).split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"
