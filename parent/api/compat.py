"""The task-dispatch routes existing WeRSS nodes call, answered on our lease model.

Shapes and messages follow we-mp-rss's apis/cascade.py; docs/COMPAT.md maps each route.
"""

from flask import Blueprint, g

from shared.compat_schemas import (
    ClaimTaskSchema, PendingTasksQuerySchema, ReportCompletionSchema, TaskStatusSchema,
    UploadArticlesSchema,
)
from shared import errors as codes

from ..auth import node_required
from ..services import compat
from . import werss_shapes
from .request_response import idempotent, load_body, load_query, respond
from ..openapi import ANY, NULLABLE_OBJECT, describe

bp = Blueprint("compat", __name__)

NOTHING_TO_DO = "暂无待处理任务"


@bp.post("/claim-task")
@describe("WeRSS: claim one task package (data null: no work)", body=ClaimTaskSchema,
          body_required=False, data=NULLABLE_OBJECT)
@node_required
@idempotent
def claim_task():
    load_body(ClaimTaskSchema(), required=False)
    package = compat.claim_task(g.node)
    package = werss_shapes.task(package) if package else None
    # WeRSS children read "no work" as 200 with data null, never as 204.
    return respond(package, "认领任务成功" if package else NOTHING_TO_DO)


@bp.get("/pending-tasks")
@describe("WeRSS: the task package this node would get (data null: none)",
          query=PendingTasksQuerySchema, data=NULLABLE_OBJECT)
@node_required
def pending_tasks():
    load_query(PendingTasksQuerySchema())
    package = compat.pending_task(g.node)
    package = werss_shapes.task(package) if package else None
    return respond(package, "获取任务成功" if package else NOTHING_TO_DO)


@bp.put("/task-status")
@describe("WeRSS: report a task package's status", body=TaskStatusSchema, data=ANY,
          errors=(codes.NOT_FOUND, codes.FORBIDDEN, codes.LEASE_LOST))
@node_required
@idempotent
def task_status():
    values = load_body(TaskStatusSchema())
    return respond(compat.update_task_status(g.node, values), "状态更新成功")


@bp.post("/upload-articles")
@describe("WeRSS: upload a task package's articles", body=UploadArticlesSchema, data=ANY,
          errors=(codes.NOT_FOUND, codes.FORBIDDEN, codes.LEASE_LOST))
@node_required
@idempotent
def upload_articles():
    values = load_body(UploadArticlesSchema())
    return respond(compat.upload_articles(g.node, values), "文章数据上行成功")


@bp.post("/report-completion")
@describe("WeRSS: report a task package done", body=ReportCompletionSchema, data=ANY,
          errors=(codes.NOT_FOUND, codes.FORBIDDEN, codes.LEASE_LOST))
@node_required
@idempotent
def report_completion():
    values = load_body(ReportCompletionSchema())
    return respond(compat.report_completion(g.node, values), "任务完成上报成功")
