"""Full pulls in pages: keyset pages of feeds or enabled tasks, so neither side holds the list.

A paged pull is a full pull cut by id: page one carries the ETag and cursor of the whole
list (read before any row, as for an unpaged pull), and each page names the id the next
one starts after. A change racing the pages is at worst seen again by the next
incremental pull from that cursor, never missed. Memory per request is one page, whatever
the number of feeds.
"""

from __future__ import annotations

from sqlalchemy import func

from ..clock import now
from ..extensions import db
from ..models import Feed, MessageTask, Node
from ..models.replication import ENTITY_FEED
from ..models.sync_log import DIRECTION_PULL, STATUS_SUCCESS
from . import replication
from .feeds import feed_to_wire
from .message_tasks import STATUS_ENABLED, task_to_wire
from .node_sync import ETAG_NAME, OPERATION
from .sync_logs import log_sync
from .unchanged_pulls import note_unchanged_pull


class PageResult:
    def __init__(self, items: list[dict] | None, etag: str, cursor: int,
                 next_after: str | None = None, not_modified: bool = False):
        self.items = items
        self.etag = etag
        self.cursor = cursor
        self.next_after = next_after
        self.not_modified = not_modified


def _model_and_conditions(entity: str):
    if entity == ENTITY_FEED:
        return Feed, [], feed_to_wire
    return MessageTask, [MessageTask.status == STATUS_ENABLED], task_to_wire


def pull_page(node: Node, entity: str, if_none_match: str | None, after: str | None,
              limit: int) -> PageResult:
    """Return one page of the full list, or nothing (on page one) when the ETag matches.

    The pull is logged once, on its first page, with the size of the whole list.
    """
    started = now()
    cursor = replication.current_cursor(entity)
    etag = replication.etag_for(ETAG_NAME[entity], cursor)
    model, conditions, to_wire = _model_and_conditions(entity)
    first_page = after is None
    if first_page and replication.etag_matches(if_none_match, etag):
        note_unchanged_pull(node.id, OPERATION[entity], now(), started)
        return PageResult(None, etag, cursor, not_modified=True)
    where = list(conditions) + ([model.id > after] if after is not None else [])
    rows = list(db.session.execute(
        db.select(model).where(*where).order_by(model.id).limit(limit)).scalars())
    items = [to_wire(row) for row in rows]
    if first_page:
        total = db.session.execute(
            db.select(func.count()).select_from(model).where(*conditions)).scalar_one()
        node.last_sync_at = now()
        log_sync(node.id, OPERATION[entity], DIRECTION_PULL, STATUS_SUCCESS,
                 data_count=total, started_at=started)
    next_after = rows[-1].id if len(rows) == limit else None
    return PageResult(items, etag, cursor, next_after=next_after)


def changes_not_modified(node: Node, entity: str, since: int,
                         if_none_match: str | None) -> bool:
    """Tell (and log) whether an incremental pull from ``since`` has nothing to send.

    The child sends the ETag of its cursor; when that cursor is still the newest, the
    answer is a 304 after one indexed read.
    """
    if not if_none_match:
        return False
    started = now()
    cursor = replication.current_cursor(entity)
    if cursor != since or not replication.etag_matches(
            if_none_match, replication.etag_for(ETAG_NAME[entity], cursor)):
        return False
    note_unchanged_pull(node.id, OPERATION[entity], now(), started)
    return True


def changes_etag(entity: str, cursor: str | int) -> str:
    return replication.etag_for(ETAG_NAME[entity], int(cursor))
