"""The OpenAPI 3.1 document of the API (`GET /api/v1/openapi.json`), built from the same
route descriptions the router serves, so the two cannot drift apart."""

from __future__ import annotations

from typing import Any

from supervisor.api.support import ApiRoute

ERROR_SCHEMA = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["code", "message"],
    "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                   "field": {"type": "string"}}}}}


def _responses(r: ApiRoute) -> dict[str, Any]:
    error = {"description": "Error", "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Error"}}}}
    if not r.produces:
        return {"302": {"description": "Redirect (see Location)"}, "default": error}
    content = {t: {"schema": {"type": "object"} if t == "application/json" else
                   {"type": "string"}} for t in r.produces}
    return {"2XX": {"description": "Success", "content": content}, "default": error}


def openapi_document(routes: list[ApiRoute], extra: list[ApiRoute]) -> dict[str, Any]:
    """OpenAPI 3.1 for `routes` (token-authenticated) and `extra` (hooks, health, ...)."""
    paths: dict[str, dict[str, Any]] = {}
    for r in routes + extra:
        op: dict[str, Any] = {
            "summary": r.summary,
            "operationId": (r.method.lower() + r.path.replace("/", "_").replace("{", "")
                            .replace("}", "")).replace(".", "_"),
            "responses": _responses(r)}
        params = [{"name": p.strip("{}"), "in": "path", "required": True,
                   "schema": {"type": "integer" if p.endswith("_id}") else "string"}}
                  for p in r.path.split("/") if p.startswith("{")]
        if params:
            op["parameters"] = params
        if r.body == "json":
            op["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": {"type": "object"}}}}
        elif r.body == "toml":
            op["requestBody"] = {"required": True, "content": {"application/toml": {
                "schema": {"type": "string"}}}}
        if r.scope is not None:
            op["security"] = [{"bearer": [r.scope]}]
            op["x-scope"] = r.scope
        else:
            op["security"] = []
        paths.setdefault(r.path, {})[r.method.lower()] = op
    return {"openapi": "3.1.0",
            "info": {"title": "Streamlit Cloud (self-hosted) API", "version": "1"},
            "servers": [{"url": "/api/v1"}],
            "security": [{"bearer": []}],
            "components": {"securitySchemes": {"bearer": {
                "type": "http", "scheme": "bearer",
                "description": "Personal API token (stc_...); scopes read, deploy, admin"}},
                "schemas": {"Error": ERROR_SCHEMA}},
            "paths": paths}
