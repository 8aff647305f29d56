"""Task results reported by nodes through report-result."""

from datetime import datetime

from sqlalchemy import JSON, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import Model
from .base import BigIntPK, UTCDateTime


class TaskReport(Model):
    __tablename__ = "task_reports"
    __table_args__ = (Index("ix_task_reports_task_id_id", "task_id", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    node_id: Mapped[str] = mapped_column(String(36), index=True)
    task_id: Mapped[str] = mapped_column(String(64))
    allocation_id: Mapped[str | None] = mapped_column(String(64))
    results: Mapped[list] = mapped_column(JSON, default=list)
    reported_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
