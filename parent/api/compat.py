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

# Built once (a Schema's __init__ deep-copies its fields; load keeps no per-call state
# on the instance, so threads share them): see parent/api/node_sync.py.
_CLAIM_TASK = ClaimTaskSchema()
_PENDING_QUERY = PendingTasksQuerySchema()
_TASK_STATUS = TaskStatusSchema()
_UPLOAD_ARTICLES = UploadArticlesSchema()
_REPORT_COMPLETION = ReportCompletionSchema()


@bp.post("/claim-task")
@describe("WeRSS: claim one task package (data null: no work)", body=ClaimTaskSchema,
          body_required=False, data=NULLABLE_OBJECT)
@node_required
@idempotent
def claim_task():
    load_body(_CLAIM_TASK, required=False)
    package = compat.claim_task(g.node)
    package = werss_shapes.task(package) if package else None
    # WeRSS children read "no work" as 200 with data null, never as 204.
    return respond(package, "认领任务成功" if package else NOTHING_TO_DO)


@bp.get("/pending-tasks")
@describe("WeRSS: the task package this node would get (data null: none)",
          query=PendingTasksQuerySchema, data=NULLABLE_OBJECT)
@node_required
def pending_tasks():
    load_query(_PENDING_QUERY)
    package = compat.pending_task(g.node)
    package = werss_shapes.task(package) if package else None
    return respond(package, "获取任务成功" if package else NOTHING_TO_DO)


@bp.put("/task-status")
@describe("WeRSS: report a task package's status", body=TaskStatusSchema, data=ANY,
          errors=(codes.NOT_FOUND, codes.FORBIDDEN, codes.LEASE_LOST))
@node_required
@idempotent
def task_status():
    values = load_body(_TASK_STATUS)
    return respond(compat.update_task_status(g.node, values), "状态更新成功")


@bp.post("/upload-articles")
@describe("WeRSS: upload a task package's articles", body=UploadArticlesSchema, data=ANY,
          errors=(codes.NOT_FOUND, codes.FORBIDDEN, codes.LEASE_LOST))
@node_required
@idempotent
def upload_articles():
    values = load_body(_UPLOAD_ARTICLES)
    return respond(compat.upload_articles(g.node, values), "文章数据上行成功")


@bp.post("/report-completion")
@describe("WeRSS: report a task package done", body=ReportCompletionSchema, data=ANY,
          errors=(codes.NOT_FOUND, codes.FORBIDDEN, codes.LEASE_LOST))
@node_required
@idempotent
def report_completion():
    values = load_body(_REPORT_COMPLETION)
    return respond(compat.report_completion(g.node, values), "任务完成上报成功")
