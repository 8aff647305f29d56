"""Presence: every authenticated node request is a sign of life, recorded without a write each.

A node is online until its ``offline_at``: its last sign of life plus a threshold earned
by the cadence it actually shows (the seconds between its requests), never less than
``cascade.offline_after``. So a WeRSS child, which heartbeats only inside its 300 s sync,
gets 750 s and does not flap, while our own child (a request at least every 60 s) keeps
the configured 180 s.

Signs of life are kept per worker in memory and written in one batched UPDATE at most
every ``presence_flush_interval`` seconds (by the request that finds them due, else by the
worker's background thread within a second of that, by housekeeping, and as the worker
stops), so a steady heartbeat or pull writes nothing of its own. Only a change of presence
(offline -> online) is written in the request's own transaction, with its sync-log event.
Offline detection lags by at most the flush interval, well inside one heartbeat interval.
The unchanged pulls' log rows (services/unchanged_pulls.py) are written with the same
flush.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from flask import current_app, has_request_context, request
from sqlalchemy import Table, and_, bindparam, or_, select

from shared.paths import WX_CASCADE_PREFIX

from ..clock import now
from ..config import settings
from ..extensions import db
from ..models import Node
from ..models.node import STATUS_OFFLINE, STATUS_ONLINE
from ..models.sync_log import DIRECTION_EVENT, OP_NODE_OFFLINE, OP_NODE_ONLINE, STATUS_SUCCESS
from .sync_logs import log_sync
from . import unchanged_pulls

MARGIN = 2.5  # one missed request, and some
LEARN_MIN_GAP = 5  # seconds: requests closer than this are one burst (a sync), not a cadence
OUTAGE_GAP = 6 * 3600  # a longer silence is an outage, not a cadence to learn
WERSS_CADENCE = 300  # WeRSS's default sync_interval, assumed until a WeRSS node shows its own


def threshold_seconds(cadence: int | None) -> int:
    """Seconds of silence after which a node with this cadence counts as offline."""
    floor = settings().offline_after_seconds
    return max(floor, math.ceil(MARGIN * cadence)) if cadence else floor


def learn_cadence(cadence: int | None, gap: float) -> int | None:
    """Fold one gap between requests into a node's cadence.

    It rises at most twofold per gap (an outage does not teach a long threshold at once)
    and falls by a tenth per gap (one quick retry does not undo a slow node's cadence).
    """
    if gap < LEARN_MIN_GAP or gap > OUTAGE_GAP:
        return cadence
    if cadence is None:
        return round(gap)
    if gap > cadence:
        return round(min(gap, 2 * cadence))
    return round(max(gap, 0.9 * cadence))


@dataclass
class SignOfLife:
    seen_at: datetime
    offline_at: datetime
    cadence: int | None


class PresenceBuffer:
    """Signs of life not yet written, per node, in this worker."""

    def __init__(self):
        self.lock = threading.Lock()
        self.pending: dict[str, SignOfLife] = {}
        self.oldest: float | None = None  # time.monotonic() of the oldest pending entry

    def get(self, node_id: str) -> SignOfLife | None:
        with self.lock:
            return self.pending.get(node_id)

    def put(self, node_id: str, seen: SignOfLife) -> None:
        with self.lock:
            if not self.pending:
                self.oldest = time.monotonic()
            self.pending[node_id] = seen

    def drop(self, node_id: str) -> None:
        with self.lock:
            self.pending.pop(node_id, None)

    def due(self, interval: float) -> bool:
        with self.lock:
            return self.oldest is not None and time.monotonic() - self.oldest >= interval

    def take(self) -> dict[str, SignOfLife]:
        with self.lock:
            taken, self.pending, self.oldest = self.pending, {}, None
            return taken


def buffer() -> PresenceBuffer:
    extensions = current_app.extensions
    held = extensions.get("werss.presence")
    if held is None:  # setdefault() would build (and drop) a buffer and its lock each call
        held = extensions.setdefault("werss.presence", PresenceBuffer())
    return held


def _default_cadence() -> int:
    if has_request_context() and request.path.startswith(WX_CASCADE_PREFIX):
        return WERSS_CADENCE
    return settings().heartbeat_interval


def _next_sign(node: Node, held: SignOfLife | None, moment: datetime,
               default_cadence: int) -> tuple[SignOfLife, datetime | None]:
    """The sign of life ``moment`` makes, and when the node's previous one ran out."""
    last_seen = held.seen_at if held else node.last_heartbeat_at
    cadence = held.cadence if held else node.cadence_seconds
    if last_seen is not None:
        cadence = learn_cadence(cadence, (moment - last_seen).total_seconds())
    offline_at = moment + timedelta(seconds=threshold_seconds(cadence or default_cadence))
    expires = held.offline_at if held else node.offline_at
    if expires is None and node.last_heartbeat_at is not None:
        expires = node.last_heartbeat_at + timedelta(seconds=settings().offline_after_seconds)
    return SignOfLife(moment, offline_at, cadence), expires


def note_sign_of_life(node: Node, moment: datetime | None = None) -> None:
    """Record that ``node`` was just heard from (call once per authenticated request)."""
    moment = moment or now()
    seen, expires = _next_sign(node, buffer().get(node.id), moment, _default_cadence())
    if node.presence == STATUS_ONLINE and expires is not None and moment > expires:
        # It went offline and no sweep noticed before it came back: record both edges.
        log_sync(node.id, OP_NODE_OFFLINE, DIRECTION_EVENT, STATUS_SUCCESS, finished_at=expires)
        node.presence = STATUS_OFFLINE
    if node.presence != STATUS_ONLINE:
        log_sync(node.id, OP_NODE_ONLINE, DIRECTION_EVENT, STATUS_SUCCESS, finished_at=moment)
        node.presence = STATUS_ONLINE
        node.last_heartbeat_at, node.offline_at = moment, seen.offline_at
        node.cadence_seconds = seen.cadence
        buffer().drop(node.id)
        return
    buffer().put(node.id, seen)
    if buffer().due(settings().presence_flush_interval):
        flush_presence()


def steady_sign(node, moment: datetime) -> SignOfLife | None:
    """The sign of life a native request of an online ``node`` makes at ``moment``, to be
    kept with ``keep_sign``; None when note_sign_of_life would write (an edge, a flush due).

    ``node``: anything with the Node columns presence reads (a Core row will do). For the
    node fast lane (parent/node_lane.py), which must not write.
    """
    if node.presence != STATUS_ONLINE or buffer().due(settings().presence_flush_interval):
        return None
    seen, expires = _next_sign(node, buffer().get(node.id), moment,
                               settings().heartbeat_interval)
    return None if expires is not None and moment > expires else seen


def keep_sign(node_id: str, seen: SignOfLife) -> None:
    """Keep a sign of life ``steady_sign`` made, for the next batched write."""
    buffer().put(node_id, seen)


def flush_if_due() -> int:
    """Flush (and commit) when a sign of life or a kept pull has waited its interval; for the
    worker's background thread, so an idle worker's last requests are written too."""
    interval = settings().presence_flush_interval
    if not (buffer().due(interval) or unchanged_pulls.due(interval)):
        return 0
    flushed = flush_presence()
    db.session.commit()
    return flushed


def flush_presence() -> int:
    """Write this worker's pending signs of life in one batched UPDATE (in this transaction),
    and the unchanged pulls it logged meanwhile (services/unchanged_pulls.py).

    Guarded by the time seen, so a worker with an older view never moves a node back. If
    the transaction then rolls back, these signs are lost; each node's next request
    records it again, and its offline threshold still runs from its previous one.
    """
    unchanged_pulls.write_pending()  # and the unchanged pulls' log rows kept meanwhile
    synced = unchanged_pulls.take_synced()
    taken = buffer().take()
    table = cast(Table, Node.__table__)  # a mapped class's table (typed as FromClause)
    if taken and synced and db.session.get_bind().dialect.name == "postgresql":
        # Two UPDATEs would lock rows in two passes, and two workers flushing at once could
        # each hold a row the other's second pass waits for: lock them all first, in order.
        db.session.execute(select(table.c.id).where(table.c.id.in_(sorted({*taken, *synced})))
                           .order_by(table.c.id).with_for_update())
    unchanged_pulls.write_synced(synced)
    if not taken:
        return 0
    statement = (
        table.update()
        .where(table.c.id == bindparam("b_id"),
               or_(table.c.last_heartbeat_at.is_(None),
                   table.c.last_heartbeat_at < bindparam("b_seen_at")))
        .values(last_heartbeat_at=bindparam("b_seen_at"), offline_at=bindparam("b_offline_at"),
                cadence_seconds=bindparam("b_cadence"))
    )
    # In id order: two workers flushing overlapping nodes lock rows in the same order.
    db.session.execute(statement, [
        {"b_id": node_id, "b_seen_at": seen.seen_at, "b_offline_at": seen.offline_at,
         "b_cadence": seen.cadence} for node_id, seen in sorted(taken.items())])
    return len(taken)


def online_condition(moment: datetime):
    """SQL: the node is heard from recently enough to count as online at ``moment``."""
    cutoff = moment - timedelta(seconds=settings().offline_after_seconds)
    return or_(Node.offline_at >= moment,
               and_(Node.offline_at.is_(None), Node.last_heartbeat_at >= cutoff))


def offline_condition(moment: datetime):
    cutoff = moment - timedelta(seconds=settings().offline_after_seconds)
    return or_(Node.offline_at < moment,
               and_(Node.offline_at.is_(None),
                    or_(Node.last_heartbeat_at.is_(None), Node.last_heartbeat_at < cutoff)))


def offline_after_for(node: Node) -> int:
    """The threshold this node has earned, as the heartbeat answer reports it."""
    held = buffer().get(node.id)
    return threshold_seconds((held.cadence if held else node.cadence_seconds)
                             or _default_cadence())
