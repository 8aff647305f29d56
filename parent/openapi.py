"""The OpenAPI 3.1 description, built from the routes themselves.

Each view carries a ``@describe(...)`` mark next to its route: a summary, the marshmallow
schemas it loads (query, body) and dumps (``data``), and the errors its service raises.
Everything else is read off the app: the paths and methods from ``app.url_map`` (so both
cascade prefixes are there), the auth scheme from the decorator the view is wrapped in, the
Idempotency-Key header from ``@idempotent``, and the error envelope and codes from
``shared/``. A route without a mark is missing from the document, and
tests/parent/test_openapi.py fails on it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Callable

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Flask
from marshmallow import Schema

from shared import errors as codes
from shared.envelope import IDEMPOTENCY_HEADER, MAX_IDEMPOTENCY_KEY_LENGTH, REQUEST_ID_HEADER
from shared.signing import PLAIN_SCHEME, SIGNED_SCHEME

OPENAPI_VERSION = "3.1.0"
# Any JSON value: where a route's data has no schema of its own yet.
ANY: dict = {}
OBJECT = {"type": "object"}
NULLABLE_OBJECT = {"type": ["object", "null"]}
DELETED = {"type": "object", "required": ["id", "deleted"],
           "properties": {"id": {"type": "string"}, "deleted": {"const": True}}}

ADMIN_SECURITY: list[dict[str, list]] = [{"adminBearer": []}]
NODE_SECURITY: list[dict[str, list]] = [{"nodeSigned": []}, {"nodePlain": []}]
SECURITY_SCHEMES = {
    "adminBearer": {
        "type": "http", "scheme": "bearer",
        "description": "The access_token from POST /api/v1/auth/login, as "
                       "`Authorization: Bearer <access_token>`.",
    },
    "nodeSigned": {
        "type": "apiKey", "in": "header", "name": "Authorization",
        "description": f"`{SIGNED_SCHEME} Credential=<api_key>, Timestamp=<unix s>, "
                       "Nonce=<16-64 chars>, Signature=<hex HMAC-SHA256>`: the signed form "
                       "(docs/PROTOCOL.md §3, shared/signing.py). A node's credentials come "
                       "from POST /api/v1/cascade/nodes/{node_id}/credentials.",
    },
    "nodePlain": {
        "type": "apiKey", "in": "header", "name": "Authorization",
        "description": f"`{PLAIN_SCHEME} <api_key>:<api_secret>`, as WeRSS nodes send it; "
                       "refused with plain_auth_disabled when cascade.allow_plain_auth is false.",
    },
}


@dataclass(frozen=True)
class Doc:
    """What a route's mark says about it; see :func:`describe`."""

    summary: str
    data: Any = field(default_factory=dict)
    status: int = 200
    query: type[Schema] | None = None
    # A schema of the JSON body, or {media type: schema} where a route takes several.
    body: type[Schema] | dict | None = None
    body_required: bool = True
    body_types: tuple[str, ...] = ("application/json",)
    errors: tuple[codes.ErrorCode, ...] = ()
    # A response that is not the JSON envelope: {media type: JSON schema}.
    content: dict | None = None
    # Answers without a body beside the main one, e.g. {204: "no work"}.
    empty: dict[int, str] = field(default_factory=dict)
    description: str = ""
    public: bool = False


def page_of(item) -> dict:
    """The one page shape every admin list answers with (parent/paging.py)."""
    count = {"type": "integer", "minimum": 0}
    return {"type": "object",
            "required": ["items", "total", "page", "page_size", "limit", "offset"],
            "properties": {"items": {"type": "array", "items": item}, "total": count,
                           "page": {"type": "integer", "minimum": 1}, "page_size": count,
                           "limit": count, "offset": count}}


def describe(summary: str, **options) -> Callable:
    """Mark a view with its OpenAPI description (the fields of :class:`Doc`)."""
    doc = Doc(summary, **options)

    def mark(view):
        view.openapi = doc
        return view

    return mark


def _probe(decorator) -> Any:
    def probe():  # pragma: no cover - never called, only compared
        return None

    return decorator(probe).__code__


def _decorators_of(view) -> set:
    """The code objects of every wrapper around ``view`` (functools.wraps keeps the chain)."""
    found = set()
    while view is not None:
        found.add(getattr(view, "__code__", None))
        view = getattr(view, "__wrapped__", None)
    return found


@cache
def _known_wrappers() -> dict:
    from .api.request_response import idempotent
    from .auth import admin_required, node_required

    return {"admin": _probe(admin_required), "node": _probe(node_required),
            "idempotent": _probe(idempotent)}


def _methods(rule) -> set[str]:
    return set(rule.methods or ()) - {"HEAD", "OPTIONS"}


def undescribed_routes(app: Flask, exempt: dict[str, str]) -> list[str]:
    """Rules whose view has no ``@describe`` mark and is not in ``exempt`` (endpoint: why)."""
    return sorted(f"{sorted(_methods(rule))} {rule.rule}"
                  for rule in app.url_map.iter_rules()
                  if rule.endpoint not in exempt
                  and getattr(app.view_functions[rule.endpoint], "openapi", None) is None)


_ARGUMENT = re.compile(r"<(?:([a-z]+)(?:\(([^)]*)\))?:)?(\w+)>")


def _path_and_parameters(rule) -> tuple[str, list[dict]]:
    parameters = []

    def replace(match) -> str:
        converter, arguments, name = match.groups()
        schema: dict = {"type": "string", "minLength": 1, "pattern": "^[^/]+$"}
        if converter == "any":
            schema = {"type": "string",
                      "enum": [item.strip().strip("'\"") for item in arguments.split(",")]}
        elif converter == "path":
            schema = {"type": "string", "minLength": 1}
        parameters.append({"in": "path", "name": name, "required": True, "schema": schema})
        return "{" + name + "}"

    return _ARGUMENT.sub(replace, rule.rule), parameters


def _envelope(data) -> dict:
    return {
        "type": "object", "required": ["code", "message", "data"],
        "properties": {"code": {"const": 0}, "message": {"type": "string"},
                       "data": {"type": "null"} if data is None else data},
    }


def _error_components() -> tuple[dict, dict]:
    by_status: dict[int, list[codes.ErrorCode]] = {}
    for error in codes.ALL.values():
        by_status.setdefault(error.status, []).append(error)
    schema = {
        "type": "object", "required": ["code", "message", "error", "details", "request_id"],
        "description": "The error envelope (docs/PROTOCOL.md §2): clients branch on `error`.",
        "properties": {
            "code": {"type": "integer", "description": "The HTTP status again."},
            "message": {"type": "string", "description": "For people; may change."},
            "error": {"type": "string", "enum": sorted(codes.ALL)},
            "details": {"description": "Field errors or other detail; null when none."},
            "request_id": {"type": ["string", "null"]},
        },
    }
    responses = {}
    for status, errors in sorted(by_status.items()):
        errors.sort(key=lambda e: e.code)
        table = "\n".join(f"- `{e.code}`: {e.message}" for e in errors)
        responses[f"Error{status}"] = {
            "description": f"An error envelope with one of these codes:\n\n{table}",
            "content": {"application/json": {"schema": {"allOf": [
                {"$ref": "#/components/schemas/Error"},
                {"properties": {"code": {"const": status},
                                "error": {"enum": [e.code for e in errors]}}},
            ]}}},
        }
    return schema, responses


def _error_statuses(doc: Doc, auth: str | None, method: str, has_path_args: bool,
                    idempotent: bool) -> set[int]:
    # Any request can meet a value the database refuses (400), a crash (500) or a
    # database that is away (503).
    statuses = {400, 500, 503}
    if auth:
        statuses.add(401)
    if auth == "node":
        statuses.add(403)  # node_disabled
    if has_path_args:
        statuses.add(404)
    if method in ("post", "put"):
        statuses.add(413)
    if doc.query or doc.body or idempotent:
        statuses.add(422)
    statuses.update(error.status for error in doc.errors)
    return statuses


def _operation(doc: Doc, rule, method: str, path_parameters: list[dict], wrappers: set) -> dict:
    known = _known_wrappers()
    auth = "admin" if known["admin"] in wrappers else "node" if known["node"] in wrappers \
        else None
    idempotent = known["idempotent"] in wrappers
    parameters = list(path_parameters)
    if doc.query is not None:
        parameters.append({"in": "query", "schema": doc.query})
    if idempotent:
        parameters.append({
            "in": "header", "name": IDEMPOTENCY_HEADER, "required": False,
            "description": "One key per logical write: a retry with the same key gets the "
                           "first answer again (with `Idempotent-Replayed: true`).",
            "schema": {"type": "string", "minLength": 1,
                       "maxLength": MAX_IDEMPOTENCY_KEY_LENGTH},
        })
    if doc.content is not None:
        success = {"description": doc.summary,
                   "content": {media: {"schema": schema} for media, schema in doc.content.items()}}
    else:
        success = {"description": doc.summary,
                   "headers": {REQUEST_ID_HEADER: {"schema": {"type": "string"}}},
                   "content": {"application/json": {"schema": _envelope(doc.data)}}}
    responses: dict[str, Any] = {str(doc.status): success}
    for status, text in doc.empty.items():
        responses[str(status)] = {"description": text}
    for status in sorted(_error_statuses(doc, auth, method, bool(path_parameters), idempotent)):
        responses[str(status)] = {"$ref": f"#/components/responses/Error{status}"}
    operation: dict[str, Any] = {
        "operationId": f"{rule.endpoint}.{method}".replace(".", "_"),
        "summary": doc.summary,
        "tags": [rule.endpoint.split(".")[0].removesuffix("_wx")],
        "parameters": parameters,
        "responses": responses,
    }
    if doc.description:
        operation["description"] = doc.description
    if doc.body is not None:
        operation["requestBody"] = {
            "required": doc.body_required,
            "content": ({media: {"schema": schema} for media, schema in doc.body.items()}
                        if isinstance(doc.body, dict)
                        else {media: {"schema": doc.body} for media in doc.body_types}),
        }
    operation["security"] = (ADMIN_SECURITY if auth == "admin"
                             else NODE_SECURITY if auth == "node" else [])
    return operation


_PYTHON_ONLY_ANCHOR = re.compile(r"\\Z$")


def _portable_patterns(value):
    """Patterns as JSON Schema reads them (ECMA 262): Python's end anchor ``\\Z`` is ``$``."""
    if isinstance(value, dict):
        return {key: (_PYTHON_ONLY_ANCHOR.sub("$", item) if key == "pattern"
                      and isinstance(item, str) else _portable_patterns(item))
                for key, item in value.items()}
    if isinstance(value, list):
        return [_portable_patterns(item) for item in value]
    return value


def build_openapi(app: Flask) -> dict:
    """The OpenAPI 3.1 document of every described route of ``app``."""
    spec = APISpec(
        title="WeRSS Cascade", version="1", openapi_version=OPENAPI_VERSION,
        plugins=[MarshmallowPlugin()],
        info={"description": (
            "Parent API of WeRSS Cascade. Every JSON answer is an envelope: "
            "`{code: 0, message, data}` on success, `{code: <status>, message, error, details, "
            "request_id}` on failure (docs/PROTOCOL.md §2). Admin routes take a Bearer token; "
            "node routes (under /api/v1/cascade and, for WeRSS nodes, /api/v1/wx/cascade) take "
            "AK-SK credentials, signed or plain. docs/API.md has the details.")},
    )
    for name, scheme in SECURITY_SCHEMES.items():
        spec.components.security_scheme(name, scheme)
    error_schema, error_responses = _error_components()
    spec.components.schema("Error", error_schema)
    for name, response in error_responses.items():
        spec.components.response(name, response)
    paths: dict[str, dict] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        view = app.view_functions[rule.endpoint]
        doc = getattr(view, "openapi", None)
        if doc is None:
            continue
        path, path_parameters = _path_and_parameters(rule)
        wrappers = _decorators_of(view)
        for method in sorted(_methods(rule)):
            paths.setdefault(path, {})[method.lower()] = _operation(
                doc, rule, method.lower(), path_parameters, wrappers)
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    return _portable_patterns(spec.to_dict())


def openapi_document(app: Flask) -> dict:
    """The app's document, built once (the routes do not change while it runs)."""
    held = app.extensions.get("werss.openapi")
    if held is None:
        held = app.extensions["werss.openapi"] = build_openapi(app)
    return held
