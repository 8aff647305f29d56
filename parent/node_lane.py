"""The node fast lane: a steady heartbeat answered without Flask's request cycle or the ORM.

Most of an idle fleet's requests are heartbeats that change nothing: the node is online,
reports what it reported last time, has no command waiting and sends no Idempotency-Key.
For those the full path (request context, hooks, ORM session, unit of work) cost more
than the work itself (bench/README.md, "The node fast lane"). This WSGI layer sits in
front of the Flask app and answers such a heartbeat with one Core read of the node (and
of whether a signed request's nonce was seen), the same credential check, the nonce
committed before the answer (parent/nonce_writer.py, as the app writes it), and the sign
of life kept in memory for presence's batched write, exactly as the full path does them
(the functions are shared).

It answers a wrong secret or an unknown key (401) itself too, so a wrong secret costs no
more than a right one. Anything else goes to the app, which answers it as before, body
and all: a presence edge, a flush of presence due, a report that changes a column, a
command waiting, a disabled node, a stale timestamp or a seen nonce, a malformed request,
a query string, an Idempotency-Key, plain credentials where they are off, any error
before the nonce is written. The answer carries the same envelope, request id, metrics
and (JSON mode) access line as the app's.
"""

from __future__ import annotations

import io
import json
import logging
import time
from typing import cast

from marshmallow import ValidationError
from sqlalchemy import Table, bindparam, exists, select
from sqlalchemy.exc import SQLAlchemyError

from shared import errors as codes
from shared import paths, signing
from shared.envelope import REQUEST_ID_HEADER, error_body, success_body
from shared.schemas import HeartbeatSchema

from .auth import NONCES, credentials_match, raw_path, timestamp_fresh
from .clock import now
from .config import settings
from .crypto import cipher
from .errors import request_id_for
from .logs import log_access
from .metrics import observe_request
from .models import Node
from .nonce_writer import nonce_writer
from .services import nodes, presence
from .services.node_sources import ROUTES_NATIVE

log = logging.getLogger(__name__)

HEARTBEAT_PATH = paths.CASCADE_PREFIX + paths.HEARTBEAT
# A heartbeat body is a few hundred bytes; a larger one is the app's to read.
MAX_BODY = 16 * 1024
# Bodies seen -> what they report (column -> value), or None: not a valid heartbeat. A
# fleet sends a few distinct bodies over and over; past this many, the memo starts over.
MEMO_MAX = 4096

_NODES = cast(Table, Node.__table__)
_COLUMNS = [_NODES.c[name] for name in (
    "id", "secret_ciphertext", "is_active", "deleted_at", "presence", "last_heartbeat_at",
    "offline_at", "cadence_seconds", "route_family", "commands_waiting",
    *nodes.REPORTED_COLUMNS)]
_BY_KEY = _NODES.c.api_key == bindparam("api_key")
_READ_PLAIN = select(*_COLUMNS).where(_BY_KEY)
_READ_SIGNED = select(*_COLUMNS, exists().where(
    NONCES.c.node_id == _NODES.c.id, NONCES.c.nonce == bindparam("nonce")).label("seen")
).where(_BY_KEY)
_HEARTBEAT = HeartbeatSchema()
_MESSAGE = "心跳成功"


class NodeFastLane:
    """WSGI middleware: steady heartbeats here, every other request to ``wsgi_app``."""

    def __init__(self, app, wsgi_app):
        self.app = app
        self.wsgi_app = wsgi_app
        self.json_log = app.config["WERSS_SETTINGS"].log_format == "json"
        self._engine = None
        self._memo: dict[bytes, dict | None] = {}

    def __call__(self, environ, start_response):
        if (environ.get("PATH_INFO") != HEARTBEAT_PATH
                or environ.get("REQUEST_METHOD") != "POST"
                or environ.get("QUERY_STRING") or "HTTP_IDEMPOTENCY_KEY" in environ
                or "HTTP_TRANSFER_ENCODING" in environ or "HTTP_AUTHORIZATION" not in environ):
            return self.wsgi_app(environ, start_response)
        started = time.perf_counter()
        body = _read_body(environ)
        answer = None
        if body is not None:
            try:
                with self.app.app_context():
                    answer = self._answer(environ, body)
            except Exception:  # noqa: BLE001 - a bug here must not cost the node its answer
                log.exception("the node fast lane failed; the app answers instead")
        if answer is None:
            return self.wsgi_app(environ, start_response)
        status, payload, node_id = answer
        request_id = request_id_for(environ.get("HTTP_X_REQUEST_ID", ""))
        if status == 200:
            content = success_body(payload, _MESSAGE)
        else:
            error = codes.INVALID_CREDENTIALS
            content = error_body(error.status, error.code, error.message, None, request_id)
        data = (json.dumps(content, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        start_response("200 OK" if status == 200 else "401 UNAUTHORIZED", [
            ("Content-Type", "application/json"), ("Content-Length", str(len(data))),
            (REQUEST_ID_HEADER, request_id)])
        observe_request("POST", HEARTBEAT_PATH, status, started)
        if self.json_log:
            log_access("POST", HEARTBEAT_PATH, status, environ.get("REMOTE_ADDR"), started,
                       request_id=request_id, node_id=node_id)
        return [data]

    def _answer(self, environ, body: bytes) -> tuple[int, dict | None, str | None] | None:
        """(status, data, node id) of a steady heartbeat or a refused secret, else None."""
        try:
            parsed = signing.parse_authorization(environ["HTTP_AUTHORIZATION"].strip())
        except signing.AuthorizationFormatError:
            return None
        if parsed is None:
            return None
        signed = parsed if isinstance(parsed, signing.SignedCredentials) else None
        if signed is None and not settings().allow_plain_auth:
            return None
        with (self._engine or self._bind()).connect() as connection:
            try:
                row = connection.execute(*((_READ_SIGNED, {
                    "api_key": parsed.api_key, "nonce": signed.nonce}) if signed
                    else (_READ_PLAIN, {"api_key": parsed.api_key}))).first()
            except SQLAlchemyError:
                log.debug("fast lane read failed; the app answers", exc_info=True)
                return None
        secret = (cipher().decrypt_cached(row.secret_ciphertext)
                  if row is not None and row.secret_ciphertext else None)
        if not credentials_match(parsed, secret, "POST", raw_path(environ), "", body) \
                or row is None or secret is None:
            return 401, None, None
        moment = now()
        sign = self._steady(row, body, moment) if signed is None or (
            not row.seen and timestamp_fresh(signed, moment)) else None
        if sign is None:
            return None
        if signed is not None:
            try:  # committed before the answer, in a group with this worker's others
                if not nonce_writer(self.app).write(row.id, signed.nonce, moment):
                    return None  # a copy raced it in: the app refuses this one
            except SQLAlchemyError:
                log.debug("fast lane nonce write failed; the app answers", exc_info=True)
                return None
        presence.keep_sign(row.id, sign)
        return 200, nodes.heartbeat_answer(row, moment), row.id

    def _steady(self, row, body: bytes, moment) -> presence._Seen | None:
        """The sign of life to keep if this heartbeat changes nothing, else None."""
        if not row.is_active or row.deleted_at is not None or row.commands_waiting \
                or row.route_family != ROUTES_NATIVE:
            return None
        reported = self._reported(body)
        if reported is None or any(getattr(row, name) != value
                                   for name, value in reported.items()):
            return None
        return presence.steady_sign(row, moment)

    def _reported(self, body: bytes) -> dict | None:
        """What the body reports (column -> value), as the app would load it; None: invalid."""
        if body in self._memo:
            return self._memo[body]
        try:
            payload = json.loads(body) if body.strip() else {}
            reported = (nodes.reported_fields(_HEARTBEAT.load(payload))
                        if isinstance(payload, dict) else None)
        except (ValueError, UnicodeDecodeError, RecursionError, ValidationError):
            reported = None
        if len(self._memo) >= MEMO_MAX:
            self._memo = {}
        self._memo[body] = reported
        return reported

    def _bind(self):
        from .extensions import db

        self._engine = db.engine
        return self._engine


def _read_body(environ) -> bytes | None:
    """The whole body of a small request with a Content-Length, else None.

    What was read is put back as the request's input, for the app if it answers.
    """
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    if length < 0 or length > MAX_BODY:
        return None
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body if len(body) == length else None


def install(app) -> None:
    """Put the fast lane in front of ``app``'s WSGI callable."""
    app.wsgi_app = NodeFastLane(app, app.wsgi_app)
