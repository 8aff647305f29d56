"""The sync log: every node pull, push and presence change."""

from datetime import datetime

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import Model
from .base import BigIntPK, UTCDateTime

OP_SYNC_FEEDS = "sync_feeds"
OP_SYNC_TASKS = "sync_tasks"
OP_REPORT_RESULT = "report_result"
OP_NODE_ONLINE = "node_online"
OP_NODE_OFFLINE = "node_offline"
OP_WECHAT_SESSION_VALID = "wechat_session_valid"
OP_WECHAT_SESSION_EXPIRED = "wechat_session_expired"
OP_WECHAT_FEED_INVALID = "wechat_feed_invalid"

DIRECTION_PULL = "pull"
DIRECTION_PUSH = "push"
DIRECTION_EVENT = "event"

STATUS_SUCCESS = "success"
STATUS_NOT_MODIFIED = "not_modified"
STATUS_FAILED = "failed"


class SyncLog(Model):
    __tablename__ = "sync_logs"
    __table_args__ = (Index("ix_sync_logs_node_id_id", "node_id", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    # Not a foreign key: history outlives a deleted node.
    node_id: Mapped[str | None] = mapped_column(String(36))
    operation: Mapped[str] = mapped_column(String(32))
    direction: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16))
    data_count: Mapped[int] = mapped_column(Integer, default=0)
    error_message: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
