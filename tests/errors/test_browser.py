"""The unmodified `@sentry/browser` (npm, tests/e2e/js) in headless Debian chromium, on a
page served from another origin: an uncaught exception arrives as an issue. The API's own
CORS setting names one other origin; ingestion must take the page's anyway."""

from __future__ import annotations

import http.server
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import sync_playwright

from tests.helpers.errors import Api, browser_import_map
from tests.helpers.servers import Server, serve_directory
from tests.helpers.wait import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

NODE_MODULES = Path(__file__).resolve().parents[1] / "e2e" / "js" / "node_modules"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]  # fmt: skip

PAGE = """<!doctype html><html><head><meta charset="utf-8">
<script type="importmap">%s</script></head>
<body><pre id="out">pending</pre>
<script type="module">
import * as Sentry from "@sentry/browser";
Sentry.init({ dsn: new URLSearchParams(location.search).get("dsn"), release: "web@1.0" });
Sentry.setUser({ id: "browser-user-1" });
function renderCart(items) { return items.map((item) => item.price.toFixed(2)); }
document.getElementById("out").textContent = "ready";
setTimeout(() => renderCart([{ price: null }]), 0);  // uncaught: the SDK's global handler
</script></body></html>
"""


class _Static(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".js": "text/javascript", ".mjs": "text/javascript"}  # fmt: skip

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def page_origin(tmp_path: Path) -> Iterator[str]:
    """A static server on another origin: the page and the SDK's ES modules."""
    if not (NODE_MODULES / "@sentry" / "browser").exists():
        pytest.fail(f"{NODE_MODULES}/@sentry/browser missing: run `npm ci` in tests/e2e/js")
    site = tmp_path / "site"
    site.mkdir()
    (site / "node_modules").symlink_to(NODE_MODULES)
    imports = browser_import_map(NODE_MODULES, "/node_modules")
    (site / "index.html").write_text(PAGE % json.dumps(imports))
    with serve_directory(site, _Static) as url:
        yield url


def test_browser_sdk_reports_an_uncaught_error(srv: Server, api: Api, page_origin: str) -> None:
    p = api.project("browser")
    dsn = p["dsn"].replace("127.0.0.1", "localhost")  # another host than the page's
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(f"{page_origin}/index.html?dsn={dsn}")
            page.wait_for_function("document.getElementById('out').textContent === 'ready'")
            [issue] = wait_until(
                lambda: api.issues(p["id"]), timeout=30, what="the browser's event"
            )
        finally:
            browser.close()
    assert issue["type"] == "TypeError", issue
    assert "toFixed" in issue["title"]
    assert issue["users"] == 1
    event = api.get(f"/api/errors/{issue['id']}/events")["items"][0]["data"]
    assert event["platform"] == "javascript"
    assert event["release"] == "web@1.0"
    frames = event["exception"]["values"][-1]["stacktrace"]["frames"]
    assert any(f.get("function") == "renderCart" for f in frames), frames
    # the SDK could read the answer: no CORS error in the page's console
    assert not [e for e in errors if "CORS" in e or "Access-Control" in e], errors
