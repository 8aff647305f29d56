"""Admin CRUD of message tasks."""

from flask import Blueprint

from shared import errors as codes
from shared.schemas import MessageTaskSchema

from ..auth import admin_required
from ..paging import page_body
from ..schemas import (
    MessageTaskCreateSchema, MessageTaskListQuerySchema, MessageTaskPreviewSchema,
    MessageTaskUpdateSchema,
)
from ..services import message_tasks, previews, scheduling
from .request_response import load_body, load_query, respond
from ..openapi import DELETED, OBJECT, describe, page_of

bp = Blueprint("message_tasks", __name__)


# The task as nodes see it, plus when it runs next.
TASK = {"allOf": [MessageTaskSchema, {"type": "object", "properties": {
    "schedule_timezone": {"type": "string"},
    "next_run_at": {"type": ["string", "null"]},
    "next_run_local": {"type": ["string", "null"]},
}}]}


def _admin_view(task) -> dict:
    """The task as nodes see it, plus when it runs next (admins only: it moves with time)."""
    return {**message_tasks.task_to_wire(task), **scheduling.schedule_view(task)}


@bp.post("/message-tasks")
@describe("Create a message task", body=MessageTaskCreateSchema, data=TASK, status=201)
@admin_required
def create_task():
    task = message_tasks.create_task(load_body(MessageTaskCreateSchema()))
    return respond(_admin_view(task), "任务创建成功", status=201)


@bp.post("/message-tasks/preview")
@describe("Render a message as a task would push it, without sending",
          body=MessageTaskPreviewSchema, data=OBJECT, errors=(codes.NOT_FOUND,))
@admin_required
def preview_task():
    return respond(previews.preview_message(load_body(MessageTaskPreviewSchema())))


@bp.get("/message-tasks")
@describe("List message tasks, a page at a time", query=MessageTaskListQuerySchema,
          data=page_of(TASK))
@admin_required
def list_tasks():
    query = load_query(MessageTaskListQuerySchema())
    rows, total = message_tasks.list_tasks(query)
    return respond(page_body([_admin_view(t) for t in rows], total, query))


@bp.get("/message-tasks/<task_id>")
@describe("One message task, with when it runs next", data=TASK)
@admin_required
def get_task(task_id):
    return respond(_admin_view(message_tasks.get_task(task_id)))


@bp.put("/message-tasks/<task_id>")
@describe("Change a message task (fields given are changed)", body=MessageTaskUpdateSchema,
          data=TASK)
@admin_required
def update_task(task_id):
    task = message_tasks.update_task(task_id, load_body(MessageTaskUpdateSchema(partial=True)))
    return respond(_admin_view(task), "任务更新成功")


@bp.delete("/message-tasks/<task_id>")
@describe("Delete a message task", data=DELETED)
@admin_required
def delete_task(task_id):
    message_tasks.delete_task(task_id)
    return respond({"id": task_id, "deleted": True}, "任务删除成功")
