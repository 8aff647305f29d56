"""WeChat through the cascade: logins relayed to nodes, session changes, account search.

The parent never sees a WeChat cookie or token. It asks a node to log in (a command the
node picks up with its next heartbeat or claim answer), keeps the QR image the node
uploads only while a scan is pending, records each valid <-> expired change of a node's
session once in the sync log, and relays account searches to a node with a session.
"""

from __future__ import annotations

import base64
import binascii
import time
from datetime import datetime, timedelta

from shared import errors as codes
from shared.timeutil import isoformat_z

from ..config import settings
from ..clock import now
from ..errors import ApiError, NotFoundError
from .. import unit_of_work
from ..extensions import db, rowcount
from ..models import Feed, Node, NodeCommand, WechatLogin
from ..models.node import NODE_TYPE_CHILD, STATUS_ONLINE
from ..models.sync_log import (
    DIRECTION_EVENT, OP_WECHAT_FEED_INVALID, OP_WECHAT_SESSION_EXPIRED, OP_WECHAT_SESSION_VALID,
    STATUS_FAILED, STATUS_SUCCESS,
)
from ..models.wechat import (
    COMMAND_DELIVERED, COMMAND_DONE, COMMAND_FAILED, COMMAND_PENDING, KIND_WECHAT_LOGIN,
    KIND_WECHAT_SEARCH, LOGIN_EXPIRED, LOGIN_FAILED, LOGIN_NONE, LOGIN_SCANNED, LOGIN_VALID,
    LOGIN_WAITING_SCAN,
)
from .sync_logs import log_sync
from . import work_signal

MAX_QR_BYTES = 256 * 1024
SEARCH_TIMEOUT_SECONDS = 10.0
SEARCH_POLL_SECONDS = 0.2
PENDING_STATES = (LOGIN_WAITING_SCAN, LOGIN_SCANNED)


# -- commands ---------------------------------------------------------------------------------
def has_pending_commands(node: Node) -> bool:
    return bool(node.commands_waiting)


def _queue(command: NodeCommand) -> None:
    db.session.add(command)
    work_signal.bump()  # the node's parked claim is released to fetch it
    db.session.execute(db.update(Node).where(Node.id == command.node_id)
                       .values(commands_waiting=True)
                       .execution_options(synchronize_session=False))


def deliver_commands(node: Node) -> list[dict]:
    """Hand the node what waits for it, each command once (a guarded UPDATE per command)."""
    if not node.commands_waiting:
        return []
    # Cleared before reading: a command queued meanwhile sets it again.
    db.session.execute(db.update(Node).where(Node.id == node.id).values(commands_waiting=False)
                       .execution_options(synchronize_session=False))
    node.commands_waiting = False
    pending = db.session.execute(
        db.select(NodeCommand).where(NodeCommand.node_id == node.id,
                                     NodeCommand.status == COMMAND_PENDING)
        .order_by(NodeCommand.created_at).limit(10)
    ).scalars().all()
    moment = now()
    delivered = []
    for command in pending:
        won = rowcount(db.session.execute(
            db.update(NodeCommand)
            .where(NodeCommand.id == command.id, NodeCommand.status == COMMAND_PENDING)
            .values(status=COMMAND_DELIVERED, delivered_at=moment)
            .execution_options(synchronize_session=False)
        ))
        if won == 1:
            delivered.append({"id": command.id, "kind": command.kind,
                              "payload": command.payload or {}})
    return delivered


def _command_of(node: Node, command_id: str) -> NodeCommand:
    command = db.session.get(NodeCommand, command_id)
    if command is None or command.node_id != node.id:
        raise NotFoundError("Command", command_id)
    return command


def record_command_result(node: Node, command_id: str, values: dict) -> dict:
    command = _command_of(node, command_id)
    if command.status in (COMMAND_DONE, COMMAND_FAILED):
        return {"id": command.id, "status": command.status}
    command.status = COMMAND_FAILED if values.get("error") else COMMAND_DONE
    command.result = {"results": values.get("results") or []}
    command.error = values.get("error")
    command.finished_at = now()
    db.session.flush()
    return {"id": command.id, "status": command.status}


# -- logins -----------------------------------------------------------------------------------
def _child(node_id: str) -> Node:
    node = db.session.get(Node, node_id)
    if node is None or node.deleted_at is not None:
        raise NotFoundError("Node", node_id)
    if node.node_type != NODE_TYPE_CHILD:
        raise ApiError(codes.CONFLICT, "Only child nodes log in to WeChat.")
    return node


def _session_capability(node: Node) -> dict:
    return (node.capabilities or {}).get("wechat") or {}


def login_view(node: Node, login: WechatLogin | None, moment: datetime | None = None) -> dict:
    """``{state, account, expires_at, qr_expires_at}`` as the admin sees it."""
    moment = moment or now()
    session = _session_capability(node)
    account = session.get("account") or None
    expires_at = session.get("expires_at")
    state = LOGIN_VALID if session.get("session_valid") else (
        LOGIN_EXPIRED if account else LOGIN_NONE)
    error = None
    qr_expires_at = None
    if login is not None and login.state in PENDING_STATES:
        if login.qr_expires_at and login.qr_expires_at <= moment:
            if state != LOGIN_VALID:  # a session still valid stays shown as valid
                state, error = LOGIN_FAILED, "the QR code expired before it was scanned"
        else:
            state, qr_expires_at = login.state, login.qr_expires_at
    elif login is not None and login.state == LOGIN_FAILED and state != LOGIN_VALID:
        state, error = LOGIN_FAILED, login.error
    elif login is not None and login.state == LOGIN_VALID and state != LOGIN_VALID and (
            node.last_heartbeat_at is None or login.updated_at >= node.last_heartbeat_at):
        # Logged in just now; the node's next heartbeat (sent at once) confirms it.
        state, expires_at = LOGIN_VALID, isoformat_z(login.expires_at)
        account = {"name": login.account_name or "", "avatar": login.account_avatar or ""}
        session = session or {"session_valid": True}
    return {
        "node_id": node.id,
        "state": state,
        "account": {"name": (account or {}).get("name") or "",
                    "avatar": (account or {}).get("avatar") or ""} if account else None,
        "expires_at": expires_at if session else None,
        "qr_expires_at": isoformat_z(qr_expires_at),
        "qr_ready": bool(state in PENDING_STATES and login and login.qr_png),
        "error": error,
        "requested_at": isoformat_z(login.requested_at) if login else None,
    }


def get_login(node_id: str) -> dict:
    node = _child(node_id)
    return login_view(node, db.session.get(WechatLogin, node.id))


def request_login(node_id: str) -> dict:
    """Ask the node to start a WeChat login; a pending one is kept, not restarted."""
    node = _child(node_id)
    moment = now()
    login = db.session.get(WechatLogin, node.id)
    if login is not None and login.state in PENDING_STATES and (
            login.qr_expires_at is None or login.qr_expires_at > moment) and (
            login.requested_at and moment - login.requested_at < timedelta(minutes=5)):
        return login_view(node, login, moment)
    command = NodeCommand(node_id=node.id, kind=KIND_WECHAT_LOGIN, payload={},
                          status=COMMAND_PENDING, created_at=moment)
    _queue(command)
    db.session.flush()
    if login is None:
        login = WechatLogin(node_id=node.id)
        db.session.add(login)
    login.command_id = command.id
    login.state = LOGIN_WAITING_SCAN
    login.qr_png = None
    login.qr_expires_at = None
    login.error = None
    login.requested_at = moment
    login.updated_at = moment
    db.session.flush()
    return login_view(node, login, moment)


def qr_image(node_id: str) -> bytes:
    node = _child(node_id)
    login = db.session.get(WechatLogin, node.id)
    if (login is None or login.state not in PENDING_STATES or not login.qr_png
            or (login.qr_expires_at and login.qr_expires_at <= now())):
        raise ApiError(codes.QR_NOT_AVAILABLE)
    return login.qr_png


def record_login_state(node: Node, values: dict) -> dict:
    """A node reports a step of the login the parent asked for."""
    moment = now()
    login = db.session.get(WechatLogin, node.id)
    if login is None or (values.get("command_id") and login.command_id != values["command_id"]):
        raise ApiError(codes.LOGIN_SUPERSEDED)
    state = values["state"]
    png = None
    if values.get("qr_png"):
        try:
            png = base64.b64decode(values["qr_png"], validate=True)
        except (binascii.Error, ValueError):
            png = b""
        if not png.startswith(b"\x89PNG\r\n\x1a\n") or len(png) > MAX_QR_BYTES:
            raise ApiError(codes.VALIDATION_FAILED, details={
                "qr_png": [f"Expected a base64 PNG image of at most {MAX_QR_BYTES} bytes."]})
    login.state = state
    login.updated_at = moment
    if state == LOGIN_WAITING_SCAN:
        if png is not None:
            login.qr_png = png
        login.qr_expires_at = values.get("qr_expires_at")
    else:
        login.qr_png = None  # kept only until the scan completes or fails
        login.qr_expires_at = None
    if values.get("account"):
        login.account_name = values["account"].get("name")
        login.account_avatar = values["account"].get("avatar")
    if values.get("expires_at"):
        login.expires_at = values["expires_at"]
    login.error = values.get("error") if state == LOGIN_FAILED else None
    if state in (LOGIN_VALID, LOGIN_FAILED) and login.command_id:
        db.session.execute(
            db.update(NodeCommand).where(NodeCommand.id == login.command_id)
            .values(status=COMMAND_DONE if state == LOGIN_VALID else COMMAND_FAILED,
                    finished_at=moment, error=login.error)
            .execution_options(synchronize_session=False))
    db.session.flush()
    return login_view(node, login, moment)


def note_session_change(node: Node, before: dict | None, after: dict | None) -> None:
    """Record a valid <-> expired change of the node's WeChat session, once per change."""
    was = bool(((before or {}).get("wechat") or {}).get("session_valid"))
    is_now = bool(((after or {}).get("wechat") or {}).get("session_valid"))
    if was == is_now:
        return
    account = ((after or {}).get("wechat") or {}).get("account") or \
        ((before or {}).get("wechat") or {}).get("account") or {}
    name = account.get("name") or "unknown account"
    if is_now:
        log_sync(node.id, OP_WECHAT_SESSION_VALID, DIRECTION_EVENT, STATUS_SUCCESS,
                 error_message=f"WeChat session of {name} is valid on node {node.name}")
    else:
        log_sync(node.id, OP_WECHAT_SESSION_EXPIRED, DIRECTION_EVENT, STATUS_FAILED,
                 error_message=f"WeChat session of {name} expired on node {node.name}: "
                               "log the node in again (POST /api/v1/cascade/nodes/"
                               f"{node.id}/wechat/login)")


def mark_feeds_invalid(node: Node, results: list[dict]) -> None:
    """Feeds WeChat refused (200002) wait for an admin's edit before they are collected."""
    for result in results:
        if not result.get("feed_invalid"):
            continue
        reason = result.get("error") or "WeChat refused this account (200002)"
        won = rowcount(db.session.execute(
            db.update(Feed).where(Feed.id == result["mp_id"], Feed.invalid_reason.is_(None))
            .values(invalid_reason=reason, updated_at=Feed.updated_at)
            .execution_options(synchronize_session=False)))
        if won:
            log_sync(node.id, OP_WECHAT_FEED_INVALID, DIRECTION_EVENT, STATUS_FAILED,
                     error_message=f"feed {result['mp_id']}: {reason}")


# -- account search ---------------------------------------------------------------------------
def _search_node() -> Node | None:
    from .leasing import _wechat_ready

    moment = now()
    cutoff = moment - timedelta(seconds=settings().offline_after_seconds)
    candidates = db.session.execute(
        db.select(Node).where(Node.deleted_at.is_(None), Node.is_active.is_(True),
                              Node.node_type == NODE_TYPE_CHILD,
                              Node.last_heartbeat_at >= cutoff)
        .order_by(Node.last_heartbeat_at.desc())
    ).scalars().all()
    # Only nodes that report a valid session answer commands (a WeRSS node trusted to
    # log in on its own does not).
    ready = [n for n in candidates if n.status_at(moment, settings().offline_after_seconds)
             == STATUS_ONLINE and _wechat_ready(n, moment)
             and _session_capability(n).get("session_valid")]
    # A node with free room is waiting in a claim and hears the search at once; a busy
    # one only with its next heartbeat.
    ready.sort(key=lambda n: (n.running or 0) >= (n.reported_capacity or n.capacity))
    return ready[0] if ready else None


def search_accounts(query: str, timeout: float = SEARCH_TIMEOUT_SECONDS) -> list[dict]:
    """Search WeChat accounts by name through a node with a valid session.

    :raises ApiError: 503 when no node has a session, 504 when it does not answer in time.
    """
    node = _search_node()
    if node is None:
        raise ApiError(codes.WECHAT_UNAVAILABLE)
    command = NodeCommand(node_id=node.id, kind=KIND_WECHAT_SEARCH, payload={"query": query},
                          status=COMMAND_PENDING, created_at=now())
    _queue(command)
    db.session.flush()
    command_id = command.id
    unit_of_work.commit_now()  # the node must see it while this request waits
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(SEARCH_POLL_SECONDS)
        db.session.expire_all()
        command = db.session.get_one(NodeCommand, command_id)  # committed above
        if command.status == COMMAND_DONE:
            return list((command.result or {}).get("results") or [])
        if command.status == COMMAND_FAILED:
            raise ApiError(codes.WECHAT_FAILED,
                           f"The node could not search WeChat: {command.error}")
        unit_of_work.commit_now()  # end the read transaction so the next read sees the node's write
    db.session.execute(
        db.update(NodeCommand).where(NodeCommand.id == command_id,
                                     NodeCommand.status.in_((COMMAND_PENDING, COMMAND_DELIVERED)))
        .values(status=COMMAND_FAILED, error="timed out", finished_at=now())
        .execution_options(synchronize_session=False))
    unit_of_work.commit_now()  # the error answer below would roll the timed-out mark back
    raise ApiError(codes.WECHAT_TIMEOUT, f"Node {node.name} did not answer the search within "
                                         f"{timeout:g} s; try again.")
