"""Unchanged (304) pulls are logged in aggregate, and written later, in a batch.

A fleet polling with If-None-Match would otherwise write a sync-log row and update the
node on every poll, making each 304 a write transaction as costly as a change. The first
unchanged pull of a window is logged (and sets ``last_sync_at``); the others in the same
window, in the same worker, log nothing. Each worker keeps its own marks, so with W
workers a window holds at most W such rows per node and table.

Even that first row is not written by the pull: it is kept in this worker's memory and
written with presence's batched flush (services/presence.py), in one multi-row INSERT,
and ``last_sync_at`` in the same pass over node rows as the signs of life, within
``presence_flush_interval`` seconds. A sync-log row written by the app first inserts the
kept rows, so the log's order (by id) stays the order of the pulls within a worker; an
admin reading nodes or the log flushes first. A steady fleet's syncs therefore write
nothing but a signed request's nonce. If the worker dies before its flush, those rows (a
record that nothing changed) are lost, as its unwritten signs of life are.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from typing import cast

from flask import current_app
from sqlalchemy import Table, bindparam, insert, or_

from ..extensions import db
from ..models import Node, SyncLog
from ..models.sync_log import DIRECTION_PULL, STATUS_NOT_MODIFIED

WINDOW = timedelta(seconds=60)
_MAX_MARKS = 100_000  # forget every mark rather than grow without bound

_NODES = cast(Table, Node.__table__)
_LOGS = cast(Table, SyncLog.__table__)
_INSERT = insert(_LOGS)
_SYNCED = (_NODES.update()
           .where(_NODES.c.id == bindparam("b_id"),
                  or_(_NODES.c.last_sync_at.is_(None),
                      _NODES.c.last_sync_at < bindparam("b_at")))
           .values(last_sync_at=bindparam("b_at")))


class _Pending:
    def __init__(self):
        self.lock = threading.Lock()
        self.logged: dict[tuple[str, str], datetime] = {}  # (node, operation) -> window start
        self.rows: list[dict] = []  # sync-log rows not yet written
        self.synced: dict[str, datetime] = {}  # node -> last_sync_at not yet written
        self.oldest: float | None = None  # time.monotonic() when the oldest was kept


def _pending() -> _Pending:
    extensions = current_app.extensions
    held = extensions.get("werss.unchanged_pulls")
    if held is None:
        held = extensions.setdefault("werss.unchanged_pulls", _Pending())
    return held


def note_unchanged_pull(node_id: str, operation: str, moment: datetime,
                        started: datetime) -> bool:
    """Keep a 304 pull's log row unless this worker kept one for this node and table
    within WINDOW; it is written by the next ``write_pending``. Writes nothing itself."""
    pending = _pending()
    key = (node_id, operation)
    with pending.lock:
        last = pending.logged.get(key)
        if last is not None and last <= moment < last + WINDOW:
            return False
        if len(pending.logged) >= _MAX_MARKS:
            pending.logged.clear()
        pending.logged[key] = moment
        if not pending.rows and not pending.synced:
            pending.oldest = time.monotonic()
        pending.synced[node_id] = max(pending.synced.get(node_id, moment), moment)
        pending.rows.append({
            "node_id": node_id, "operation": operation, "direction": DIRECTION_PULL,
            "status": STATUS_NOT_MODIFIED, "data_count": 0, "error_message": None,
            "started_at": started, "finished_at": moment})
    return True


def due(interval: float) -> bool:
    """Whether a kept row has waited ``interval`` seconds (checked without a lock)."""
    oldest = _pending().oldest
    return oldest is not None and time.monotonic() - oldest >= interval


def write_pending() -> int:
    """Insert the kept sync-log rows in this transaction (an INSERT: no node row locked).

    If the transaction rolls back, these rows are lost.
    """
    pending = _pending()
    if not pending.rows:  # read without the lock: a row added meanwhile waits for the next
        return 0
    with pending.lock:
        rows, pending.rows = pending.rows, []
        if not pending.synced:
            pending.oldest = None
    if rows:
        db.session.execute(_INSERT, rows)
    return len(rows)


def take_synced() -> dict[str, datetime]:
    """The kept ``last_sync_at`` per node, for presence's flush to write (and forget)."""
    pending = _pending()
    if not pending.synced:
        return {}
    with pending.lock:
        synced, pending.synced = pending.synced, {}
        if not pending.rows:
            pending.oldest = None
    return synced


def write_synced(synced: dict[str, datetime]) -> None:
    """Write ``take_synced``'s times, in id order; guarded by time, so a worker never moves
    a node's ``last_sync_at`` back past a pull another worker logged later."""
    if synced:
        db.session.execute(_SYNCED, [{"b_id": node_id, "b_at": at}
                                     for node_id, at in sorted(synced.items())])
