"""What every capability needs to describe its routes in the OpenAPI document: the value a
capability contributes (`OpenAPIPart`), how parts merge into one document, the guards an
operation names (`x-shipyard-guard`), the shared error responses, and small builders.

Capabilities build parts; http/ assembles them. The guard names live here, not in http/,
because the capabilities write them and http/ only reads them to filter each caller's view.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Schema = dict[str, Any]

JSON_TYPE = "application/json"
FORM_TYPE = "multipart/form-data"
STR: dict[str, Any] = {"type": "string"}
NUM: dict[str, Any] = {"type": "number"}
INT: dict[str, Any] = {"type": "integer"}
BOOL: dict[str, Any] = {"type": "boolean"}
STRS: dict[str, Any] = {"type": "array", "items": STR}
ANY: dict[str, Any] = {}


def error(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/responses/{name}"}


def ok(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON_TYPE: {"schema": schema}}}


def body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {JSON_TYPE: {"schema": schema}}}


def path_param(name: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema or STR}


def query_param(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


def superuser_op(
    tag: str, op_id: str, summary: str, doc: str, responses: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    return {
        "tags": [tag],
        "operationId": op_id,
        "summary": summary,
        "description": f"Superusers only. See {doc}.",
        "security": [{"Authorization": []}],
        "x-shipyard-guard": GUARD_SUPERUSER,
        "responses": {**responses, "401": error("Unauthorized"), "403": error("Forbidden")},
        **extra,
    }


def page_of(item: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": description,
        "properties": {
            "page": INT,
            "perPage": INT,
            "totalItems": INT,
            "totalPages": INT,
            "items": {"type": "array", "items": item},
        },
        "required": ["page", "perPage", "totalItems", "totalPages", "items"],
    }


def schema_ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def param_ref(name: str) -> Schema:
    return {"$ref": f"#/components/parameters/{name}"}


def json_ok(schema: Schema, description: str = "OK") -> Schema:
    """A `responses` entry: 200 with a JSON body."""
    return {"200": ok(schema, description)}


def form_body(schema: Schema, *, required: bool = True, form: bool = True) -> Schema:
    """A request body taken as JSON and, with `form`, as multipart form fields."""
    content = {JSON_TYPE: {"schema": schema}}
    if form:
        content[FORM_TYPE] = {"schema": schema}
    return {"required": required, "content": content}


NO_CONTENT: Schema = {"204": {"description": "Done; no content."}}


# ---------------------------------------------------------------------- guards

# `x-shipyard-guard`: what lets a caller through, on every operation
GUARD_PUBLIC = "public"  # anyone, guests included
GUARD_SUPERUSER = "superuser"  # a superuser's auth token
GUARD_OWN_TOKEN = "own-auth-token"  # the auth token of a record of the path's collection  # noqa: S105 (a name)
GUARD_IDENTITY_PASSWORD = "identity-password"  # login credentials in the body  # noqa: S105 (a name)
GUARD_EMAILED_TOKEN = "emailed-token"  # the token of a mailed link  # noqa: S105 (a name)
GUARD_EMAILED_TOKEN_AND_PASSWORD = "emailed-token-and-password"  # noqa: S105 (a name)
GUARD_RULE = "rule"  # the collection's API rule named in `x-shipyard-rule`

# what a rule expression does to a caller it does not match, per action
RULE_EFFECT = {
    "list": "records it does not match are left out of the page",
    "view": "a record it does not match answers 404",
    "create": "a new record it does not match is refused with 400",
    "update": "a record it does not match answers 404",
    "delete": "a record it does not match answers 404",
}


# ---------------------------------------------------------------------- shared errors

# status: (name under components/responses, description); every error has the shape of
# the `Error` schema (kernel/errors.py's ApiError)
ERRORS = {
    400: ("BadRequest", "The request was invalid: bad parameters, body or field values."),
    401: ("Unauthorized", "A valid auth token is required."),
    403: ("Forbidden", "The caller may not perform this action."),
    404: ("NotFound", "The collection or record does not exist (or the rule hides it)."),
    429: ("TooManyRequests", "Too many failed attempts; retry after `Retry-After` seconds."),
    413: ("TooLarge", "The request body exceeds the configured size limit."),
    503: (
        "Busy",
        "Every password-hashing slot of the server is taken "
        "(SHIPYARD_PASSWORD_HASH_CONCURRENCY); retry after `Retry-After` seconds.",
    ),
}


def errors(*codes: int) -> Schema:
    """`responses` entries referring to the shared error responses of `codes`."""
    return {str(code): error(ERRORS[code][0]) for code in codes}


# ---------------------------------------------------------------------- parts


@dataclass(frozen=True)
class Viewer:
    """Who a document is built for. http/ builds the whole document once, for a superuser,
    and derives every other caller's view from it, so builders get `superuser=True` today;
    a builder may still leave out what only superusers may learn when it is false."""

    superuser: bool


@dataclass(frozen=True)
class OpenAPIPart:
    """What one capability contributes to the OpenAPI document. Every path and every named
    component belongs to exactly one part; a part may refer to another's components (record
    schemas, shared parameters, the error responses) by `$ref`, and may tag operations with a
    tag another part declares."""

    paths: Mapping[str, Schema] = field(default_factory=dict)
    schemas: Mapping[str, Schema] = field(default_factory=dict)  # components/schemas
    parameters: Mapping[str, Schema] = field(default_factory=dict)  # components/parameters
    responses: Mapping[str, Schema] = field(default_factory=dict)  # components/responses
    security_schemes: Mapping[str, Schema] = field(default_factory=dict)
    tags: Sequence[Schema] = ()  # {"name", "description"}, in the order the docs show them


class SpecConflict(ValueError):
    """Two parts claim the same path, component or tag."""


_SECTIONS = ("paths", "schemas", "parameters", "responses", "security_schemes")


def merge_parts(parts: Iterable[OpenAPIPart]) -> OpenAPIPart:
    """One part holding all of `parts`, in their order; a path, component or tag named by
    two parts raises SpecConflict rather than letting one silently replace the other."""
    merged: dict[str, dict[str, Schema]] = {section: {} for section in _SECTIONS}
    tags: dict[str, Schema] = {}
    for part in parts:
        for section in _SECTIONS:
            into = merged[section]
            for name, value in getattr(part, section).items():
                if name in into:
                    raise SpecConflict(f"OpenAPI {section} {name!r} is described twice")
                into[name] = value
        for tag in part.tags:
            if tag["name"] in tags:
                raise SpecConflict(f"OpenAPI tag {tag['name']!r} is declared twice")
            tags[tag["name"]] = tag
    return OpenAPIPart(**merged, tags=list(tags.values()))


def common_part() -> OpenAPIPart:
    """What the whole document shares: the error shape, the error responses every part
    refers to, and the `Authorization` header as a security scheme."""
    return OpenAPIPart(
        schemas={
            "Error": {
                "type": "object",
                "description": "Every error, in PocketBase's shape; `data` maps field names to "
                "`{code, message}` for validation errors.",
                "properties": {
                    "status": {"type": "integer"},
                    "message": {"type": "string"},
                    "data": {"type": "object"},
                },
                "required": ["status", "message", "data"],
            }
        },
        responses={
            name: {"description": text, "content": {JSON_TYPE: {"schema": schema_ref("Error")}}}
            for name, text in ERRORS.values()
        },
        security_schemes={
            "Authorization": {
                "type": "apiKey",
                "in": "header",
                "name": "Authorization",
                "description": "An auth token, raw or prefixed with `Bearer `.",
            }
        },
    )
