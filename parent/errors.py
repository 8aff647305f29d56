"""The project's error classes and the one handler that turns any error into the envelope."""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

from flask import Flask, g, jsonify, request
from marshmallow import ValidationError
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from shared import errors as codes
from shared.envelope import REQUEST_ID_HEADER, error_body

from .extensions import db

log = logging.getLogger(__name__)

# An error answer echoes at most this much of what the client sent (field names, values).
MAX_ECHOED_CHARS = 200
MAX_ECHOED_FIELDS = 50


class ApiError(Exception):
    """An error with a stable contract code; raised by services and auth."""

    def __init__(
        self,
        error: codes.ErrorCode,
        message: str | None = None,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message or error.message)
        self.error = error
        self.message = message or error.message
        self.details = details
        self.headers = headers or {}


class NotFoundError(ApiError):
    def __init__(self, what: str, ident: Any):
        super().__init__(codes.NOT_FOUND, f"{what} {ident!r} does not exist.")


def error_response(
    error: codes.ErrorCode, message: str | None = None, details: Any = None,
    headers: dict[str, str] | None = None,
):
    """Build the contract's error response."""
    body = error_body(
        error.status, error.code, json_safe(message or error.message), json_safe(details),
        g.get("request_id"),
    )
    response = jsonify(body)
    response.status_code = error.status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def json_safe(value: Any) -> Any:
    """Escape lone surrogates (from JSON "\\ud800" escapes) that UTF-8 cannot encode."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {json_safe(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def _rollback() -> None:
    try:
        db.session.rollback()
    except Exception:  # noqa: BLE001 - the connection itself may be gone
        log.exception("rollback failed")


def handle_api_error(exc: ApiError):
    _rollback()
    return error_response(exc.error, exc.message, exc.details, exc.headers)


def handle_validation_error(exc: ValidationError):
    _rollback()
    return error_response(codes.VALIDATION_FAILED, details=bounded_echo(exc.normalized_messages()))


def bounded_echo(value: Any, depth: int = 0) -> Any:
    """Cut what an error echoes: long names and texts are shortened, long lists and maps cut."""
    if isinstance(value, str):
        if len(value) > MAX_ECHOED_CHARS:
            return f"{value[:MAX_ECHOED_CHARS]}... ({len(value)} characters)"
        return value
    if depth > 5:
        return "..."
    if isinstance(value, dict):
        items = list(value.items())
        bounded = {bounded_echo(str(key) if not isinstance(key, str) else key, depth + 1):
                   bounded_echo(item, depth + 1) for key, item in items[:MAX_ECHOED_FIELDS]}
        if len(items) > MAX_ECHOED_FIELDS:
            bounded["_truncated"] = [f"{len(items) - MAX_ECHOED_FIELDS} more not shown"]
        return bounded
    if isinstance(value, (list, tuple)):
        return [bounded_echo(item, depth + 1) for item in value[:MAX_ECHOED_FIELDS]]
    return value


def handle_integrity_error(exc: IntegrityError):
    _rollback()
    log.info("integrity error: %s", exc.orig)
    return error_response(codes.ALREADY_EXISTS)


def handle_data_error(exc: DataError):
    # A value schemas let through but the database refuses (e.g. NUL in a path id on PostgreSQL).
    _rollback()
    log.warning("data error: %s", exc.orig)
    return error_response(
        codes.BAD_REQUEST, "A value in the request cannot be stored or looked up; check it for "
                           "NUL characters or values out of range.",
    )


def handle_operational_error(exc: OperationalError):
    _rollback()
    log.error("database unavailable: %s", exc.orig)
    return error_response(codes.SERVICE_UNAVAILABLE, headers={"Retry-After": "5"})


def handle_http_exception(exc: HTTPException):
    _rollback()
    error = codes.STATUS_DEFAULTS.get(exc.code or 500)
    if error is None:
        error = codes.ErrorCode(
            exc.name.lower().replace(" ", "_"), exc.code or 500, exc.description or exc.name
        )
    headers = {}
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        headers["Allow"] = ", ".join(sorted(exc.valid_methods))
    message = error.message
    if exc.code == 413:
        limit = request.max_content_length
        message = f"The body is larger than this server accepts ({limit} bytes)."
    return error_response(error, message, headers=headers)


def handle_unexpected(exc: Exception):
    _rollback()
    if type(exc).__module__.startswith("gunicorn.http"):
        # gunicorn raises its parser's errors (a bad chunk size, a body cut short) while
        # the app reads the body: the client's fault, not ours.
        log.info("malformed request body on %s %s: %s", request.method, request.path,
                 type(exc).__name__)
        return error_response(codes.BAD_REQUEST, "The request body is malformed (bad chunked "
                                                 "encoding or cut short).")
    log.exception("unhandled error on %s %s", request.method, request.path)
    return error_response(codes.INTERNAL_ERROR)


def _refuse_impossible_paths():
    # No id can hold a NUL, and PostgreSQL refuses one in a query: answer 404 up front.
    if "\x00" in request.path:
        raise ApiError(codes.NOT_FOUND)


# Echoed into the access log and responses: no quotes, spaces or '=' that could forge fields.
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:/-]{1,128}\Z")


def request_id_for(incoming: str) -> str:
    """The request's id: the client's X-Request-ID if it is a safe one, else a new one."""
    return incoming if _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex


def _assign_request_id():
    g.request_id = request_id_for(request.headers.get(REQUEST_ID_HEADER, ""))


def _echo_request_id(response):
    response.headers[REQUEST_ID_HEADER] = g.get("request_id") or uuid.uuid4().hex
    return response


def init_app(app: Flask) -> None:
    app.before_request(_assign_request_id)
    app.before_request(_refuse_impossible_paths)
    app.after_request(_echo_request_id)
    app.register_error_handler(ApiError, handle_api_error)
    app.register_error_handler(ValidationError, handle_validation_error)
    app.register_error_handler(IntegrityError, handle_integrity_error)
    app.register_error_handler(DataError, handle_data_error)
    app.register_error_handler(OperationalError, handle_operational_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(Exception, handle_unexpected)
