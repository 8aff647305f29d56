"""Push each new article once across the cascade: delivery plans, reports, retries.

The exchange (docs/PROTOCOL.md, "Deliveries"): a child uploads what it collected, asks
``plan`` which of those articles its lease's task has not delivered, pushes exactly
those with the delivery's id as idempotency key, and reports the outcome through its
outbox. Whether an article was pushed is decided here, from ``pushed_articles``, whichever
child runs the allocation; a child's own cache is never the authority.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import func

from shared import errors as codes
from shared.channels import effective_channel
from shared.timeutil import parse_iso

from ..config import settings
from ..paging import fetch_page
from ..clock import now
from ..errors import ApiError, NotFoundError
from ..extensions import db, rowcount
from ..models import Allocation, Article, Feed, Lease, MessageTask, MetaValue, Node
from ..models.delivery import (
    DELIVERY_FAILED, DELIVERY_PENDING, DELIVERY_RETRYING, DELIVERY_SENT, Delivery,
    PushedArticle, TaskFeedStart,
)
from ..models.base import new_uuid
from ..models.work import ALLOC_LEASED
from .sqlutil import insert_ignoring_conflicts

MAX_RETRY_DELAY = 3600
# Written by migration 0006: a task that existed before the parent kept pushed state
# counts its feeds as joined then, not when the task was made.
STARTED_AT_KEY = "deliveries.started_at"


# -- when a feed joined a task ------------------------------------------------------------------
def record_feed_joins(task: MessageTask, feed_ids) -> None:
    """Remember now as the moment these feeds joined ``task`` (kept if already known)."""
    ids = sorted({str(f) for f in feed_ids if f})
    if not ids:
        return
    moment = now()
    db.session.execute(
        insert_ignoring_conflicts(TaskFeedStart, ["task_id", "feed_id"]),
        [{"task_id": task.id, "feed_id": feed_id, "joined_at": moment} for feed_id in ids])


def task_feed_ids(task: MessageTask) -> set[str]:
    return {str(ref.get("id")) for ref in (task.mps_id or []) if isinstance(ref, dict)}


def _start_of(task: MessageTask, feed: Feed) -> TaskFeedStart:
    """The (task, feed) start; a feed seen for the first time joined when both existed."""
    start = db.session.execute(db.select(TaskFeedStart).where(
        TaskFeedStart.task_id == task.id, TaskFeedStart.feed_id == feed.id)).scalars().first()
    if start is None:
        joined = max(task.created_at, feed.created_at)
        upgraded = db.session.get(MetaValue, STARTED_AT_KEY)
        if upgraded is not None:
            joined = max(joined, parse_iso(upgraded.value))
        db.session.execute(insert_ignoring_conflicts(TaskFeedStart, ["task_id", "feed_id"]), [{
            "task_id": task.id, "feed_id": feed.id, "joined_at": joined}])
        start = db.session.execute(db.select(TaskFeedStart).where(
            TaskFeedStart.task_id == task.id, TaskFeedStart.feed_id == feed.id)).scalars().one()
    return start


# -- destinations -------------------------------------------------------------------------------
def channel_of(task: MessageTask) -> str:
    """The task's channel: its own ``channel`` when it has one, else derived from the URL."""
    return effective_channel({"channel": task.channel, "message_type": task.message_type,
                              "web_hook_url": task.web_hook_url})


def redact_destination(url: str) -> str:
    """Scheme, host and path with every long segment (tokens live there) masked; no query."""
    try:
        parts = urlsplit((url or "").strip())
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
    except ValueError:
        return "(invalid URL)"
    if not host:
        return "(no URL)" if not url else "(invalid URL)"
    segments = ["***" if len(s) >= 8 and not s.isalpha() else s for s in parts.path.split("/")]
    return (f"{parts.scheme}://{host}{'/'.join(segments)}" + ("?***" if parts.query else ""))[:300]


# -- the plan -----------------------------------------------------------------------------------
def plan(node: Node, lease_id: str, feed_id: str, article_ids: list[str]) -> dict:
    """Return the deliveries this lease's child must push for one feed, reserving articles.

    Open deliveries of the task and feed that nobody is pushing any more (their lease
    ended without a report, or a retry is due) are handed over first with their own id
    and articles; then one new delivery holds the stored articles of ``article_ids``
    the task has neither pushed nor reserved, and that are news for the task.

    :raises ApiError: 404/403/409 as for the lease, 422 for a feed outside the lease.
    """
    from . import leasing  # leasing -> message_tasks -> this module

    feed_ids = leasing.lease_feed_ids(node, lease_id)
    if feed_id not in feed_ids:
        raise ApiError(codes.VALIDATION_FAILED, "This feed is not part of the lease.",
                       details={"feed_id": [f"not in this lease: {feed_id}"]})
    moment = now()
    # lease_feed_ids found the live lease; each row names the next by a foreign key.
    lease = db.session.get_one(Lease, lease_id)
    allocation = db.session.get_one(Allocation, lease.allocation_id)
    task = db.session.get(MessageTask, allocation.task_id)
    feed = db.session.get(Feed, feed_id)
    if task is None or feed is None or not (task.web_hook_url or "").strip():
        # Nothing to push to (a collect-only task): no deliveries, nothing reserved.
        return {"deliveries": [], "first_run": False}
    deliveries = _adopt_open(task, feed_id, node, lease, allocation, moment)

    start = _start_of(task, feed)
    first_run = start.first_planned_at is None
    fresh = _new_articles(task, feed_id, article_ids, start, first_run)
    if first_run:
        db.session.execute(db.update(TaskFeedStart).where(
            TaskFeedStart.id == start.id, TaskFeedStart.first_planned_at.is_(None))
            .values(first_planned_at=moment).execution_options(synchronize_session=False))
    if fresh:
        delivery_id = new_uuid()
        won = {row[0] for row in db.session.execute(
            insert_ignoring_conflicts(PushedArticle, ["task_id", "feed_id", "article_id"])
            .returning(PushedArticle.article_id),
            [{"task_id": task.id, "feed_id": feed_id, "article_id": article_id,
              "delivery_id": delivery_id, "created_at": moment} for article_id in fresh],
        ).all()}
        reserved = [article_id for article_id in fresh if article_id in won]
        if reserved:
            delivery = Delivery(
                id=delivery_id, task_id=task.id, run_id=allocation.run_id, feed_id=feed_id,
                allocation_id=allocation.id, lease_id=lease.id, node_id=node.id,
                channel=channel_of(task), destination=redact_destination(task.web_hook_url),
                article_ids=reserved, attempts=0, status=DELIVERY_PENDING,
                created_at=moment, updated_at=moment)
            db.session.add(delivery)
            deliveries.append(delivery)
    db.session.flush()
    return {"deliveries": _with_articles(deliveries, feed_id), "first_run": first_run}


def _adopt_open(task: MessageTask, feed_id: str, node: Node, lease: Lease,
                allocation: Allocation, moment: datetime) -> list[Delivery]:
    """Take over the task's open deliveries of this feed that no live lease is pushing."""
    open_rows = db.session.execute(db.select(Delivery).where(
        Delivery.task_id == task.id, Delivery.feed_id == feed_id,
        Delivery.status.in_((DELIVERY_PENDING, DELIVERY_RETRYING)),
    ).order_by(Delivery.created_at, Delivery.id)).scalars().all()
    if not open_rows:
        return []
    live = set(db.session.execute(db.select(Allocation.current_lease_id).where(
        Allocation.current_lease_id.in_({d.lease_id for d in open_rows if d.lease_id}),
        Allocation.status == ALLOC_LEASED, Allocation.lease_expires_at > moment)).scalars())
    adopted = []
    for delivery in open_rows:
        if delivery.lease_id == lease.id:
            adopted.append(delivery)  # asked again by the same lease: the same answer
            continue
        if delivery.status == DELIVERY_RETRYING:
            due = delivery.next_attempt_at is None or delivery.next_attempt_at <= moment
            if not due or delivery.lease_id in live:
                continue
        elif delivery.lease_id in live:
            continue
        same_holder = (Delivery.lease_id.is_(None) if delivery.lease_id is None
                       else Delivery.lease_id == delivery.lease_id)
        won = rowcount(db.session.execute(
            db.update(Delivery).where(Delivery.id == delivery.id, same_holder,
                                      Delivery.status == delivery.status)
            .values(lease_id=lease.id, node_id=node.id, allocation_id=allocation.id,
                    run_id=allocation.run_id, status=DELIVERY_PENDING, updated_at=moment)
            .execution_options(synchronize_session=False)))
        if won == 1:
            db.session.refresh(delivery)
            adopted.append(delivery)
    return adopted


def _new_articles(task: MessageTask, feed_id: str, article_ids: list[str],
                  start: TaskFeedStart, first_run: bool) -> list[str]:
    """The ids, in the child's order, of stored articles that are news for the task."""
    wanted = list(dict.fromkeys(str(a) for a in article_ids))
    if not wanted:
        return []
    stored = {row[0]: (row[1], row[2]) for row in db.session.execute(
        db.select(Article.article_id, Article.publish_time, Article.created_at)
        .where(Article.feed_id == feed_id, Article.article_id.in_(wanted))).all()}
    taken = set(db.session.execute(db.select(PushedArticle.article_id).where(
        PushedArticle.task_id == task.id, PushedArticle.feed_id == feed_id,
        PushedArticle.article_id.in_(wanted))).scalars())
    joined = start.joined_at.timestamp()
    news: list[tuple[float, str]] = []
    history: list[tuple[float, str]] = []
    for article_id in wanted:
        if article_id not in stored or article_id in taken:
            continue
        publish_time, created_at = stored[article_id]
        # An article without a publish time counts from when the cascade first stored it.
        published = publish_time or created_at.timestamp()
        (news if published >= joined else history).append((published, article_id))
    chosen = {article_id for _, article_id in news}
    if first_run and task.push_newest:
        chosen.update(a for _, a in sorted(history, reverse=True)[:task.push_newest])
    return [article_id for article_id in wanted if article_id in chosen]


def _with_articles(deliveries: list[Delivery], feed_id: str) -> list[dict]:
    ids = {a for d in deliveries for a in d.article_ids}
    by_id = {}
    if ids:
        by_id = {row.article_id: row for row in db.session.execute(db.select(Article).where(
            Article.feed_id == feed_id, Article.article_id.in_(ids))).scalars()}
    payloads = []
    for delivery in deliveries:
        articles = []
        for article_id in delivery.article_ids:
            row = by_id.get(article_id)
            if row is not None:
                articles.append({"id": row.article_id, "mp_id": row.feed_id, "title": row.title,
                                 "url": row.url, "pic_url": row.pic_url,
                                 "description": row.description,
                                 "publish_time": row.publish_time})
        payloads.append({"delivery_id": delivery.id, "article_ids": list(delivery.article_ids),
                         "attempts": delivery.attempts, "status": delivery.status,
                         "articles": articles})
    return payloads


# -- outcomes -----------------------------------------------------------------------------------
def report(node: Node, delivery_id: str, values: dict) -> Delivery:
    """Record what a push did; ``sent`` marks its articles pushed for the task.

    :raises ApiError: 404 unknown delivery; 409 when another lease has taken it over.
    """
    delivery = db.session.get(Delivery, delivery_id)
    if delivery is None:
        raise NotFoundError("Delivery", delivery_id)
    moment = now()
    if delivery.status == DELIVERY_SENT:
        return delivery
    if values["status"] != DELIVERY_SENT and (
            delivery.node_id != node.id or delivery.status != DELIVERY_PENDING):
        # A late report from a child that lost the delivery to another lease.
        raise ApiError(codes.CONFLICT, "Another child is pushing this delivery now.",
                       details={"delivery_id": delivery_id, "status": delivery.status})
    if delivery.node_id != node.id:
        # Sent is sent, whoever says so; a node that never held a lease of this task
        # has no say.
        held = db.session.execute(db.select(Lease.id).join(
            Allocation, Allocation.id == Lease.allocation_id).where(
            Lease.node_id == node.id, Allocation.task_id == delivery.task_id).limit(1)).first()
        if held is None:
            raise ApiError(codes.FORBIDDEN, "This delivery belongs to another node.")
    delivery.attempts += values["attempts"]
    delivery.vendor_code = values["vendor_code"]
    delivery.vendor_message = (values["vendor_message"] or None) and values["vendor_message"][:1000]
    if values["status"] == DELIVERY_SENT:
        delivery.status, delivery.sent_at, delivery.next_attempt_at = DELIVERY_SENT, moment, None
        db.session.execute(db.update(PushedArticle).where(
            PushedArticle.delivery_id == delivery.id, PushedArticle.pushed_at.is_(None))
            .values(pushed_at=moment).execution_options(synchronize_session=False))
    elif not values["retryable"] or delivery.attempts >= settings().delivery_max_attempts:
        delivery.status, delivery.next_attempt_at = DELIVERY_FAILED, None
    else:
        backoff = min(MAX_RETRY_DELAY,
                      settings().delivery_retry_backoff * 2 ** max(0, delivery.attempts - 1))
        wait = max(backoff, values["retry_after"] or 0)
        delivery.status = DELIVERY_RETRYING
        delivery.next_attempt_at = moment + timedelta(seconds=min(wait, MAX_RETRY_DELAY))
    delivery.updated_at = moment
    db.session.flush()
    return delivery


def retry(delivery_id: str) -> Delivery:
    """Make a failed (or waiting) delivery due now, with a fresh set of attempts.

    :raises ApiError: 404 unknown; 409 when it was sent or is being pushed.
    """
    delivery = db.session.get(Delivery, delivery_id)
    if delivery is None:
        raise NotFoundError("Delivery", delivery_id)
    if delivery.status not in (DELIVERY_FAILED, DELIVERY_RETRYING):
        raise ApiError(codes.CONFLICT, f"A {delivery.status} delivery cannot be retried.",
                       details={"status": delivery.status})
    moment = now()
    won = rowcount(db.session.execute(db.update(Delivery).where(
        Delivery.id == delivery.id, Delivery.status == delivery.status)
        .values(status=DELIVERY_RETRYING, attempts=0, next_attempt_at=moment, updated_at=moment)
        .execution_options(synchronize_session=False)))
    if won != 1:
        raise ApiError(codes.CONFLICT, "The delivery changed meanwhile; look again.")
    db.session.refresh(delivery)
    return delivery


# -- admin views --------------------------------------------------------------------------------
def list_deliveries(filters: dict) -> tuple[list[Delivery], int]:
    """One page of deliveries, newest first (window in ``filters``), and the total."""
    conditions = []
    for name in ("task_id", "feed_id", "status"):
        if filters.get(name):
            conditions.append(getattr(Delivery, name) == filters[name])
    return fetch_page(Delivery, conditions, (Delivery.created_at.desc(), Delivery.id.desc()),
                      filters)


def counts_by_status() -> dict[str, int]:
    return dict(db.session.execute(
        db.select(Delivery.status, func.count()).group_by(Delivery.status)).tuples().all())
