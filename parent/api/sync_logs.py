"""Admin views of the sync log and of reported task results."""

from flask import Blueprint

from shared.timeutil import isoformat_z

from ..auth import admin_required
from ..paging import page_body
from ..schemas import ReportQuerySchema, SyncLogQuerySchema
from ..services import node_sync, sync_logs
from ._io import load_query, respond

bp = Blueprint("sync_logs", __name__)


def _log_to_dict(entry) -> dict:
    return {
        "id": entry.id,
        "node_id": entry.node_id,
        "operation": entry.operation,
        "direction": entry.direction,
        "status": entry.status,
        "data_count": entry.data_count,
        "error_message": entry.error_message,
        "started_at": isoformat_z(entry.started_at),
        "finished_at": isoformat_z(entry.finished_at),
    }


@bp.get("/sync-logs")
@admin_required
def list_sync_logs():
    query = load_query(SyncLogQuerySchema())
    rows, total = sync_logs.list_sync_logs(query, query["limit"], query["offset"])
    return respond(page_body([_log_to_dict(r) for r in rows], total, query))


@bp.get("/reports")
@admin_required
def list_reports():
    query = load_query(ReportQuerySchema())
    rows, total = node_sync.list_reports(query, query["limit"], query["offset"])
    return respond(page_body([node_sync.report_to_dict(r) for r in rows], total, query))
