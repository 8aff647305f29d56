"""What nodes need to pull incrementally: the change log and small key/value markers."""

from datetime import datetime

from sqlalchemy import Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import Model
from .base import BigIntPK, UTCDateTime

ENTITY_FEED = "feed"
ENTITY_MESSAGE_TASK = "message_task"
OP_UPSERT = "upsert"
OP_DELETE = "delete"


class ChangeLogEntry(Model):
    """One change to a feed or message task; its id is the pull cursor."""

    __tablename__ = "change_log"
    __table_args__ = (Index("ix_change_log_entity_id", "entity", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    entity: Mapped[str] = mapped_column(String(16))
    entity_id: Mapped[str] = mapped_column(String(64))
    op: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class MetaValue(Model):
    """Small named markers, such as how far the change log has been pruned."""

    __tablename__ = "meta_values"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
