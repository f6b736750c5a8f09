"""Checks of an OpenAPI document beyond its meta-schema (shared by the OpenAPI tests)."""

from __future__ import annotations

import re
from typing import Any

import jsonschema_rs

METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def walk_refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        out = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        for value in node.values():
            out += walk_refs(value)
        return out
    if isinstance(node, list):
        return [ref for item in node for ref in walk_refs(item)]
    return []


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def assert_valid_document(doc: dict[str, Any]) -> None:
    """Valid OpenAPI 3.1, and what the meta-schema cannot see."""
    assert doc["openapi"].startswith("3.1.")
    try:
        from openapi_spec_validator import validate  # type: ignore[import-not-found]
    except ImportError:
        # schemathesis (a test dependency) ships the official OpenAPI 3.1 meta-schema
        from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR

        errors = [str(e) for e in OPENAPI_31_VALIDATOR.iter_errors(doc)]
        assert not errors, errors[:5]
    else:
        validate(doc)

    # what the meta-schema cannot see: every schema is valid JSON Schema 2020-12, every
    # $ref resolves, operation ids are unique, path templates match their parameters
    for name, schema in doc["components"]["schemas"].items():
        assert jsonschema_rs.meta.is_valid(schema), name
    for ref in walk_refs(doc):
        resolve(doc, ref)
    op_ids = [
        op["operationId"]
        for item in doc["paths"].values()
        for m, op in item.items()
        if m in METHODS
    ]
    assert len(op_ids) == len(set(op_ids))
    schemes = doc["components"]["securitySchemes"]
    assert schemes["Authorization"] == {
        **schemes["Authorization"],
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
    }
    for path, item in doc["paths"].items():
        templated = set(re.findall(r"{([^}]+)}", path))
        shared = [
            p if "$ref" not in p else resolve(doc, p["$ref"]) for p in item.get("parameters", [])
        ]
        for method, op in item.items():
            if method not in METHODS:
                continue
            params = shared + [
                p if "$ref" not in p else resolve(doc, p["$ref"]) for p in op.get("parameters", [])
            ]
            in_path = {p["name"] for p in params if p["in"] == "path"}
            assert in_path == templated, (path, method, in_path)
            assert all(p["required"] for p in params if p["in"] == "path")
            for requirement in op.get("security", []):
                assert set(requirement) <= set(schemes)
            for response in op["responses"].values():  # links name operations of the document
                for link in response.get("links", {}).values():
                    assert link["operationId"] in op_ids, (path, method, link)
            assert op["responses"], (path, method)
