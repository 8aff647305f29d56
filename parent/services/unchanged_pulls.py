"""Unchanged (304) pulls are logged in aggregate: one sync-log row per node, table and window.

A fleet polling with If-None-Match would otherwise write a sync-log row and update the
node on every poll, making each 304 a write transaction as costly as a change. The first
unchanged pull of a window is logged (and sets ``last_sync_at``); the others in the same
window, in the same worker, write nothing. Each worker keeps its own marks, so with W
workers a window holds at most W such rows per node and table.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from flask import current_app

from ..models import Node
from ..models.sync_log import DIRECTION_PULL, STATUS_NOT_MODIFIED
from .sync_logs import log_sync

WINDOW = timedelta(seconds=60)
_MAX_MARKS = 100_000  # forget everything rather than grow without bound


class _Marks:
    def __init__(self):
        self.lock = threading.Lock()
        self.logged: dict[tuple[str, str], datetime] = {}


def _marks() -> _Marks:
    return current_app.extensions.setdefault("werss.unchanged_pulls", _Marks())


def log_unchanged_pull(node: Node, operation: str, moment: datetime,
                       started: datetime) -> bool:
    """Log a 304 pull unless this worker logged one for this node and table within WINDOW."""
    marks = _marks()
    key = (node.id, operation)
    with marks.lock:
        last = marks.logged.get(key)
        if last is not None and last <= moment < last + WINDOW:
            return False
        if len(marks.logged) >= _MAX_MARKS:
            marks.logged.clear()
        marks.logged[key] = moment
    node.last_sync_at = moment
    log_sync(node.id, operation, DIRECTION_PULL, STATUS_NOT_MODIFIED, data_count=0,
             started_at=started)
    return True
