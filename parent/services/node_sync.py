"""What nodes pull (feeds, message tasks, their changes) and push (report-result)."""

from __future__ import annotations


from shared.schemas import FeedChangesSchema, MessageTaskChangesSchema
from shared.timeutil import isoformat_z

from ..paging import fetch_page
from ..clock import now
from ..extensions import db
from ..models import MessageTask, Node, TaskReport
from ..models.replication import ENTITY_FEED, ENTITY_MESSAGE_TASK, OP_UPSERT
from ..models.sync_log import (
    DIRECTION_PULL, DIRECTION_PUSH, OP_REPORT_RESULT, OP_SYNC_FEEDS, OP_SYNC_TASKS,
    STATUS_NOT_MODIFIED, STATUS_SUCCESS,
)
from . import replication
from .feeds import all_feeds, feed_to_wire, feeds_by_ids
from .message_tasks import enabled_tasks, enabled_tasks_by_ids, task_to_wire, task_values
from .sync_logs import log_sync
from .unchanged_pulls import note_unchanged_pull

OPERATION = {ENTITY_FEED: OP_SYNC_FEEDS, ENTITY_MESSAGE_TASK: OP_SYNC_TASKS}
ETAG_NAME = {ENTITY_FEED: "feeds", ENTITY_MESSAGE_TASK: "message-tasks"}
_CHANGES_WIRE = {ENTITY_FEED: FeedChangesSchema(), ENTITY_MESSAGE_TASK: MessageTaskChangesSchema()}


class PullResult:
    """A full list; or None when the client's ETag is current (not_modified) or when the
    caller's cached copy for this cursor is still exact (reuse_cached)."""

    def __init__(self, items: list[dict] | None, etag: str, cursor: int,
                 not_modified: bool = False, reuse_cached: bool = False):
        self.items = items
        self.etag = etag
        self.cursor = cursor
        self.not_modified = not_modified
        self.reuse_cached = reuse_cached


def _log_pull(node: Node, entity: str, status: str, count: int, started) -> None:
    if status == STATUS_NOT_MODIFIED:
        note_unchanged_pull(node.id, OPERATION[entity], now(), started)
        return
    node.last_sync_at = now()
    log_sync(node.id, OPERATION[entity], DIRECTION_PULL, status, data_count=count,
             started_at=started)


def pull_all(node: Node, entity: str, if_none_match: str | None,
             cached: tuple[int, int] | None = None) -> PullResult:
    """Return every feed (or enabled task), or nothing when the ETag matches.

    ``cached`` is (cursor, item count) of a full list the caller already holds: when the
    cursor is unchanged that list is still exact, and no row is read.

    The cursor is read before the rows, so a change racing the read is at worst seen
    twice by the next incremental pull, never missed.
    """
    started = now()
    cursor = replication.current_cursor(entity)
    etag = replication.etag_for(ETAG_NAME[entity], cursor)
    if replication.etag_matches(if_none_match, etag):
        _log_pull(node, entity, STATUS_NOT_MODIFIED, 0, started)
        return PullResult(None, etag, cursor, not_modified=True)
    if cached and cached[0] == cursor:
        _log_pull(node, entity, STATUS_SUCCESS, cached[1], started)
        return PullResult(None, etag, cursor, reuse_cached=True)
    if entity == ENTITY_FEED:
        items = [feed_to_wire(feed) for feed in all_feeds()]
    else:
        items = [task_to_wire(task) for task in enabled_tasks()]
    _log_pull(node, entity, STATUS_SUCCESS, len(items), started)
    return PullResult(items, etag, cursor)


def pull_changes(node: Node, entity: str, since: int, limit: int) -> dict:
    """Return {items, deleted, cursor, has_more} for changes after ``since``."""
    started = now()
    latest, cursor, has_more = replication.read_changes(entity, since, limit)
    upserted = [entity_id for entity_id, op in latest.items() if op == OP_UPSERT]
    items: list  # Feed rows, or task values: what the entity's changes schema dumps
    if entity == ENTITY_FEED:
        feeds = sorted(feeds_by_ids(upserted), key=lambda f: f.id)
        items = feeds
        present = {feed.id for feed in feeds}
    else:
        tasks = sorted(enabled_tasks_by_ids(upserted), key=lambda t: t.id)
        items = [task_values(task) for task in tasks]
        present = {task.id for task in tasks}
    # Deleted, or (for tasks) disabled: either way the child should drop it.
    deleted = sorted(entity_id for entity_id in latest if entity_id not in present)
    _log_pull(node, entity, STATUS_SUCCESS, len(items) + len(deleted), started)
    return _CHANGES_WIRE[entity].dump({"items": items, "deleted": deleted, "cursor": str(cursor),
                                       "has_more": has_more})


def _json_results(results: list[dict]) -> list[dict]:
    return [
        {**item, "timestamp": isoformat_z(item.get("timestamp"))} for item in results
    ]


def store_report(node: Node, payload: dict) -> dict:
    """Store a seed-style task report and log it."""
    moment = now()
    report = TaskReport(
        node_id=node.id,
        task_id=payload["task_id"],
        allocation_id=payload.get("allocation_id"),
        results=_json_results(payload["results"]),
        reported_at=payload.get("timestamp"),
        received_at=moment,
    )
    db.session.add(report)
    node.last_sync_at = moment
    log_sync(node.id, OP_REPORT_RESULT, DIRECTION_PUSH, STATUS_SUCCESS,
             data_count=len(payload["results"]), started_at=moment)
    db.session.flush()
    task_known = db.session.get(MessageTask, payload["task_id"]) is not None
    return {
        "report_id": report.id,
        "task_id": report.task_id,
        "received": len(payload["results"]),
        "task_known": task_known,
        "received_at": isoformat_z(moment),
    }


def list_reports(filters: dict) -> tuple[list[TaskReport], int]:
    """One page of reports, newest first (window in ``filters``), and the total."""
    conditions = []
    for name in ("node_id", "task_id"):
        if filters.get(name):
            conditions.append(getattr(TaskReport, name) == filters[name])
    return fetch_page(TaskReport, conditions, (TaskReport.id.desc(),), filters)
