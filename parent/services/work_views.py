"""Read-only admin views of work distribution: allocations, feed freshness, totals."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import func

from shared.timeutil import from_unix, isoformat_z

from ..config import settings
from ..clock import now
from ..extensions import db
from ..models import Allocation, Article, Feed, Lease, Node
from . import presence
from ..models.work import ALLOC_COMPLETED, ALLOC_DEAD, ALLOC_LEASED, ALLOC_PENDING, LEASE_FAILED
from ..paging import fetch_page

FRESHNESS = ((3600, "fresh"), (86400, "recent"), (3 * 86400, "stale"))


def list_allocations(filters: dict) -> tuple[list[Allocation], int]:
    """One page of allocations, newest first (window in ``filters``), and the total."""
    conditions = []
    for name, column in (("status", Allocation.status), ("task_id", Allocation.task_id),
                         ("node_id", Allocation.leased_to), ("run_id", Allocation.run_id)):
        if filters.get(name):
            conditions.append(column == filters[name])
    return fetch_page(Allocation, conditions, (Allocation.created_at.desc(), Allocation.id),
                      filters)


def freshness(sync_time: int | None, moment: datetime) -> str:
    """How recently a feed was last collected successfully."""
    if not sync_time:
        return "never"
    age = moment.timestamp() - sync_time
    for limit, name in FRESHNESS:
        if age < limit:
            return name
    return "outdated"


def feed_status(filters: dict) -> tuple[list[dict], int]:
    moment = now()
    feeds = db.session.execute(db.select(Feed).order_by(Feed.sync_time, Feed.id)).scalars().all()
    rows = [(feed, freshness(feed.sync_time, moment)) for feed in feeds]
    if filters.get("freshness"):
        rows = [row for row in rows if row[1] == filters["freshness"]]
    total = len(rows)
    # Freshness is worked out per feed, so this list is filtered and cut in Python.
    rows = rows[filters["offset"]:filters["offset"] + filters["limit"]]
    ids = [feed.id for feed, _ in rows]
    counts = dict(db.session.execute(
        db.select(Article.feed_id, func.count()).where(Article.feed_id.in_(ids))
        .group_by(Article.feed_id)).tuples().all()) if ids else {}
    latest = dict(db.session.execute(
        db.select(Article.feed_id, func.max(Article.publish_time)).where(Article.feed_id.in_(ids))
        .group_by(Article.feed_id)).tuples().all()) if ids else {}
    items = []
    for feed, fresh in rows:
        latest_time = latest.get(feed.id)
        items.append({
            "feed_id": feed.id,
            "mp_name": feed.mp_name,
            "source_type": feed.source_type,
            "status": feed.status,
            "article_count": counts.get(feed.id, 0),
            "latest_article_time": isoformat_z(from_unix(latest_time)) if latest_time else None,
            "last_collected_at": isoformat_z(from_unix(feed.sync_time)) if feed.sync_time else None,
            "freshness": fresh,
            "last_run_at": isoformat_z(feed.last_run_at),
            "last_run_node_id": feed.last_run_node_id,
            "last_run_status": feed.last_run_status,
            "last_run_error": feed.last_run_error,
        })
    return items, total


def stats() -> dict:
    moment = now()
    tz = ZoneInfo(settings().schedule_timezone)
    local = moment.astimezone(tz)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    by_status = dict(db.session.execute(
        db.select(Allocation.status, func.count()).group_by(Allocation.status)).tuples().all())
    completed_today = db.session.execute(
        db.select(func.count()).select_from(Allocation)
        .where(Allocation.status == ALLOC_COMPLETED, Allocation.completed_at >= midnight)
    ).scalar_one()
    failed_today = db.session.execute(
        db.select(func.count()).select_from(Lease)
        .where(Lease.status == LEASE_FAILED, Lease.ended_at >= midnight)).scalar_one()
    online = db.session.execute(
        db.select(func.count()).select_from(Node).where(
            Node.deleted_at.is_(None), Node.is_active.is_(True),
            presence.online_condition(moment))
    ).scalar_one()
    return {
        "pending": by_status.get(ALLOC_PENDING, 0),
        "leased": by_status.get(ALLOC_LEASED, 0),
        "completed_today": completed_today,
        "failed_today": failed_today,
        "dead": by_status.get(ALLOC_DEAD, 0),
        "nodes_online": online,
        "day_started_at": isoformat_z(midnight),
    }
