"""The OpenAPI the app publishes bounds every field a client sends (DESIGN.md §4).

Ids above 2^63−1 reached the database and failed there (500); an unbounded string, list or number
let one request cost seconds of parsing or gigabytes of memory. This test walks every parameter and
every request body schema and fails for an integer or number without both bounds (integers within
the database's 64 bits), a string without a maximum length (or an enum, or a file), a list without a
maximum size, or an object that takes keys nobody declared. So a new field cannot be unbounded.
"""

from __future__ import annotations

from typing import Any

from backend.core.config import Settings
from backend.main import create_app

MAX_INT64 = 2**63 - 1


def _openapi() -> dict[str, Any]:
    return create_app(Settings(database_url="sqlite://", secret_key="x" * 32)).openapi()


def _resolve(schema: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = spec["components"]["schemas"][name]
    return schema


def _is_file(schema: dict[str, Any]) -> bool:
    """An uploaded file (bounded by `max_upload_bytes`, a setting: 413 above it)."""
    return schema.get("format") == "binary" or "contentMediaType" in schema


def _unbounded(
    schema: dict[str, Any], spec: dict[str, Any], where: str, seen: set[str], json: bool = True
) -> list[str]:
    """Every place under `schema` that a client could fill without a bound. Forms (`json=False`: the
    OAuth2 login, uploads) may carry fields nobody reads, as OAuth2 clients send `grant_type`."""
    if "$ref" in schema:
        name = schema["$ref"]
        if name in seen:
            return []
        seen = seen | {name}
    schema = _resolve(schema, spec)
    problems: list[str] = []
    for key in ("anyOf", "oneOf", "allOf"):
        for option in schema.get(key, []):
            problems += _unbounded(option, spec, where, seen, json)
    kind = schema.get("type")
    if "enum" in schema or "const" in schema or kind in ("boolean", "null"):
        return problems
    if kind == "integer":
        top = schema.get("maximum", schema.get("exclusiveMaximum"))
        bottom = schema.get("minimum", schema.get("exclusiveMinimum"))
        # The schema may spell a bound as a float (2^63 - 1 as 9.223372036854776e18): compare as floats.
        if top is None or bottom is None or float(top) > float(MAX_INT64) or float(bottom) < -float(MAX_INT64):
            problems.append(f"{where}: integer without bounds inside 64 bits")
    elif kind == "number":
        if (
            schema.get("maximum", schema.get("exclusiveMaximum")) is None
            or schema.get("minimum", schema.get("exclusiveMinimum")) is None
        ):
            problems.append(f"{where}: number without both bounds")
    elif kind == "string":
        if "maxLength" not in schema and not _is_file(schema) and schema.get("format") != "date-time":
            problems.append(f"{where}: string without maxLength")
    elif kind == "array":
        # Uploads are bounded by `max_files_per_request` (a setting, so not in the schema: 413 above it).
        files = _is_file(_resolve(schema.get("items", {}), spec))
        if "maxItems" not in schema and not files:
            problems.append(f"{where}: array without maxItems")
        problems += _unbounded(schema.get("items", {}), spec, f"{where}[]", seen, json)
        for i, item in enumerate(schema.get("prefixItems", [])):
            problems += _unbounded(item, spec, f"{where}[{i}]", seen, json)
    elif kind == "object" or "properties" in schema:
        extra = schema.get("additionalProperties", True)
        if extra is not False and json:
            problems.append(f"{where}: object that accepts undeclared keys")
        for name, prop in schema.get("properties", {}).items():
            problems += _unbounded(prop, spec, f"{where}.{name}", seen, json)
    return problems


def test_every_request_field_is_bounded() -> None:
    spec = _openapi()
    problems: list[str] = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            label = f"{method.upper()} {path}"
            for parameter in operation.get("parameters", []):
                problems += _unbounded(
                    parameter["schema"], spec, f"{label} {parameter['in']} {parameter['name']}", set()
                )
            for media_type, media in operation.get("requestBody", {}).get("content", {}).items():
                json = media_type == "application/json"
                problems += _unbounded(media["schema"], spec, f"{label} body", set(), json)
    assert problems == [], "\n".join(problems)


def test_every_operation_documents_its_errors() -> None:
    spec = _openapi()
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            for status in ("401", "403", "404", "422"):
                assert status in responses, f"{method.upper()} {path} does not document {status}"
                schema = responses[status]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorOut"}, f"{method.upper()} {path} {status}"
