"""The pages the account mails link to (`/_/#/auth/...`) and the docs page, driven in a real
browser (Debian's chromium through playwright) against a real `shipyard serve` whose mail
goes to a local SMTP server — on SQLite and PostgreSQL.

A user clicks the link of a real mail: the account gets verified, the password reset, the
new address confirmed, as the API then shows; and no page breaks its Content-Security-Policy
(every violation is recorded in the page and asserted empty, and a check that injects inline
code proves the recording works).
"""

from __future__ import annotations

import html
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from playwright.sync_api import Browser, Page, sync_playwright

from shipyard.auth import pages as account_pages
from tests.helpers.servers import Server, free_port, fresh_pg_database, start_server, stop_server

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PW = "first-pass-123"
MAIL_DEADLINE_S = 30.0
WAIT_MS = 15_000

# recorded in every page before its own scripts run (playwright's init scripts are exempt
# from the page's CSP)
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__violations.push(e.violatedDirective + " " + e.blockedURI);
});
"""


class Inbox:
    """An SMTP server's mailbox; mail may arrive after the request that sends it returned
    (sending may be queued), so readers wait for it up to a deadline."""

    def __init__(self) -> None:
        self._messages: list[Message] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            self._messages.append(message_from_bytes(envelope.content))
        return "250 OK"

    def take(self, to: str) -> Message:
        deadline = time.monotonic() + MAIL_DEADLINE_S
        while time.monotonic() < deadline:
            with self._lock:
                for i, msg in enumerate(self._messages):
                    if msg["To"] == to:
                        return self._messages.pop(i)
            time.sleep(0.05)
        raise AssertionError(f"no mail to {to} within {MAIL_DEADLINE_S} s")

    def link(self, to: str, action: str) -> str:
        """The action link of the next mail to `to`, exactly as the mail has it."""
        msg = self.take(to)
        part = next(p for p in msg.walk() if p.get_content_type() == "text/html")
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        hrefs = [html.unescape(h) for h in re.findall(r'href="([^"]+)"', payload.decode())]
        links = [h for h in hrefs if f"/_/#/auth/{action}/" in h]
        assert len(links) == 1, hrefs
        return links[0]


@dataclass
class Site:
    server: Server
    inbox: Inbox
    su: dict[str, str]
    users: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, self.url + path, timeout=30, **kwargs)

    def new_user(self) -> tuple[str, str]:
        """A fresh account of `users`: (id, e-mail)."""
        email = f"u{uuid.uuid4().hex[:10]}@example.com"
        body = {"email": email, "password": PW, "passwordConfirm": PW}
        r = self.api("POST", "/api/collections/users/records", json=body)
        assert r.status_code == 200, r.text
        return str(r.json()["id"]), email

    def login(self, identity: str, password: str) -> httpx.Response:
        return self.api(
            "POST",
            "/api/collections/users/auth-with-password",
            json={"identity": identity, "password": password},
        )

    def record(self, record_id: str) -> dict[str, Any]:
        r = self.api("GET", f"/api/collections/users/records/{record_id}", headers=self.su)
        assert r.status_code == 200, r.text
        return dict(r.json())


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    """One server per backend for the module (the browser set-up is the heavy part), whose
    mails link to itself."""
    database_url = ""
    if request.param == "postgres":
        database_url = fresh_pg_database(request.getfixturevalue("pg_admin_url"))
    inbox = Inbox()
    smtp_port = free_port()
    smtp = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    port = free_port()
    extra = {
        "SHIPYARD_PORT": port,
        "SHIPYARD_APP_URL": f"http://127.0.0.1:{port}",
        "SHIPYARD_SMTP_HOST": "127.0.0.1",
        "SHIPYARD_SMTP_PORT": smtp_port,
        "SHIPYARD_SMTP_TLS": "off",
    }
    data_dir: Path = tmp_path_factory.mktemp(f"site-{request.param}")
    try:
        server = start_server(data_dir, database_url, extra)
        try:
            su = {"Authorization": server.superuser_token()}
            r = httpx.post(
                server.url + "/api/collections",
                headers=su,
                json={"name": "users", "type": "auth", "createRule": ""},
                timeout=30,
            )
            assert r.status_code == 200, r.text
            yield Site(server, inbox, su)
        finally:
            stop_server(server)
    finally:
        smtp.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


class Tab:
    """A fresh browser context and page that records console errors and CSP violations."""

    def __init__(self, browser: Browser) -> None:
        self.context = browser.new_context()
        self.page: Page = self.context.new_page()
        self.page.set_default_timeout(WAIT_MS)
        self.page.add_init_script(RECORD_VIOLATIONS)
        self.errors: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(f"{message.text} ({message.location.get('url')})")

    def status(self, kind: str) -> str:
        """The text of the page's status line once it shows a result of `kind`."""
        return self.page.locator(f"#status.{kind}").inner_text()

    def assert_clean(self) -> None:
        """No CSP violation and no error in the page loaded now."""
        assert self.page.evaluate("window.__violations") == []
        assert self.errors == []


@pytest.fixture
def tab(browser: Browser) -> Iterator[Tab]:
    t = Tab(browser)
    try:
        yield t
    finally:
        t.context.close()


# ---------------------------------------------------------------------- the account pages


def test_verification_link_verifies_the_account(site: Site, tab: Tab) -> None:
    user_id, email = site.new_user()
    assert site.record(user_id)["verified"] is False
    r = site.api("POST", "/api/collections/users/request-verification", json={"email": email})
    assert r.status_code == 204, r.text
    link = site.inbox.link(email, "confirm-verification")
    assert link.startswith(site.url + "/_/#/auth/confirm-verification/")

    tab.page.goto(link)
    assert tab.status("success") == "Your e-mail address is verified. You can close this page."
    assert site.record(user_id)["verified"] is True
    assert tab.page.url == site.url + "/_/"  # the token left the address bar
    tab.assert_clean()

    # a link whose token was tampered with: the server refuses it, the page says so
    tab.page.goto(link + "x")
    assert tab.status("error") == "This link is invalid or has expired. Ask for a new one."
    tab.errors.clear()  # the refused request itself is logged by the browser
    assert tab.page.evaluate("window.__violations") == []


def test_password_reset_link_sets_a_new_password(site: Site, tab: Tab) -> None:
    user_id, email = site.new_user()
    r = site.api("POST", "/api/collections/users/request-password-reset", json={"email": email})
    assert r.status_code == 204, r.text
    link = site.inbox.link(email, "confirm-password-reset")
    assert link.startswith(site.url + "/_/#/auth/confirm-password-reset/")

    page = tab.page
    page.goto(link)
    page.fill("#f-password", "new-secret-456")
    page.fill("#f-passwordConfirm", "something-else-789")
    page.click("button[type=submit]")
    assert tab.status("error") == "Please correct the fields below."
    mismatch = page.locator("#f-passwordConfirm-error")
    assert mismatch.is_visible()
    assert mismatch.inner_text()
    assert site.login(email, PW).status_code == 200  # nothing changed yet

    tab.errors.clear()  # the refused request (400) is logged by the browser
    page.fill("#f-passwordConfirm", "new-secret-456")
    page.click("button[type=submit]")
    assert tab.status("success") == (
        "Your password has been changed. You can now log in with the new one."
    )
    assert page.locator("form").count() == 0
    tab.assert_clean()
    assert site.login(email, "new-secret-456").status_code == 200
    assert site.login(email, PW).status_code == 400
    assert site.record(user_id)["verified"] is True  # the mail reached its owner


def test_email_change_link_switches_the_address(site: Site, tab: Tab) -> None:
    user_id, email = site.new_user()
    token = site.login(email, PW).json()["token"]
    new_email = "new-" + email
    r = site.api(
        "POST",
        "/api/collections/users/request-email-change",
        headers={"Authorization": token},
        json={"newEmail": new_email},
    )
    assert r.status_code == 204, r.text
    link = site.inbox.link(new_email, "confirm-email-change")
    assert link.startswith(site.url + "/_/#/auth/confirm-email-change/")

    page = tab.page
    page.goto(link)
    assert page.locator("h2").inner_text() == f"Change your e-mail address to {new_email}"
    page.fill("#f-password", "not-my-password")
    page.click("button[type=submit]")
    assert tab.status("error") == "Please correct the fields below."
    assert page.locator("#f-password-error").is_visible()
    assert site.record(user_id)["email"] == email

    tab.errors.clear()  # the refused request (400) is logged by the browser
    page.fill("#f-password", PW)
    page.click("button[type=submit]")
    assert tab.status("success") == f"Your e-mail address is now {new_email}."
    tab.assert_clean()
    assert site.record(user_id)["email"] == new_email
    assert site.login(new_email, PW).status_code == 200
    assert site.login(email, PW).status_code == 400


def test_a_page_without_a_valid_link_says_so(site: Site, tab: Tab) -> None:
    for fragment in ("", "#/auth/confirm-verification/not-a-jwt", "#/auth/delete-account/a.b.c"):
        tab.page.goto(site.url + "/_/" + fragment)
        assert tab.status("error").startswith("This page confirms the links of account e-mails")
        tab.assert_clean()
        tab.page.goto("about:blank")  # a new document for the next fragment


def test_the_page_is_locked_down(site: Site, tab: Tab) -> None:
    r = site.api("GET", "/_/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    for name, value in account_pages.HEADERS.items():
        assert r.headers[name] == value, name
    assert r.headers["content-security-policy"].startswith("default-src 'none'; script-src 'self';")
    page = r.text
    assert "<script>" not in page
    assert " style=" not in page
    assert "<style" not in page
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    kinds = {"account.css": "text/css", "account.js": "javascript", "icon.svg": "image/svg+xml"}
    # each by its fingerprinted name (cached for a year); the plain name is served too
    named = {f"static/{account_pages.STATIC_FILES.url(n)}": k for n, k in kinds.items()}
    assert sorted(assets) == sorted(named)
    for asset, kind in [*named.items(), *((f"static/{n}", k) for n, k in kinds.items())]:
        a = site.api("GET", "/_/" + asset)
        assert a.status_code == 200, asset
        assert kind in a.headers["content-type"], asset
    assert site.api("GET", "/_/static/nope.js").status_code == 404
    r = site.api("GET", "/_")  # the link's path without its slash leads to the page
    assert r.status_code in (301, 307, 308)
    assert r.headers["location"].endswith("/_/")

    # the policy is enforced and its violations are seen: injected inline code does not run
    tab.page.goto(site.url + "/_/")
    tab.page.evaluate(
        "() => { const s = document.createElement('script'); s.textContent = 'window.__ran = 1';"
        " document.body.appendChild(s); }"
    )
    assert tab.page.evaluate("window.__ran") is None
    violations = tab.page.evaluate("window.__violations")
    assert violations, violations
    assert violations[0].startswith("script-src"), violations


# ---------------------------------------------------------------------- the docs page


def _tags(page: Page) -> set[str]:
    page.wait_for_selector("h3.opblock-tag")
    return {
        str(t)
        for t in page.eval_on_selector_all("h3.opblock-tag", "els => els.map(e => e.dataset.tag)")
    }


def _authorize(page: Page, token: str) -> None:
    page.click("button.authorize")
    page.fill(".auth-container input", token)
    page.click(".auth-container button.authorize")
    page.click("button.btn-done")


def test_docs_page_renders_under_a_strict_policy(site: Site, tab: Tab) -> None:
    """No 'unsafe-inline' anywhere: Swagger UI's one inline <style> (its logo) is allowed by
    its hash, and any other inline style or script is refused, as the browser reports."""
    csp = site.api("GET", "/api/docs").headers["content-security-policy"]
    assert "'unsafe-inline'" not in csp
    assert "'unsafe-eval'" not in csp
    page = tab.page
    page.goto(site.url + "/api/docs")
    page.wait_for_selector("h3.opblock-tag[data-tag=system]")
    assert page.locator(".topbar svg style").count() == 1  # the logo's, by its hash
    page.click("#operations-system-health")  # an operation opens, rendered in full
    page.wait_for_selector("#operations-system-health .opblock-body")
    tab.assert_clean()
    page.evaluate(
        "() => { const s = document.createElement('style'); s.textContent = 'body{color:red}';"
        " document.head.appendChild(s); }"
    )
    violations = page.evaluate("window.__violations")
    assert [v.split()[0] for v in violations] == ["style-src-elem"], violations


def test_docs_page_shows_each_caller_their_view(site: Site, tab: Tab) -> None:
    _, email = site.new_user()
    user_token = site.login(email, PW).json()["token"]
    page = tab.page
    page.goto(site.url + "/api/docs")
    guest = _tags(page)
    assert {"system", "users"} <= guest
    assert not {"_superusers", "collections", "records", "jobs"} & guest
    assert page.locator("#operations-users-authRefresh_users").count() == 0

    _authorize(page, site.su["Authorization"])
    page.wait_for_selector("h3.opblock-tag[data-tag=_superusers]")
    assert {"_superusers", "collections", "records", "jobs", "users"} <= _tags(page)

    page.click("button.authorize")  # log out: back to the guest view
    page.click(".auth-container button:has-text('Logout')")
    page.click("button.btn-done")
    page.wait_for_selector("h3.opblock-tag[data-tag=_superusers]", state="detached")
    assert _tags(page) == guest

    _authorize(page, user_token)
    page.wait_for_selector("#operations-users-authRefresh_users")
    assert _tags(page) == guest
    tab.assert_clean()
