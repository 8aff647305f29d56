"""The node registry: CRUD, credentials, heartbeats and presence."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_

from shared import errors as codes
from shared import signing
from shared.timeutil import isoformat_z

from ..config import settings
from ..clock import now
from ..crypto import cipher
from ..errors import ApiError, NotFoundError
from ..extensions import db
from ..models import IdempotencyRecord, Node, UsedNonce
from ..models.node import STATUS_DISABLED, STATUS_OFFLINE, STATUS_ONLINE
from ..models.sync_log import DIRECTION_EVENT, OP_NODE_OFFLINE, STATUS_SUCCESS
from . import presence
from .leasing import release_node_leases
from . import wechat as wechat_service
from .sync_logs import log_sync
from ..paging import fetch_page


def _name_in_use(name: str, exclude_id: str | None = None) -> bool:
    query = db.select(Node.id).where(Node.name_key == name)
    if exclude_id:
        query = query.where(Node.id != exclude_id)
    return db.session.execute(query).first() is not None


def _name_taken(name: str) -> ApiError:
    return ApiError(codes.NAME_TAKEN, f"A node named {name!r} already exists.",
                    details={"name": ["Already in use."]})


def create_node(values: dict) -> Node:
    if _name_in_use(values["name"]):
        raise _name_taken(values["name"])
    node = Node(**values, name_key=values["name"])
    db.session.add(node)
    db.session.flush()
    return node


def get_node(node_id: str) -> Node:
    presence.flush_presence()
    node = db.session.get(Node, node_id)
    if node is None or node.deleted_at is not None:
        raise NotFoundError("Node", node_id)
    return node


def _status_condition(status: str, moment: datetime):
    if status == STATUS_DISABLED:
        return Node.is_active.is_(False)
    if status == STATUS_ONLINE:
        return and_(Node.is_active.is_(True), presence.online_condition(moment))
    return and_(Node.is_active.is_(True), presence.offline_condition(moment))


def list_nodes(filters: dict) -> tuple[list[Node], int]:
    """One page of nodes (``filters`` holds the window: parent/paging.py) and the total."""
    moment = now()
    presence.flush_presence()
    conditions = [Node.deleted_at.is_(None)]
    if filters.get("node_type") is not None:
        conditions.append(Node.node_type == filters["node_type"])
    if filters.get("status"):
        conditions.append(_status_condition(filters["status"], moment))
    return fetch_page(Node, conditions, (Node.created_at, Node.id), filters)


def update_node(node_id: str, values: dict) -> Node:
    node = get_node(node_id)
    if "name" in values and values["name"] != node.name:
        if _name_in_use(values["name"], exclude_id=node.id):
            raise _name_taken(values["name"])
        node.name_key = values["name"]
    for name, value in values.items():
        setattr(node, name, value)
    if values.get("is_active") is False:
        # A disabled node can no longer report, so its leases go back to the queue now.
        release_node_leases(node.id)
    db.session.flush()
    return node


def delete_node(node_id: str) -> None:
    """Soft-delete: the node disappears and its credentials answer 403 node_disabled."""
    node = get_node(node_id)
    node.deleted_at = now()
    node.is_active = False
    node.name_key = None
    release_node_leases(node.id, node.deleted_at)
    db.session.execute(db.delete(UsedNonce).where(UsedNonce.node_id == node.id))
    db.session.execute(db.delete(IdempotencyRecord).where(IdempotencyRecord.node_id == node.id))
    db.session.flush()


def issue_credentials(node_id: str) -> tuple[Node, str, str]:
    """Generate (or rotate) a node's AK/SK; the old pair stops working at commit."""
    node = get_node(node_id)
    api_key, api_secret = signing.generate_credentials()
    node.api_key = api_key
    node.secret_ciphertext = cipher().encrypt(api_secret)
    node.credentials_issued_at = now()
    db.session.flush()
    return node, api_key, api_secret


# What a heartbeat reports: payload key -> Node column (capabilities and callback_url too).
_REPORTED = (("version", "agent_version"), ("hostname", "hostname"), ("running", "running"),
             ("capacity", "reported_capacity"))
REPORTED_COLUMNS = tuple(name for _, name in _REPORTED) + ("capabilities", "callback_url")


def reported_fields(payload: dict) -> dict:
    """Column -> value of what a loaded heartbeat payload reports (absent keys: nothing)."""
    reported = {name: payload[key] for key, name in _REPORTED if payload.get(key) is not None}
    if payload.get("capabilities") is not None:
        reported["capabilities"] = _capabilities_to_json(payload["capabilities"])
    if payload.get("callback_url") is not None:
        reported["callback_url"] = payload["callback_url"] or None
    return reported


def record_heartbeat(node: Node, payload: dict) -> dict:
    """Store what a node reported; an UPDATE only when something in it changed.

    Presence itself was recorded by authentication, as for every node request.
    """
    moment = now()
    reported = reported_fields(payload)
    if "capabilities" in reported:
        wechat_service.note_session_change(node, node.capabilities, reported["capabilities"])
    for name, value in reported.items():
        if getattr(node, name) != value:  # an unchanged report writes nothing
            setattr(node, name, value)
    db.session.flush()
    return heartbeat_answer(node, moment)


def heartbeat_answer(node, moment: datetime) -> dict:
    """The data of a heartbeat's answer (``node``: a Node, or a row with its id and cadence)."""
    cfg = settings()
    return {
        "node_id": node.id,
        "status": STATUS_ONLINE,
        "server_time": isoformat_z(moment),
        "heartbeat_interval": cfg.heartbeat_interval,
        "sync_interval": cfg.sync_interval,
        "offline_after": presence.offline_after_for(node),
    }


def _capabilities_to_json(capabilities: dict) -> dict:
    wechat = capabilities.get("wechat")
    if wechat is not None:
        wechat = {
            "session_valid": bool(wechat.get("session_valid")),
            "expires_at": isoformat_z(wechat.get("expires_at")),
            "account": wechat.get("account") or None,
        }
    return {"sources": list(capabilities.get("sources") or []), "wechat": wechat}


def sweep_presence(moment: datetime | None = None) -> int:
    """Record online -> offline for nodes whose signs of life stopped; safe to run anywhere.

    This worker's pending signs of life are written first. One guarded UPDATE ...
    RETURNING: when several workers sweep at once, each node's transition is returned to
    exactly one of them.
    """
    moment = moment or now()
    presence.flush_presence()
    offline_after = timedelta(seconds=settings().offline_after_seconds)
    changed = db.session.execute(
        db.update(Node)
        .where(Node.presence == STATUS_ONLINE, presence.offline_condition(moment))
        .values(presence=STATUS_OFFLINE)
        .returning(Node.id, Node.offline_at, Node.last_heartbeat_at)
        .execution_options(synchronize_session=False)
    ).all()
    for node_id, offline_at, last_heartbeat_at in changed:
        log_sync(node_id, OP_NODE_OFFLINE, DIRECTION_EVENT, STATUS_SUCCESS,
                 finished_at=offline_at or last_heartbeat_at + offline_after)
    db.session.flush()
    return len(changed)
