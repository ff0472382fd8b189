"""The OpenAPI 3.1 document of /api/v1, built from the declared operations and the body models."""

from __future__ import annotations

from functools import lru_cache

from edge import __version__
from edge.api.registry import OPERATIONS, json_response, operation
from edge.services.app_keys import CONFIG

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["code", "message", "fields"],
        "properties": {
            "code": {"type": "string", "description": "Stable machine-readable reason"},
            "message": {"type": "string", "description": "What is wrong, for a person"},
            "fields": {"type": "array", "items": {
                "type": "object", "properties": {"field": {"type": "string"}, "reason": {"type": "string"}}}},
        }}},
}
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key", "in": "header", "required": True,
    "schema": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[!-~]{1,128}$"},
    "description": "Unique per operation: 1-128 visible ASCII characters, e.g. a UUID. The same key and body "
                   "again returns the first answer and writes nothing; the same key with another body is "
                   "refused (422).",
}


def _response(code: int, text: str) -> dict:
    if code == 101:  # a WebSocket upgrade: no body, the messages are described in the summary
        return {"description": text}
    schema = {"$ref": "#/components/schemas/Error"} if code >= 400 else {"type": "object"}
    return {"description": text, "content": {"application/json": {"schema": schema}}}


@lru_cache(maxsize=2)
def _document(tokens_required: bool) -> dict:
    schemas: dict = {"Error": ERROR}
    paths: dict = {}
    for op in OPERATIONS:
        entry: dict = {"summary": op.summary, "operationId": op.handler.__name__, "tags": [op.tag],
                       "parameters": [{"name": p.name, "in": p.where, "required": p.required, "schema": p.schema,
                                       "description": p.description} for p in op.params]}
        if op.body is not None:
            schema = op.body.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(schema.pop("$defs", {}))
            schemas[op.body.__name__] = schema
            if op.writes:
                entry["parameters"].append(IDEMPOTENCY_KEY)
            entry["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{op.body.__name__}"}}}}
        codes = dict(op.responses)
        if op.body is not None or op.params:
            codes.setdefault(400, "Malformed request or query")
        if op.body is not None:
            codes.setdefault(413, "The body is larger than [api] max_body_kib")
            codes.setdefault(415, "The body is not application/json")
            codes.setdefault(422, "The body is invalid; `fields` says which and why."
                                  + (" Nothing was written." if op.writes else ""))
        if not op.public and tokens_required:
            codes[401] = "Missing or unknown API token"
            entry["security"] = [{"deviceToken": []}]
        responses = {str(code): _response(code, text) for code, text in sorted(codes.items())}
        entry["responses"] = responses
        paths.setdefault(op.path, {})[op.method] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": "store-edge local POS API", "version": __version__,
                 "description": "Sales, returns, goods received, adjustments and stock counts against the "
                                "store's local ledger. Money is integer fen; times are UTC ISO 8601."},
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {"deviceToken": {
            "type": "http", "scheme": "bearer",
            "description": "A per-till token from `store-edge token add NAME`"}}},
    }


def document(config) -> dict:
    return _document(config.tokens_required)


@operation("get", "/openapi.json", "This document", public=True, tag="ops", responses={200: "OpenAPI 3.1"})
async def openapi_document(request):
    return json_response(document(request.app[CONFIG]))
