"""The OpenAPI document at /api/v1/openapi.json agrees with the routes the app really serves."""

from __future__ import annotations

import re

import pytest

from edge.api import registry as api_mod
from edge.store import sales, stock

PREFIX = "/api/v1"
METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture
async def document(client) -> dict:
    resp = await client.get(PREFIX + "/openapi.json")
    assert resp.status == 200
    assert resp.content_type == "application/json"
    return await resp.json()


def operations(doc: dict):
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield path, method, op


def resolve(doc: dict, ref: str) -> dict:
    assert ref.startswith("#/"), ref
    node = doc
    for part in ref[2:].split("/"):
        assert part in node, f"{ref} does not resolve"
        node = node[part]
    return node


def all_refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from all_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from all_refs(value)


async def test_looks_like_openapi_3_1(document):
    assert document["openapi"].startswith("3.1.")
    assert document["info"]["title"] and document["info"]["version"]
    assert document["paths"] and all(path.startswith(PREFIX + "/") for path in document["paths"])
    assert "Error" in document["components"]["schemas"]


async def test_passes_the_openapi_spec_validator(document):
    import openapi_spec_validator as validator  # noqa: PLC0415
    validator.validate(document)


async def test_routes_and_document_agree(client, document):
    served = {(route.resource.canonical, route.method.lower()) for route in client.app.router.routes()
              if route.resource is not None and route.resource.canonical.startswith(PREFIX)
              and route.method != "HEAD"}
    documented = {(path, method) for path, method, _ in operations(document)}
    assert served == documented
    assert len(served) == len(api_mod.OPERATIONS)


async def test_every_ref_resolves_and_ids_are_unique(document):
    for ref in all_refs(document):
        resolve(document, ref)
    ids = [op["operationId"] for _, _, op in operations(document)]
    assert len(ids) == len(set(ids))


async def test_path_parameters_match_the_templates(document):
    for path, method, op in operations(document):
        in_path = {p["name"] for p in op["parameters"] if p["in"] == "path"}
        assert in_path == set(re.findall(r"{(\w+)}", path)), (method, path)
        assert all(p["required"] for p in op["parameters"] if p["in"] == "path")
        assert len({(p["name"], p["in"]) for p in op["parameters"]}) == len(op["parameters"])


async def test_every_write_documents_key_body_and_422(document):
    writing = {op.path for op in api_mod.OPERATIONS if op.writes}
    writes = [(path, op) for path, method, op in operations(document) if method != "get" and path in writing]
    assert len(writes) == len(writing) >= 8
    for path, op in writes:
        keys = [p for p in op["parameters"] if p["name"] == "Idempotency-Key"]
        assert keys and keys[0]["in"] == "header" and keys[0]["required"] is True, path
        body = op["requestBody"]
        assert body["required"] is True
        schema = body["content"]["application/json"]["schema"]
        target = resolve(document, schema["$ref"])
        assert schema["$ref"].startswith("#/components/schemas/")
        assert target["type"] == "object" and target["properties"], path
        assert target.get("additionalProperties") is False, path  # unknown fields are refused
        for code in ("201", "400", "422"):
            assert code in op["responses"], (path, code)
        assert resolve(document, op["responses"]["422"]["content"]["application/json"]["schema"]["$ref"])


async def test_reads_with_a_body_take_no_key(document):
    reads = {op.path for op in api_mod.OPERATIONS if op.method == "post" and not op.writes}
    assert reads >= {"/api/v1/pickups/lookup", "/api/v1/coupons/check"}
    for path, method, op in operations(document):
        if path in reads:
            assert not [p for p in op["parameters"] if p["name"] == "Idempotency-Key"], path
            assert op["requestBody"]["required"] is True and "422" in op["responses"]


async def test_reads_document_no_body_or_key(document):
    for path, method, op in operations(document):
        if method == "get":
            assert "requestBody" not in op, path
            assert all(p["name"] != "Idempotency-Key" for p in op["parameters"]), path
            assert "200" in op["responses"] or "101" in op["responses"], path  # 101: a WebSocket


async def test_errors_are_documented_with_the_error_schema(document):
    for path, method, op in operations(document):
        for code, response in op["responses"].items():
            if int(code) >= 400:
                assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}


async def test_without_tokens_no_security_is_declared(document):
    assert all("security" not in op and "401" not in op["responses"] for _, _, op in operations(document))


# The handler that serves each paged path, and the function it hands `limit` to.
PAGED = {"/api/v1/stock": (stock, "list_balances"), "/api/v1/stock/{sku}/moves": (stock, "move_history"),
         "/api/v1/sales": (sales, "day_summary")}


async def test_documented_defaults_are_the_real_ones(client, document, monkeypatch):
    paged = {path for path, _, op in operations(document) if any(p["name"] == "limit" for p in op["parameters"])}
    assert set(PAGED) <= paged
    for path, (module, name) in PAGED.items():
        seen = {}
        real = getattr(module, name)

        def spy(*args, _real=real, **kwargs):
            seen.update(kwargs)
            return _real(*args, **kwargs)

        monkeypatch.setattr(module, name, spy)
        resp = await client.get(path.replace("{sku}", "DRK-001"))
        assert resp.status == 200
        limit = next(p for p in document["paths"][path]["get"]["parameters"] if p["name"] == "limit")
        assert seen["limit"] == limit["schema"]["default"], path
