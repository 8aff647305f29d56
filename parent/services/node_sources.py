"""What work a node can do: the sources it runs, and whether it is ready for WeChat.

A node says so in its heartbeat (``capabilities.sources``, ``capabilities.wechat``). An
unmodified WeRSS child says nothing: it runs WeChat collection with its own login and
has no RSS collector. So, in order:

1. ``nodes.sources``, when an admin set it (``PUT /cascade/nodes/{id}``);
2. the sources the node reported in its heartbeat;
3. ``["wechat"]`` for a node that has only ever called the WeRSS prefix
   (``/api/v1/wx/cascade``);
4. otherwise every source, WeChat only with a valid reported session.

See docs/COMPAT.md ("What an unmodified WeRSS child is given").
"""

from __future__ import annotations

from datetime import datetime

from flask import request
from sqlalchemy.orm.attributes import set_committed_value

from shared.paths import CASCADE_PREFIX, WX_CASCADE_PREFIX
from shared.timeutil import parse_iso

from ..extensions import db
from ..models import Node
from ..models.feed import SOURCE_RSS, SOURCE_TYPES, SOURCE_WECHAT

ROUTES_WERSS = "werss"
ROUTES_NATIVE = "native"


def reported_sources(node: Node) -> list[str] | None:
    sources = (node.capabilities or {}).get("sources")
    if not isinstance(sources, list):
        return None
    return [s for s in SOURCE_TYPES if s in sources]


def effective_sources(node: Node) -> list[str]:
    """The sources this node is given work for (see the module docstring)."""
    if node.sources is not None:
        return [s for s in SOURCE_TYPES if s in node.sources]
    reported = reported_sources(node)
    if reported is not None:
        return reported
    if node.route_family == ROUTES_WERSS:
        return [SOURCE_WECHAT]
    return list(SOURCE_TYPES)


def sources_origin(node: Node) -> str:
    """Why effective_sources says what it says: admin, reported, werss or default."""
    if node.sources is not None:
        return "admin"
    if reported_sources(node) is not None:
        return "reported"
    return "werss" if node.route_family == ROUTES_WERSS else "default"


def describe(node: Node) -> dict:
    """The admin view: the setting, and what the parent makes of it."""
    return {"sources": node.sources, "effective_sources": effective_sources(node),
            "sources_origin": sources_origin(node), "route_family": node.route_family}


def wechat_ready(node: Node, moment: datetime) -> bool:
    """Whether the node may be handed WeChat work now.

    A node that reports a WeChat session is held to it. One that reports none but runs
    WeChat by an admin's word or as a WeRSS node logs in on its own: it is trusted.
    """
    if SOURCE_WECHAT not in effective_sources(node):
        return False
    if node.wechat_blocked_until and node.wechat_blocked_until > moment:
        return False
    wechat = (node.capabilities or {}).get("wechat")
    if not isinstance(wechat, dict):
        return sources_origin(node) in ("admin", "werss")
    if not wechat.get("session_valid"):
        return False
    expires = wechat.get("expires_at")
    return not expires or parse_iso(expires) > moment


def runs_rss(node: Node) -> bool:
    return SOURCE_RSS in effective_sources(node)


def supports(node: Node, source_type: str | None) -> bool:
    return (source_type or SOURCE_WECHAT) in effective_sources(node)


def note_route_family(node: Node) -> None:
    """Remember whether this node calls the WeRSS prefix only, or ours too.

    Written only on a change: the first request of a node, and a WeRSS node's first
    native call. Committed with the request's unit of work.
    """
    path = request.path
    if path.startswith(WX_CASCADE_PREFIX + "/"):
        family = ROUTES_WERSS
    elif path.startswith(CASCADE_PREFIX + "/"):
        family = ROUTES_NATIVE
    else:
        return
    if node.route_family == family or node.route_family == ROUTES_NATIVE:
        return
    db.session.execute(
        db.update(Node).where(Node.id == node.id)
        .values(route_family=family, updated_at=Node.updated_at)
        .execution_options(synchronize_session=False))
    set_committed_value(node, "route_family", family)
