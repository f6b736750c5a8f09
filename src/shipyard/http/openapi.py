"""`GET /api/openapi.json`: an OpenAPI 3.1 description generated from the live collections,
and `GET /api/docs`: Swagger UI served from Shipyard itself (no CDN, works offline).

Each capability describes its own routes as `OpenAPIPart`s (kernel/spec.py); this module
only assembles the parts it is given. The composition root lists the part builders in
`app.state.openapi_parts`, in the order the document shows them, so http/ names no
capability. The document is rebuilt only when the schema version moves and is kept as
encoded bytes, one view per kind of caller (openapi_access.py), so serving it costs a
dictionary lookup.
"""

from __future__ import annotations

import html
import re
from base64 import b64encode
from collections.abc import Callable, Sequence
from hashlib import sha256
from importlib import metadata
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from shipyard.http.openapi_access import Views
from shipyard.kernel.spec import OpenAPIPart, Schema, Viewer, common_part, merge_parts
from shipyard.kernel.web import services
from shipyard.records.collections import Collection
from shipyard.records.context import resolve_auth
from shipyard.tools.packedfiles import PackedFiles

OPENAPI_PATH = "/api/openapi.json"
DOCS_PATH = "/api/docs"
STATIC_PATH = "/api/docs/static"
# Shipyard's own script of the docs page, fingerprinted and precompressed
OWN_FILES = PackedFiles(Path(__file__).parent / "static" / "docs")

# builds a capability's parts of the document for the live collections
PartBuilder = Callable[[Sequence[Collection], Viewer], Sequence[OpenAPIPart]]


def without_collections(build: Callable[[Viewer], Sequence[OpenAPIPart]]) -> PartBuilder:
    """A PartBuilder of a capability whose routes do not depend on the collections."""

    def parts(collections: Sequence[Collection], viewer: Viewer) -> Sequence[OpenAPIPart]:
        return build(viewer)

    return parts


def _version() -> str:
    try:
        return metadata.version("shipyard")
    except metadata.PackageNotFoundError:  # running from a source tree
        return "0.0.0"


def build_document(
    collections: Sequence[Collection], schema_version: int, builders: Sequence[PartBuilder]
) -> Schema:
    """The whole OpenAPI 3.1 document for the given collections: what a superuser sees; the
    other callers' views are cut from it (openapi_access.py)."""
    viewer = Viewer(superuser=True)
    part = merge_parts(
        [common_part(), *(p for build in builders for p in build(collections, viewer))]
    )
    # the docs page shows a section per tag, in this order: the capabilities' first, then
    # one per collection
    names = {c.name for c in collections}
    tags = [t for t in part.tags if t["name"] not in names]
    tags += [t for t in part.tags if t["name"] in names]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Shipyard API",
            "version": _version(),
            "description": (
                "PocketBase-compatible records API, generated from the live collections "
                f"(schema version {schema_version}). Send the token from an auth endpoint in the "
                "`Authorization` header, raw or as `Bearer <token>`. Errors always have the shape "
                "`{status, message, data}`."
            ),
        },
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "security": [{}, {"Authorization": []}],
        "tags": tags,
        "paths": dict(part.paths),
        "components": {
            "securitySchemes": dict(part.security_schemes),
            "parameters": dict(part.parameters),
            "responses": dict(part.responses),
            "schemas": dict(part.schemas),
        },
        "x-shipyard-schema-version": schema_version,
    }


# ---------------------------------------------------------------------- handlers


async def openapi_json(request: Request) -> Response:
    """Serve the caller's view of the document; the document is rebuilt only when another
    schema version is live. The view depends on the Authorization header, so no shared
    cache may keep it for someone else."""
    svc = services(request)
    auth = await resolve_auth(request)
    await svc.store.refresh()
    version = svc.store.version
    views: Views | None = getattr(request.app.state, "openapi_cache", None)
    if views is None or views.version != version:
        collections = svc.store.all()
        builders: Sequence[PartBuilder] = request.app.state.openapi_parts
        views = Views(version, build_document(collections, version, builders), collections)
        request.app.state.openapi_cache = views
    return Response(
        views.body_for(auth),
        media_type="application/json",
        headers={"Cache-Control": "private, no-cache", "Vary": "Authorization"},
    )


def swagger_ui_dir() -> Path | None:
    """Swagger UI's static files from the `swagger-ui-bundle-v2` package, if installed."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        return None
    path = Path(str(swagger_ui_path))
    return path if (path / "swagger-ui-bundle.js").is_file() else None


_DOCS_HTML = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{title}</title>
  <link rel="stylesheet" href="docs/static/swagger-ui.css">
  <link rel="icon" type="image/png" href="docs/static/favicon-32x32.png" sizes="32x32">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="docs/static/swagger-ui-bundle.js"></script>
  <script src="docs/static/swagger-ui-standalone-preset.js"></script>
  <script src="docs/app/{docs_js}"></script>
</body>
</html>
"""

_MISSING_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>
<body><p>Swagger UI is not installed (<code>pip install swagger-ui-bundle-v2</code>).
The API description is at <a href="openapi.json">openapi.json</a>.</p></body></html>
"""


# Swagger UI's inline SVG logo (in the standalone preset) carries a <style> element: it is
# allowed by its hash, read from the installed bundle, so the policy needs no 'unsafe-inline'
_LOGO_STYLE = re.compile(rb'createElement\("style",null,"([^"\\]*)"\)')


def _inline_style_hashes() -> str:
    static = swagger_ui_dir()
    if static is None:
        return ""
    code = (static / "swagger-ui-standalone-preset.js").read_bytes()
    digests = (sha256(m.group(1)).digest() for m in _LOGO_STYLE.finditer(code))
    return "".join(f" 'sha256-{b64encode(d).decode()}'" for d in digests)


# code, styles and requests stay on the origin; Swagger UI's CSS has data: images
DOCS_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; "
    f"style-src 'self'{_inline_style_hashes()}; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


async def docs_page(request: Request) -> Response:
    # relative asset URLs keep working when Shipyard is served below a path prefix
    page = _DOCS_HTML if swagger_ui_dir() is not None else _MISSING_HTML
    body = page.format(title=html.escape("Shipyard API"), docs_js=OWN_FILES.url("docs.js"))
    return HTMLResponse(body, headers=DOCS_HEADERS)


def _routes() -> list[BaseRoute]:
    out: list[BaseRoute] = [
        Route(OPENAPI_PATH, openapi_json, methods=["GET"]),
        Route(DOCS_PATH, docs_page, methods=["GET"]),
        Mount(DOCS_PATH + "/app", app=OWN_FILES, name="docs"),
    ]
    static = swagger_ui_dir()
    if static is not None:
        out.append(Mount(STATIC_PATH, app=StaticFiles(directory=static), name="swagger-ui"))
    return out


# Any: app.py appends these to its list of Routes, and the assets are a Mount
routes: list[Any] = _routes()
