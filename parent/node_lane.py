"""The node fast lane: steady heartbeats and unchanged pulls answered without Flask's
request cycle or the ORM.

Most of an idle fleet's requests are heartbeats that change nothing (the node is online,
reports what it reported last time, has no command waiting and sends no Idempotency-Key)
and syncs that find nothing new (a pull whose If-None-Match is current). For those the
full path (request context, hooks, ORM session, unit of work) cost more than the work
itself (bench/README.md, "The node fast lane"). This WSGI layer sits in front of the
Flask app and answers them with one read of the node (with whether a signed request's
nonce was seen and, for a pull, the table's cursor) on the driver's cursor
(parent/driver_sql.py), the same credential check, the nonce committed before the answer
(parent/nonce_writer.py, as the app writes it; on the same checked-out connection when
this request writes its group), the
sign of life kept in memory for presence's batched write and, for a pull, its log row
kept for the same write (services/unchanged_pulls.py), exactly as the full path does them
(the functions are shared).

It answers a wrong secret or an unknown key (401) itself too, so a wrong secret costs no
more than a right one. Anything else goes to the app, which answers it as before, body
and all: a presence edge, a flush of presence due, a report that changes a column, a
command waiting, a list that changed or an older cursor, a page after the first, a
disabled node, a stale timestamp or a seen nonce, a malformed request, a heartbeat with a
query string, an Idempotency-Key, plain credentials where they are off, any error before
the nonce is written. The answer carries the same status line, headers, envelope,
request id, metrics and (JSON mode) access line as the app's.
"""

from __future__ import annotations

import io
import json
import logging
import time
from functools import lru_cache
from typing import cast
from urllib.parse import parse_qsl

from marshmallow import ValidationError
from sqlalchemy import Connection, Table, bindparam, exists, select
from sqlalchemy.exc import SQLAlchemyError

from shared import errors as codes
from shared import paths, signing
from shared.envelope import CURSOR_HEADER, REQUEST_ID_HEADER, error_body, success_body
from shared.schemas import ChangesQuerySchema, HeartbeatSchema, PageQuerySchema

from .auth import NONCES, credentials_match, raw_path, timestamp_fresh
from .clock import now
from .config import settings
from .crypto import cipher
from .driver_sql import DriverStatement
from .errors import request_id_for
from .logs import log_access
from .metrics import observe_request
from .models import Node
from .models.replication import ENTITY_FEED, ENTITY_MESSAGE_TASK
from .nonce_writer import nonce_writer
from .services import nodes, presence, replication
from .services.node_sources import ROUTES_NATIVE
from .services.node_sync import ETAG_NAME, OPERATION
from .services.unchanged_pulls import note_unchanged_pull

log = logging.getLogger(__name__)

HEARTBEAT_PATH = paths.CASCADE_PREFIX + paths.HEARTBEAT
# The pulls whose unchanged answer (304) the lane gives: path -> (entity, incremental).
PULLS = {
    paths.CASCADE_PREFIX + paths.FEEDS: (ENTITY_FEED, False),
    paths.CASCADE_PREFIX + paths.MESSAGE_TASKS: (ENTITY_MESSAGE_TASK, False),
    paths.CASCADE_PREFIX + paths.FEED_CHANGES: (ENTITY_FEED, True),
    paths.CASCADE_PREFIX + paths.MESSAGE_TASK_CHANGES: (ENTITY_MESSAGE_TASK, True),
}
# A heartbeat body is a few hundred bytes; a larger one is the app's to read.
MAX_BODY = 16 * 1024
# Bodies (and pull queries) seen -> what they hold, or None: not valid. A fleet sends a
# few distinct ones over and over; past this many, a memo starts over.
MEMO_MAX = 4096

_NODES = cast(Table, Node.__table__)
_COLUMNS = [_NODES.c[name] for name in (
    "id", "secret_ciphertext", "is_active", "deleted_at", "presence", "last_heartbeat_at",
    "offline_at", "cadence_seconds", "route_family", "commands_waiting",
    *nodes.REPORTED_COLUMNS)]
_SEEN = exists().where(NONCES.c.node_id == _NODES.c.id,
                       NONCES.c.nonce == bindparam("nonce")).label("seen")
_HEARTBEAT = HeartbeatSchema()
_CHANGES_QUERY = ChangesQuerySchema()
_PAGE_QUERY = PageQuerySchema()
_MESSAGE = "心跳成功"
_REFUSED = object()  # _authenticate's word for credentials that do not match
# An answer: (status, headers, data of a 200, node id); a 401's is _DENIED.
_DENIED: tuple[int, list, None, None] = (401, [], None, None)


@lru_cache(maxsize=None)
def _read(signed: bool, entity: str | None):
    """One read: the node by its key; whether the nonce was seen; the entity's cursor."""
    columns: list = list(_COLUMNS)
    if signed:
        columns.append(_SEEN)
    if entity is not None:
        columns.append(replication.CURSOR.scalar_subquery().label("cursor"))
    return select(*columns).where(_NODES.c.api_key == bindparam("api_key"))


class NodeFastLane:
    """WSGI middleware: steady heartbeats and unchanged pulls here, the rest to ``wsgi_app``."""

    def __init__(self, app, wsgi_app):
        self.app = app
        self.wsgi_app = wsgi_app
        self.json_log = app.config["WERSS_SETTINGS"].log_format == "json"
        self._engine = None
        self._reads: dict[tuple[bool, str | None], DriverStatement] = {}
        self._memo: dict[bytes, dict | None] = {}
        self._queries: dict[tuple[bool, str], dict | None] = {}

    def __call__(self, environ, start_response):
        path, method = environ.get("PATH_INFO"), environ.get("REQUEST_METHOD")
        heartbeat = path == HEARTBEAT_PATH and method == "POST" \
            and not environ.get("QUERY_STRING")
        pull = path in PULLS and method == "GET" and "HTTP_IF_NONE_MATCH" in environ \
            and environ.get("CONTENT_LENGTH") in (None, "", "0")
        if not (heartbeat or pull) or "HTTP_IDEMPOTENCY_KEY" in environ \
                or "HTTP_TRANSFER_ENCODING" in environ or "HTTP_AUTHORIZATION" not in environ:
            return self.wsgi_app(environ, start_response)
        started = time.perf_counter()
        body = _read_body(environ) if heartbeat else b""
        answer = None
        if body is not None:
            try:  # one connection for the read and, if this thread writes it, the nonce
                with self.app.app_context(), (self._engine or self._bind()).connect() as db:
                    answer = (self._heartbeat(environ, body, db) if heartbeat
                              else self._pull(environ, path, db))
            except Exception:  # noqa: BLE001 - a bug here must not cost the node its answer
                log.exception("the node fast lane failed; the app answers instead")
        if answer is None:
            return self.wsgi_app(environ, start_response)
        status, headers, payload, node_id = answer
        request_id = request_id_for(environ.get("HTTP_X_REQUEST_ID", ""))
        if status == 304:
            data = b""
            start_response("304 NOT MODIFIED", [*headers, (REQUEST_ID_HEADER, request_id)])
        else:
            if status == 200:
                content = success_body(payload, _MESSAGE)
            else:
                error = codes.INVALID_CREDENTIALS
                content = error_body(error.status, error.code, error.message, None, request_id)
            data = (json.dumps(content, ensure_ascii=False, separators=(",", ":"))
                    + "\n").encode()
            start_response("200 OK" if status == 200 else "401 UNAUTHORIZED", [
                ("Content-Type", "application/json"), ("Content-Length", str(len(data))),
                (REQUEST_ID_HEADER, request_id)])
        observe_request(method, path, status, started)
        if self.json_log:
            log_access(method, path, status, environ.get("REMOTE_ADDR"), started,
                       request_id=request_id, node_id=node_id)
        return [data]

    def _heartbeat(self, environ, body: bytes, db: Connection):
        """(status, headers, data, node id) of a steady heartbeat or a refused secret."""
        found = self._authenticate(environ, "", body, None, db)
        if found is _REFUSED:
            return _DENIED
        if found is None:
            return None
        row, signed, moment = found
        if row.commands_waiting:
            return None
        reported = self._reported(body)
        if reported is None or any(getattr(row, name) != value
                                   for name, value in reported.items()):
            return None
        if not self._consume(row, signed, moment, db):
            return None
        return 200, [], nodes.heartbeat_answer(row, moment), row.id

    def _pull(self, environ, path: str, db: Connection):
        """(status, headers, None, node id) of an unchanged pull or a refused secret."""
        entity, incremental = PULLS[path]
        query_string = environ.get("QUERY_STRING", "")
        query = self._query(incremental, query_string)
        if query is None:
            return None
        found = self._authenticate(environ, query_string, b"", entity, db)
        if found is _REFUSED:
            return _DENIED
        if found is None:
            return None
        row, signed, moment = found
        etag = replication.etag_for(ETAG_NAME[entity], row.cursor)
        if not replication.etag_matches(environ["HTTP_IF_NONE_MATCH"], etag) \
                or (incremental and row.cursor != query["since"]):
            return None
        if not self._consume(row, signed, moment, db):
            return None
        note_unchanged_pull(row.id, OPERATION[entity], now(), moment)
        headers = [("ETag", etag)] if incremental else [
            ("ETag", etag), (CURSOR_HEADER, str(row.cursor)), ("Cache-Control", "no-cache")]
        return 304, headers, None, row.id

    def _authenticate(self, environ, query: str, body: bytes, entity: str | None,
                      db: Connection):
        """(node row, signed credentials or None, now) of a steady request of an active
        native node whose credentials match; _REFUSED when they do not; None: the app's."""
        try:
            parsed = signing.parse_authorization(environ["HTTP_AUTHORIZATION"].strip())
        except signing.AuthorizationFormatError:
            return None
        if parsed is None:
            return None
        signed = parsed if isinstance(parsed, signing.SignedCredentials) else None
        if signed is None and not settings().allow_plain_auth:
            return None
        params = {"api_key": parsed.api_key}
        if signed is not None:
            params["nonce"] = signed.nonce
        if entity is not None:
            params.update(replication.cursor_params(entity))
        try:
            row = self._driver_read(signed is not None, entity, db).first(db, params)
        except SQLAlchemyError:
            log.debug("fast lane read failed; the app answers", exc_info=True)
            return None
        secret = (cipher().decrypt_cached(row.secret_ciphertext)
                  if row is not None and row.secret_ciphertext else None)
        if not credentials_match(parsed, secret, environ["REQUEST_METHOD"], raw_path(environ),
                                 query, body) or row is None or secret is None:
            return _REFUSED
        moment = now()
        if signed is not None and (row.seen or not timestamp_fresh(signed, moment)):
            return None
        if not row.is_active or row.deleted_at is not None \
                or row.route_family != ROUTES_NATIVE:
            return None
        return row, signed, moment

    def _consume(self, row, signed, moment, db: Connection) -> bool:
        """Keep the sign of life and commit a signed request's nonce; False: the app's
        (a presence edge or flush due, a copy of the nonce raced in, a failed write)."""
        sign = presence.steady_sign(row, moment)
        if sign is None:
            return False
        if signed is not None:
            try:  # committed before the answer, in a group with this worker's others
                if not nonce_writer(self.app).write(row.id, signed.nonce, moment, db):
                    return False  # a copy raced it in: the app refuses this one
            except SQLAlchemyError:
                log.debug("fast lane nonce write failed; the app answers", exc_info=True)
                return False
        presence.keep_sign(row.id, sign)
        return True

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

    def _query(self, incremental: bool, query_string: str) -> dict | None:
        """A pull's query as the app loads it; None: the app's (invalid, a repeated key,
        or a page after the first, which is never a 304)."""
        key = (incremental, query_string)
        if key in self._queries:
            return self._queries[key]
        pairs = parse_qsl(query_string, keep_blank_values=True)
        args = dict(pairs)
        loaded: dict | None = None
        if len(args) == len(pairs):
            try:
                if incremental:
                    loaded = _CHANGES_QUERY.load(args)
                elif "limit" not in args:
                    loaded = {}
                else:
                    loaded = _PAGE_QUERY.load(args)
                    loaded = loaded if loaded["after"] is None else None
            except ValidationError:
                loaded = None
        if len(self._queries) >= MEMO_MAX:
            self._queries = {}
        self._queries[key] = loaded
        return loaded

    def _driver_read(self, signed: bool, entity: str | None,
                     db: Connection) -> DriverStatement:
        """``_read`` on the driver's cursor (parent/driver_sql.py), compiled once."""
        read = self._reads.get((signed, entity))
        if read is None:
            read = self._reads.setdefault((signed, entity), DriverStatement(
                _read(signed, entity), db.dialect, "NodeRead"))
        return read

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
