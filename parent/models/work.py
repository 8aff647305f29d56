"""Work distribution: runs of message tasks, their allocations, the leases on them."""

from datetime import datetime

from sqlalchemy import (JSON, Boolean, Index, Integer, String, Text, UniqueConstraint,
                        literal_column, text)
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import Model, db
from .base import BigIntPK, TimestampMixin, UTCDateTime, new_uuid

TRIGGER_CRON = "cron"
TRIGGER_MANUAL = "manual"

ALLOC_PENDING = "pending"
ALLOC_LEASED = "leased"
ALLOC_COMPLETED = "completed"
ALLOC_DEAD = "dead"
ALLOCATION_STATUSES = (ALLOC_PENDING, ALLOC_LEASED, ALLOC_COMPLETED, ALLOC_DEAD)

LEASE_ACTIVE = "active"
LEASE_COMPLETED = "completed"
LEASE_FAILED = "failed"
LEASE_RATE_LIMITED = "rate_limited"
LEASE_EXPIRED = "expired"
LEASE_RELEASED = "released"


class TaskRun(Model):
    """One due slot of a message task (or one manual dispatch); unique per task and slot."""

    __tablename__ = "task_runs"
    __table_args__ = (UniqueConstraint("task_id", "slot", name="uq_task_runs_task_id_slot"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    task_id: Mapped[str] = mapped_column(String(36), index=True)
    slot: Mapped[datetime] = mapped_column(UTCDateTime)
    trigger: Mapped[str] = mapped_column(String(8), default=TRIGGER_CRON)
    allocation_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Allocation(TimestampMixin, Model):
    """A slice of a run (feeds_per_allocation feeds) that one node collects under a lease."""

    __tablename__ = "allocations"
    # Partial indexes: the claim reads pending rows in exactly this order, and expiry scans
    # only leased rows. (A full index on status first let PostgreSQL, before ANALYZE,
    # pick the expiry index and sort every pending row on each claim.)
    __table_args__ = (
        Index("ix_allocations_pending_order", "priority", "created_at", "id",
              postgresql_where=text("status = 'pending'"), sqlite_where=text("status = 'pending'")),
        Index("ix_allocations_leased_expiry", "lease_expires_at",
              postgresql_where=text("status = 'leased'"), sqlite_where=text("status = 'leased'")),
        Index("ix_allocations_leased_to_status", "leased_to", "status"),
        # What a node holds (a claim's capacity count, releases, send budgets): only leased
        # rows, so the count reads the node's own and never every lease in the fleet.
        Index("ix_allocations_held_by", "leased_to",
              postgresql_where=text("status = 'leased'"), sqlite_where=text("status = 'leased'")),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    run_id: Mapped[str] = mapped_column(String(36), index=True)
    task_id: Mapped[str] = mapped_column(String(36), index=True)
    feed_ids: Mapped[list] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(10), default=ALLOC_PENDING)
    # Least recently collected first: the oldest sync_time among its feeds at creation.
    priority: Mapped[int] = mapped_column(db.BigInteger, default=0)
    labels: Mapped[list] = mapped_column(JSON, default=list)
    # The labels sorted and comma-joined: a node matches when this is one of the subsets
    # of its own labels, which keeps routing inside the indexed claim query.
    label_key: Mapped[str] = mapped_column(String(2100), default="")
    needs_wechat: Mapped[bool] = mapped_column(Boolean, default=False)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime)
    current_lease_id: Mapped[str | None] = mapped_column(String(36), unique=True)
    leased_to: Mapped[str | None] = mapped_column(String(36))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    results: Mapped[list | None] = mapped_column(JSON)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


def status_literal(status: str):
    """An allocation status written into the SQL, not bound: ``status == status_literal(...)``.

    Use it where a query should use a partial index above (pending order, leased expiry).
    psycopg prepares a statement run often, and PostgreSQL may then reuse one generic
    plan, made without the parameters' values: with the status bound, that plan cannot
    use an index defined for ``status = 'pending'`` (it would read and sort every pending
    row), so PostgreSQL planned each claim afresh instead, ~0.5 ms of its CPU for a
    0.02–0.2 ms read. (SQLite re-plans a statement when a bound value decides that.)
    """
    if status not in (ALLOC_PENDING, ALLOC_LEASED, ALLOC_COMPLETED, ALLOC_DEAD):
        raise ValueError(f"not an allocation status: {status!r}")
    return literal_column(f"'{status}'")


class Lease(Model):
    """The history of every lease handed out, for ownership checks and admins."""

    __tablename__ = "leases"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    allocation_id: Mapped[str] = mapped_column(String(36), index=True)
    node_id: Mapped[str] = mapped_column(String(36), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default=LEASE_ACTIVE)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)


class Article(TimestampMixin, Model):
    """A collected article, deduplicated per (feed, article id) across children."""

    __tablename__ = "articles"
    __table_args__ = (
        UniqueConstraint("feed_id", "article_id", name="uq_articles_feed_id_article_id"),
        Index("ix_articles_feed_id_publish_time", "feed_id", "publish_time"),
        Index("ix_articles_publish_time", "publish_time"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    feed_id: Mapped[str] = mapped_column(String(64))
    article_id: Mapped[str] = mapped_column(String(255))
    title: Mapped[str] = mapped_column(String(1000), default="")
    url: Mapped[str] = mapped_column(String(2000), default="")
    pic_url: Mapped[str] = mapped_column(String(2000), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    content: Mapped[str | None] = mapped_column(Text)
    publish_time: Mapped[int] = mapped_column(db.BigInteger, default=0)
    node_id: Mapped[str | None] = mapped_column(String(36))
    # WeRSS's extra fields of a WeChat article (item_show_type, copyright_stat, ...).
    wechat: Mapped[dict | None] = mapped_column(JSON)
