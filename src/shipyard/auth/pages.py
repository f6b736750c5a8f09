"""`/_/`: the pages the account mails link to (`{APP_URL}/_/#/auth/<action>/<token>`, as
PocketBase's do), so a user who clicks a link can confirm the account, set a new password or
confirm a new e-mail address.

The token is in the URL fragment, which browsers never send; the page's script (a static
file of this package, no inline code, nothing from another origin) reads it and calls the
records API: `confirm-verification`, `confirm-password-reset`, `confirm-email-change` of the
collection named in the token. The page holds no secret and never changes, yet is not
cached: the address bar of a page that handled a token is nothing to keep.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route

from shipyard.kernel.spec import GUARD_PUBLIC
from shipyard.tools.packedfiles import PackedFiles

PAGE_PATH = "/_/"
# fingerprinted and precompressed once (tools/packedfiles.py): the page names each file by
# its content, so a browser never keeps an old script after an upgrade
STATIC_FILES = PackedFiles(Path(__file__).parent / "static")

HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}

# asset URLs are relative, so the page also works when Shipyard is served below a prefix
_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <meta name="referrer" content="no-referrer">
  <title>{app}</title>
  <link rel="icon" href="static/{icon}" type="image/svg+xml">
  <link rel="stylesheet" href="static/{css}">
  <script src="static/{js}" defer></script>
</head>
<body>
  <main id="app">
    <h1>{app}</h1>
    <p id="status" role="status">Loading…</p>
    <noscript><p>This page needs JavaScript to confirm the link from your e-mail.</p></noscript>
  </main>
</body>
</html>
"""


async def account_page(request: Request) -> Response:
    settings = await request.app.state.services.runtime.current()  # as /api/settings set it
    app_name = settings.app_name
    page = _PAGE.format(
        app=html.escape(app_name),
        icon=STATIC_FILES.url("icon.svg"),
        css=STATIC_FILES.url("account.css"),
        js=STATIC_FILES.url("account.js"),
    )
    return HTMLResponse(page, headers=HEADERS)


def openapi_paths() -> dict[str, Any]:
    return {
        PAGE_PATH: {
            "get": {
                "tags": ["system"],
                "operationId": "accountPage",
                "summary": "The page the account mails link to (`#/auth/<action>/<token>`)",
                "description": "Confirms a verification, sets a new password or confirms a "
                "new e-mail address with the token in the URL fragment, through the auth "
                "collection's confirm-* endpoints.",
                "security": [{}],
                "x-shipyard-guard": GUARD_PUBLIC,
                "responses": {
                    "200": {
                        "description": "HTML page",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    }
                },
            }
        }
    }


# Any: app.py appends these to its list of Routes, and the assets are a Mount
routes: list[Any] = [
    Route(PAGE_PATH, account_page, methods=["GET"]),
    Mount("/_/static", app=STATIC_FILES, name="account-pages"),
]
