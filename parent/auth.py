"""Authentication decorators: they put the caller on g.node / g.admin.

They do not commit: the request's unit of work is committed once, after the view, by
parent/unit_of_work.py, and any error rolls back everything, including the nonce a signed
request would have consumed.
"""

from __future__ import annotations

import email.utils
from datetime import datetime
import hmac
from functools import wraps
from typing import cast
from urllib.parse import quote

from flask import current_app, g, request
from sqlalchemy import Table, bindparam, exists, insert, select

from shared import errors as codes
from shared import signing
from shared.timeutil import isoformat_z

from .clock import now
from .config import settings
from .crypto import cipher
from . import unit_of_work
from .errors import ApiError
from .extensions import db
from .models import Admin, AdminToken, Node, UsedNonce
from .nonce_writer import nonce_writer

# Built once: each request only binds the key (no expression building, one cached compile).
_NODE_BY_KEY = select(Node).where(Node.api_key == bindparam("api_key"))
# A Core INSERT of one row: the nonce needs no ORM object, unit-of-work flush or identity map.
NONCES = cast(Table, UsedNonce.__table__)
INSERT_NONCE = insert(NONCES)
# A signed request's one read: the node, and whether its nonce has been seen already.
_NODE_AND_NONCE_BY_KEY = select(Node, exists().where(
    NONCES.c.node_id == Node.id, NONCES.c.nonce == bindparam("nonce")).label("seen")
).where(Node.api_key == bindparam("api_key"))
# Compared against when the key is unknown, so an unknown key does the work a wrong secret does.
NO_SECRET = "CS" + "0" * 32


def raw_request_path() -> str:
    """Return the path exactly as the client sent it (what a signature covers)."""
    return raw_path(request.environ)


def raw_path(environ: dict) -> str:
    """The path of a WSGI request exactly as the client sent it."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        if "://" in raw.split("?", 1)[0]:  # absolute-form request target
            raw = "/" + raw.split("://", 1)[1].split("/", 1)[-1]
        return raw.split("?", 1)[0]
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    return quote(path.encode("latin-1"), safe="/:@!$&'()*+,;=-._~%")


def _authorization_header() -> str:
    header = request.headers.get("Authorization", "").strip()
    if not header:
        raise ApiError(codes.AUTHENTICATION_REQUIRED)
    return header


def authenticate_node() -> Node:
    """Authenticate the request as a node, in either AK-SK form.

    :raises ApiError: with the contract's 401/403 codes.
    """
    header = _authorization_header()
    try:
        parsed = signing.parse_authorization(header)
    except signing.AuthorizationFormatError as exc:
        raise ApiError(codes.MALFORMED_AUTHORIZATION, details={"reason": str(exc)}) from None
    if parsed is None:
        if header.split(" ", 1)[0].lower() == "bearer":
            raise ApiError(
                codes.WRONG_CREDENTIAL_TYPE,
                "Node routes take AK-SK credentials, not an admin Bearer token.",
            )
        raise ApiError(
            codes.MALFORMED_AUTHORIZATION,
            details={"reason": "expected the AK-SK or AK-SK-HMAC-SHA256 scheme"},
        )

    if isinstance(parsed, signing.PlainCredentials) and not settings().allow_plain_auth:
        raise ApiError(codes.PLAIN_AUTH_DISABLED)

    seen = False
    if isinstance(parsed, signing.SignedCredentials):
        row = db.session.execute(_NODE_AND_NONCE_BY_KEY,
                                 {"api_key": parsed.api_key, "nonce": parsed.nonce}).first()
        node, seen = (row[0], bool(row[1])) if row is not None else (None, False)
    else:
        node = db.session.execute(_NODE_BY_KEY, {"api_key": parsed.api_key}).scalar_one_or_none()
    secret = (cipher().decrypt_cached(node.secret_ciphertext)
              if node is not None and node.secret_ciphertext else None)
    # One read and one constant-time check whatever is wrong (unknown key, wrong secret, bad
    # signature): none is cheaper to tell apart than a right one, and none writes.
    if isinstance(parsed, signing.PlainCredentials):
        ok = credentials_match(parsed, secret, request.method, "", "", b"")
    else:
        ok = credentials_match(parsed, secret, request.method, raw_request_path(),
                               request.query_string.decode("latin-1"), _signed_body())
    if not ok or node is None or secret is None:
        raise ApiError(codes.INVALID_CREDENTIALS)
    if isinstance(parsed, signing.SignedCredentials):
        _consume_nonce(node, parsed, seen)

    if not node.is_active or node.deleted_at is not None:
        raise ApiError(codes.NODE_DISABLED)
    return node


def credentials_match(parsed: signing.PlainCredentials | signing.SignedCredentials,
                      secret: str | None, method: str, path: str, query: str,
                      body: bytes) -> bool:
    """One constant-time check of the credentials against the node's secret (None: no node,
    checked against a made-up secret, so an unknown key costs what a wrong secret does)."""
    if isinstance(parsed, signing.PlainCredentials):
        return hmac.compare_digest((secret or NO_SECRET).encode("utf-8"),
                                   parsed.api_secret.encode("utf-8"))
    return signing.verify_signature(secret or NO_SECRET, parsed, method, path, query, body)


def _signed_body() -> bytes:
    """The body a signature covers, once the query is known to name each key once."""
    keys = [key for key, _ in request.args.items(multi=True)]
    if len(keys) != len(set(keys)):
        # The signature covers the sorted pairs, so reordering duplicates keeps it valid
        # while Flask reads the first value: a signed request names each key once.
        raise ApiError(codes.BAD_REQUEST, "A signed request may not repeat a query key.",
                       details={"repeated": sorted({k for k in keys if keys.count(k) > 1})[:10]})
    return request.get_data(cache=True)


def _consume_nonce(node: Node, parsed: signing.SignedCredentials, seen: bool) -> None:
    """Refuse a stale timestamp or a seen nonce, then record the nonce with the commit.

    ``seen`` came with the node's row (one read). The nonce is inserted by whichever commit
    ends this request's work (``insert_at_commit``), not now: an INSERT now would hold
    SQLite's one write lock for the whole request, and on PostgreSQL it would open a
    transaction (BEGIN, INSERT, COMMIT: three round trips) in a request that may write
    nothing else, where alone it is one autocommitted statement. A copy that raced this one
    collides on the primary key in the shared database at commit, whichever worker or
    parent instance it reached, and is refused with its work rolled back.
    """
    moment = now()
    if not timestamp_fresh(parsed, moment):
        raise ApiError(
            codes.REQUEST_EXPIRED,
            details={
                "server_time": isoformat_z(moment),
                "server_timestamp": int(moment.timestamp()),
                "request_timestamp": parsed.timestamp,
                "window_seconds": signing.TIMESTAMP_WINDOW_SECONDS,
            },
            headers={"Date": email.utils.format_datetime(moment, usegmt=True)},
        )
    if seen:
        raise ApiError(codes.REPLAYED_REQUEST)
    unit_of_work.insert_at_commit(
        INSERT_NONCE, {"node_id": node.id, "nonce": parsed.nonce, "seen_at": moment},
        codes.REPLAYED_REQUEST, alone=nonce_writer(current_app).write)


def timestamp_fresh(parsed: signing.SignedCredentials, moment: datetime) -> bool:
    """Whether a signed request's timestamp lies within the window around ``moment``."""
    return signing.timestamp_skew(parsed.timestamp, moment.timestamp()) \
        <= signing.TIMESTAMP_WINDOW_SECONDS


def node_required(view):
    """Authenticate a node, then run the view."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        from .services.node_sources import note_route_family
        from .services.presence import note_sign_of_life

        g.node = authenticate_node()
        note_route_family(g.node)
        note_sign_of_life(g.node)  # any authenticated request is a sign of life
        return view(*args, **kwargs)

    return wrapper


def authenticate_admin() -> tuple[Admin, AdminToken]:
    """Authenticate a Bearer access token.

    :raises ApiError: with the contract's 401 codes.
    """
    header = _authorization_header()
    scheme, _, token = header.partition(" ")
    if scheme in (signing.PLAIN_SCHEME, signing.SIGNED_SCHEME):
        raise ApiError(
            codes.WRONG_CREDENTIAL_TYPE,
            "Admin routes take a Bearer access token from /api/v1/auth/login, "
            "not node AK-SK credentials.",
        )
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(
            codes.MALFORMED_AUTHORIZATION, details={"reason": "expected 'Bearer <access_token>'"}
        )
    row = db.session.execute(
        db.select(AdminToken, Admin)
        .join(Admin, Admin.id == AdminToken.admin_id)
        .where(AdminToken.token_hash == cipher().token_digest(token))
    ).first()
    if row is None:
        raise ApiError(codes.INVALID_TOKEN)
    admin_token, admin = row
    if admin_token.revoked_at is not None or admin_token.expires_at <= now():
        raise ApiError(codes.INVALID_TOKEN)
    return admin, admin_token


def admin_required(view):
    """Authenticate an admin, then run the view."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        g.admin, g.admin_token = authenticate_admin()
        return view(*args, **kwargs)

    return wrapper
