"""Deliveries: every push of a task's new articles, and which articles each task has pushed."""

from datetime import datetime

from sqlalchemy import JSON, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import Model
from .base import BigIntPK, TimestampMixin, UTCDateTime, new_uuid

DELIVERY_PENDING = "pending"
DELIVERY_SENT = "sent"
DELIVERY_RETRYING = "retrying"
DELIVERY_FAILED = "failed"
DELIVERY_STATUSES = (DELIVERY_PENDING, DELIVERY_SENT, DELIVERY_RETRYING, DELIVERY_FAILED)
OPEN_STATUSES = (DELIVERY_PENDING, DELIVERY_RETRYING)


class Delivery(TimestampMixin, Model):
    """One message (or a vendor's split series of messages) carrying articles of one feed.

    Its id is the idempotency key receivers see (X-WeRSS-Delivery-Id, DingTalk msgUuid):
    a retry, by any child, sends the same id.
    """

    __tablename__ = "deliveries"
    __table_args__ = (
        Index("ix_deliveries_task_feed_status", "task_id", "feed_id", "status"),
        Index("ix_deliveries_status", "status"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    task_id: Mapped[str] = mapped_column(String(36))
    run_id: Mapped[str | None] = mapped_column(String(36))
    feed_id: Mapped[str] = mapped_column(String(64))
    allocation_id: Mapped[str | None] = mapped_column(String(36))
    # The lease whose child is (or was last) pushing it; another lease adopts it when
    # that one is over without a report.
    lease_id: Mapped[str | None] = mapped_column(String(36))
    node_id: Mapped[str | None] = mapped_column(String(36))
    channel: Mapped[str] = mapped_column(String(16), default="webhook")
    destination: Mapped[str] = mapped_column(String(300), default="")
    article_ids: Mapped[list] = mapped_column(JSON, default=list)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(10), default=DELIVERY_PENDING)
    vendor_code: Mapped[str | None] = mapped_column(String(64))
    vendor_message: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class PushedArticle(Model):
    """An article a task has handed to a delivery: reserved while it is open, pushed once sent.

    The unique key is the cascade-wide guard that a task pushes an article once, whichever
    child runs the allocation.
    """

    __tablename__ = "pushed_articles"
    __table_args__ = (
        UniqueConstraint("task_id", "feed_id", "article_id",
                         name="uq_pushed_articles_task_id_feed_id_article_id"),
        Index("ix_pushed_articles_delivery_id", "delivery_id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    task_id: Mapped[str] = mapped_column(String(36))
    feed_id: Mapped[str] = mapped_column(String(64))
    article_id: Mapped[str] = mapped_column(String(255))
    delivery_id: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    pushed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class TaskFeedStart(Model):
    """When a feed joined a task: older articles are history, not news, for that task."""

    __tablename__ = "task_feed_starts"
    __table_args__ = (
        UniqueConstraint("task_id", "feed_id", name="uq_task_feed_starts_task_id_feed_id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    task_id: Mapped[str] = mapped_column(String(36))
    feed_id: Mapped[str] = mapped_column(String(64))
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Set by the task's first delivery plan for the feed (when push_newest is applied).
    first_planned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
