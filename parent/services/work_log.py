"""Sync-log entries for the results nodes send when they complete a lease."""

from __future__ import annotations

from datetime import datetime

from ..models.sync_log import DIRECTION_PUSH, OP_REPORT_RESULT, STATUS_FAILED, STATUS_SUCCESS
from .sync_logs import log_sync


def log_lease_results(node_id: str, results: list[dict], moment: datetime) -> None:
    """Log a completed lease as the node's report, failed when any feed failed.

    Admins find a run's pushes in the sync log this way, as they do for the seed's
    POST /report-result.
    """
    errors = [str(r.get("error") or "failed") for r in results if not r.get("success", True)]
    log_sync(node_id, OP_REPORT_RESULT, DIRECTION_PUSH,
             STATUS_FAILED if errors else STATUS_SUCCESS, data_count=len(results),
             error_message="; ".join(errors)[:2000] if errors else None,
             started_at=moment, finished_at=moment)
