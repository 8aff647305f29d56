"""Admin views of the sync log and of reported task results."""

from flask import Blueprint

from ..auth import admin_required
from ..paging import page_body
from ..schemas import ReportQuerySchema, SyncLogQuerySchema
from ..services import node_sync, sync_logs
from .request_response import load_query, respond
from .dumps import ReportAdminSchema, SyncLogSchema
from ..openapi import describe, page_of

bp = Blueprint("sync_logs", __name__)


@bp.get("/sync-logs")
@describe("The sync log, newest first", query=SyncLogQuerySchema, data=page_of(SyncLogSchema))
@admin_required
def list_sync_logs():
    query = load_query(SyncLogQuerySchema())
    rows, total = sync_logs.list_sync_logs(query)
    return respond(page_body(SyncLogSchema().dump(rows, many=True), total, query))


@bp.get("/reports")
@describe("Task results nodes reported, newest first", query=ReportQuerySchema,
          data=page_of(ReportAdminSchema))
@admin_required
def list_reports():
    query = load_query(ReportQuerySchema())
    rows, total = node_sync.list_reports(query)
    return respond(page_body(ReportAdminSchema().dump(rows, many=True), total, query))
