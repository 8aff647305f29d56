"""Request and response plumbing shared by every blueprint: load -> service -> dump."""

from __future__ import annotations

import hashlib
import io
import json
from functools import wraps
from typing import Any, cast

from flask import g, jsonify, make_response, request
from marshmallow import Schema
from sqlalchemy import Table, bindparam, insert, select, text
from sqlalchemy.exc import IntegrityError
from werkzeug.formparser import FormDataParser

from shared import errors as codes
from shared.envelope import IDEMPOTENCY_HEADER, MAX_IDEMPOTENCY_KEY_LENGTH, success_body
from shared.paths import CASCADE_PREFIX, WX_CASCADE_PREFIX

from .. import write_queue
from ..clock import now
from ..errors import ApiError, json_safe
from ..extensions import db
from ..models import IdempotencyRecord

# Built once, Core (no ORM object, identity map or unit-of-work flush): every claim,
# complete and upload with a key reads and writes one of these.
_RECORDS = cast(Table, IdempotencyRecord.__table__)
_INSERT_RECORD = insert(_RECORDS)
_RECORD = select(_RECORDS.c.request_hash, _RECORDS.c.status_code,
                 _RECORDS.c.response_body).where(_RECORDS.c.node_id == bindparam("node_id"),
                                                 _RECORDS.c.key == bindparam("key"))


def read_json(required: bool = True) -> Any:
    """Decode the request body as JSON, whatever Content-Type the client sent.

    :raises ApiError: 400 malformed_json when the body is not JSON.
    """
    raw = request.get_data(cache=True)
    if not raw.strip():
        if required:
            raise ApiError(codes.MALFORMED_JSON, "The request needs a JSON body.")
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(codes.MALFORMED_JSON, details={"reason": str(exc)[:200]}) from None
    except RecursionError:
        raise ApiError(codes.MALFORMED_JSON, details={"reason": "nested too deeply"}) from None


# Forms carry a login or a few fields: far less than a JSON import may need.
MAX_FORM_BYTES = 64 * 1024


def load_body(schema: Schema, required: bool = True, allow_form: bool = False) -> dict:
    """Validate the JSON (or, where allowed, form) body with a schema."""
    if allow_form and request.mimetype in (
        "application/x-www-form-urlencoded", "multipart/form-data"
    ):
        payload: Any = _read_form()
    else:
        payload = read_json(required=required)
        if payload is None:
            payload = {}
    if not isinstance(payload, dict):
        raise ApiError(codes.VALIDATION_FAILED, details={"_schema": ["Expected a JSON object."]})
    return schema.load(payload)


def _read_form() -> dict:
    """Parse a form body of at most MAX_FORM_BYTES, chunked or not, else 413."""
    if (request.content_length or 0) > MAX_FORM_BYTES:
        raise _form_too_large()
    # Werkzeug cuts an over-long chunked form silently; read one byte past the cap to tell.
    stream, body = request.stream, b""
    while len(body) <= MAX_FORM_BYTES:
        piece = stream.read(MAX_FORM_BYTES + 1 - len(body))
        if not piece:
            break
        body += piece
    if len(body) > MAX_FORM_BYTES:
        raise _form_too_large()
    parser = FormDataParser(max_form_memory_size=MAX_FORM_BYTES,
                            max_content_length=MAX_FORM_BYTES)
    _, form, _ = parser.parse(io.BytesIO(body), request.mimetype, len(body),
                              request.mimetype_params)
    return form.to_dict()


def _form_too_large() -> ApiError:
    return ApiError(codes.PAYLOAD_TOO_LARGE,
                    f"A form body is limited to {MAX_FORM_BYTES} bytes; send JSON for more.")


def load_query(schema: Schema) -> dict:
    """Validate query-string arguments with a schema."""
    return schema.load(request.args.to_dict())


def respond(data: Any = None, message: str = "success", status: int = 200, headers=None):
    """Wrap a payload in the success envelope."""
    try:
        response = jsonify(success_body(data, message))
    except UnicodeEncodeError:
        # Echoed input (an import report naming a bad field) may hold lone surrogates.
        response = jsonify(success_body(json_safe(data), message))
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _route_identity() -> str:
    """The request identity used for Idempotency-Key: method, prefix-free path, body."""
    path = request.path
    for prefix in (WX_CASCADE_PREFIX, CASCADE_PREFIX):
        if path.startswith(prefix):
            path = path[len(prefix):]
            break
    digest = hashlib.sha256()
    digest.update(request.method.encode() + b" " + path.encode("utf-8") + b"\n")
    digest.update(request.get_data(cache=True))
    return digest.hexdigest()


def idempotent(view):
    """Replay the stored response for a repeated (node, Idempotency-Key).

    Must sit inside @node_required. The record is written in the same transaction as the
    work, so either both land or neither does.
    """

    @wraps(view)
    def wrapper(*args, **kwargs):
        key = request.headers.get(IDEMPOTENCY_HEADER)
        if key is None:
            return view(*args, **kwargs)
        key = key.strip()
        if not key or len(key) > MAX_IDEMPOTENCY_KEY_LENGTH or not key.isprintable():
            raise ApiError(
                codes.VALIDATION_FAILED,
                details={IDEMPOTENCY_HEADER: [f"Must be 1-{MAX_IDEMPOTENCY_KEY_LENGTH} printable characters."]},
            )
        request_hash = _route_identity()
        node_id = g.node.id
        _serialise_same_key(node_id, key)
        replay = _replay(node_id, key, request_hash)
        if replay is not None:
            return replay
        response = make_response(view(*args, **kwargs))
        if response.status_code >= 300:
            return response
        try:
            db.session.execute(_INSERT_RECORD, {
                "node_id": node_id, "key": key, "request_hash": request_hash,
                "status_code": response.status_code,
                "response_body": response.get_data(as_text=True), "created_at": now()})
        except IntegrityError:
            # A concurrent retry with the same key committed first: answer as it did.
            db.session.rollback()
            replay = _replay(node_id, key, request_hash)
            if replay is None:
                raise
            return replay
        return response

    return wrapper


def _serialise_same_key(node_id: str, key: str) -> None:
    """Make a retry that arrives while the original still runs wait for its answer.

    On SQLite the request takes its write turn now, before it reads the record (its
    reads would otherwise take no lock: parent/write_queue.py); on PostgreSQL a
    transaction-scoped advisory lock on (node, key) does it across workers and hosts.
    """
    if db.session.get_bind().dialect.name != "postgresql":
        write_queue.begin_write(db.session.connection())
        return
    digest = hashlib.sha256(f"{node_id}\n{key}".encode("utf-8")).digest()
    lock_id = int.from_bytes(digest[:8], "big", signed=True)
    db.session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": lock_id})


def _replay(node_id: str, key: str, request_hash: str):
    record = db.session.execute(_RECORD, {"node_id": node_id, "key": key}).first()
    if record is None:
        return None
    if record.request_hash != request_hash:
        raise ApiError(codes.IDEMPOTENCY_KEY_REUSED)
    response = make_response(record.response_body, record.status_code)
    response.mimetype = "application/json"
    response.headers["Idempotent-Replayed"] = "true"
    return response
