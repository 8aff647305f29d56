"""Message tasks: CRUD and the wire shape children pull."""

from __future__ import annotations

from marshmallow import ValidationError
from sqlalchemy import bindparam, inspect

from shared.channels import DINGTALK, MESSAGE_TYPE_WEBHOOK, SIGNED_CHANNELS, effective_channel
from shared.schemas import MessageTaskSchema

from ..paging import fetch_page
from ..errors import NotFoundError
from ..extensions import db
from ..clock import now
from ..models import Allocation, MessageTask
from ..models.work import ALLOC_DEAD, ALLOC_PENDING
from ..models.replication import ENTITY_MESSAGE_TASK
from . import deliveries, replication

STATUS_ENABLED = 1
TASK_WIRE = MessageTaskSchema()
_TASK_COLUMNS = inspect(MessageTask).column_attrs


def _cancel_pending_work(task_id: str, reason: str) -> None:
    """Queued work of a task that no longer runs is dead; leases in hand may finish."""
    db.session.execute(
        db.update(Allocation)
        .where(Allocation.task_id == task_id, Allocation.status == ALLOC_PENDING)
        .values(status=ALLOC_DEAD, last_error=reason, updated_at=now())
        .execution_options(synchronize_session=False))


def task_to_wire(task: MessageTask) -> dict:
    """The task as nodes pull it: dumped by the contract's shared.schemas.MessageTaskSchema."""
    return TASK_WIRE.dump(task_values(task))


def task_values(task: MessageTask) -> dict:
    """Every column of the task, plus what the wire derives from them.

    The wire schema picks what it declares: ``channel`` is the channel in use, and of the
    write-only ``sign_secret`` a task list says only whether one is set.
    """
    values = {attr.key: getattr(task, attr.key) for attr in _TASK_COLUMNS}
    values.update(channel=task_channel(task), has_sign_secret=bool(task.sign_secret))
    return values


def task_channel(task: MessageTask) -> str:
    return effective_channel({"channel": task.channel, "message_type": task.message_type,
                              "web_hook_url": task.web_hook_url})


def _check_sign_secret(task: MessageTask) -> None:
    """A signing secret only makes sense on a channel that signs, in the vendor's form."""
    if task.sign_secret == "":
        task.sign_secret = None
    if not task.sign_secret:
        return
    channel = task_channel(task)
    if channel not in SIGNED_CHANNELS:
        raise ValidationError({"sign_secret": [
            f"Only {' and '.join(SIGNED_CHANNELS)} sign their pushes; this task's channel is "
            f"{channel} (set channel, or leave sign_secret out)."]})
    if channel == DINGTALK and not task.sign_secret.startswith("SEC"):
        raise ValidationError({"sign_secret": [
            "A DingTalk signing secret starts with SEC (the robot's 加签 setting)."]})


def create_task(values: dict) -> MessageTask:
    task = MessageTask(**values)
    _check_sign_secret(task)
    db.session.add(task)
    db.session.flush()
    deliveries.record_feed_joins(task, deliveries.task_feed_ids(task))
    replication.record_upserts(ENTITY_MESSAGE_TASK, [task.id])
    return task


def get_task(task_id: str) -> MessageTask:
    task = db.session.get(MessageTask, task_id)
    if task is None:
        raise NotFoundError("Message task", task_id)
    return task


def list_tasks(filters: dict) -> tuple[list[MessageTask], int]:
    """One page of message tasks (window in ``filters``) and the total."""
    conditions = []
    if filters.get("status") is not None:
        conditions.append(MessageTask.status == filters["status"])
    return fetch_page(MessageTask, conditions, (MessageTask.created_at, MessageTask.id), filters)


def enabled_tasks() -> list[MessageTask]:
    return list(db.session.execute(
        db.select(MessageTask).where(MessageTask.status == STATUS_ENABLED).order_by(MessageTask.id)
    ).scalars())


# Built once: every incremental pull with task changes reads them by id.
_ENABLED_TASKS_BY_ID = db.select(MessageTask).where(
    MessageTask.id.in_(bindparam("ids", expanding=True)), MessageTask.status == STATUS_ENABLED)


def enabled_tasks_by_ids(ids) -> list[MessageTask]:
    if not ids:
        return []
    return list(db.session.execute(_ENABLED_TASKS_BY_ID, {"ids": list(ids)}).scalars())


def update_task(task_id: str, values: dict) -> MessageTask:
    task = get_task(task_id)
    if values.get("message_type", task.message_type) == MESSAGE_TYPE_WEBHOOK and not values.get(
        "web_hook_url", task.web_hook_url
    ):
        raise ValidationError({"web_hook_url": ["Required for a webhook task (message_type 1)."]})
    feeds_before = deliveries.task_feed_ids(task)
    for name, value in values.items():
        setattr(task, name, value)
    deliveries.record_feed_joins(task, deliveries.task_feed_ids(task) - feeds_before)
    _check_sign_secret(task)
    if task.status != STATUS_ENABLED:
        _cancel_pending_work(task.id, "task disabled")
    db.session.flush()
    replication.record_upserts(ENTITY_MESSAGE_TASK, [task.id])
    return task


def delete_task(task_id: str) -> None:
    task = get_task(task_id)
    _cancel_pending_work(task.id, "task deleted")
    db.session.delete(task)
    db.session.flush()
    replication.record_deletes(ENTITY_MESSAGE_TASK, [task_id])
