"""OpenAPI 3.1 built from the JSON Schemas in ``src/syndicate/schemas/``.

Each schema becomes ``components/schemas/{Title}`` and its ``$defs`` become
``{Title}_{def}`` siblings, with every ``$ref`` rewritten to match: the document
then stands alone, and the wire format has one source of truth.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from .. import __version__
from ..schemas import load_schema

# (schema file name, component title) pairs; routers name them in openapi_extra.
COMPONENT_SCHEMAS: list[tuple[str, str]] = [("article", "Article")]


def register(schema_name: str, title: str) -> dict[str, Any]:
    """Make ``src/syndicate/schemas/{schema_name}.schema.json`` a component; returns a ``$ref`` to it."""
    if (schema_name, title) not in COMPONENT_SCHEMAS:
        COMPONENT_SCHEMAS.append((schema_name, title))
    return {"$ref": f"#/components/schemas/{title}"}


def json_body(schema_name: str, title: str, description: str = "") -> dict[str, Any]:
    """``openapi_extra`` for an endpoint whose JSON body is one of our schemas."""
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {"application/json": {"schema": register(schema_name, title)}},
        }
    }


def _rewrite(node: Any, title: str) -> Any:
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str) and v.startswith("#/$defs/"):
                out[k] = f"#/components/schemas/{title}_{v[len('#/$defs/'):]}"
            elif k == "$ref" and v == "#":
                out[k] = f"#/components/schemas/{title}"
            else:
                out[k] = _rewrite(v, title)
        return out
    if isinstance(node, list):
        return [_rewrite(v, title) for v in node]
    return node


def components(schema_name: str, title: str) -> dict[str, Any]:
    schema = copy.deepcopy(load_schema(schema_name))
    defs = schema.pop("$defs", {})
    schema.pop("$schema", None)
    schema.pop("$id", None)
    out = {title: _rewrite(schema, title)}
    for name, sub in defs.items():
        out[f"{title}_{name}"] = _rewrite(sub, title)
    return out


STORE_UNAVAILABLE_RESPONSE = {
    "description": "The data store is unreachable, loading or refusing writes: retry after Retry-After seconds",
    "headers": {"Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}},
}


def _document_store_unavailable(doc: dict[str, Any]) -> None:
    # Every operation can meet a down store (api/errors.py answers it centrally), so every
    # operation documents the 503 and its Retry-After header.
    for operations in doc.get("paths", {}).values():
        for operation in operations.values():
            if isinstance(operation, dict) and "responses" in operation:
                documented = operation["responses"].setdefault("503", dict(STORE_UNAVAILABLE_RESPONSE))
                documented.setdefault("headers", STORE_UNAVAILABLE_RESPONSE["headers"])


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        doc = get_openapi(
            title="syndicate",
            version=__version__,
            openapi_version="3.1.0",
            description=app.description,
            routes=app.routes,
        )
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        for name, title in COMPONENT_SCHEMAS:
            schemas.update(components(name, title))
        doc["components"].setdefault("securitySchemes", {})["bearer"] = {"type": "http", "scheme": "bearer"}
        _document_store_unavailable(doc)
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
