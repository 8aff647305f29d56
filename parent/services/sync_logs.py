"""Writing and reading the sync log."""

from __future__ import annotations

from datetime import datetime, timedelta


from ..paging import fetch_page
from ..clock import now
from ..extensions import db, rowcount
from ..models import SyncLog
from .unchanged_pulls import write_pending


def log_sync(
    node_id: str | None,
    operation: str,
    direction: str,
    status: str,
    data_count: int = 0,
    error_message: str | None = None,
    started_at: datetime | None = None,
    finished_at: datetime | None = None,
) -> SyncLog:
    """Add one sync-log entry to the current transaction.

    Unchanged pulls this worker kept (services/unchanged_pulls.py) are written first, so
    the log's ids stay in the order things happened.
    """
    write_pending()
    finished = finished_at or now()
    entry = SyncLog(
        node_id=node_id, operation=operation, direction=direction, status=status,
        data_count=data_count, error_message=error_message,
        started_at=started_at or finished, finished_at=finished,
    )
    db.session.add(entry)
    return entry


def list_sync_logs(filters: dict) -> tuple[list[SyncLog], int]:
    """One page of the sync log, newest first (window in ``filters``), and the total."""
    write_pending()  # this worker's kept unchanged pulls, so a reader sees them
    conditions = []
    for name in ("node_id", "operation", "status"):
        if filters.get(name):
            conditions.append(getattr(SyncLog, name) == filters[name])
    return fetch_page(SyncLog, conditions, (SyncLog.id.desc(),), filters)


def prune_sync_logs(retention_days: int, moment: datetime | None = None) -> int:
    cutoff = (moment or now()) - timedelta(days=retention_days)
    return rowcount(db.session.execute(db.delete(SyncLog).where(SyncLog.finished_at < cutoff)))
