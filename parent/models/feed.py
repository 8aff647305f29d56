"""Feeds: WeChat official accounts or RSS/Atom sources the cascade collects."""

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from shared.sources import RSS as SOURCE_RSS  # noqa: F401 (the names the parent uses)
from shared.sources import SOURCE_TYPES  # noqa: F401
from shared.sources import WECHAT as SOURCE_WECHAT

from ..extensions import Model
from .base import TimestampMixin, UTCDateTime


class Feed(TimestampMixin, Model):
    __tablename__ = "feeds"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    faker_id: Mapped[str | None] = mapped_column(String(128), unique=True)
    mp_name: Mapped[str] = mapped_column(String(255))
    mp_cover: Mapped[str] = mapped_column(String(1000), default="")
    mp_intro: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[int] = mapped_column(Integer, default=1)
    sync_time: Mapped[int] = mapped_column(BigInteger, default=0)
    update_time: Mapped[int] = mapped_column(BigInteger, default=0)
    source_type: Mapped[str] = mapped_column(String(16), default=SOURCE_WECHAT)
    source_url: Mapped[str | None] = mapped_column(String(1000), unique=True)
    labels: Mapped[list] = mapped_column(JSON, default=list)
    # Bookkeeping of the last collection (not replicated to children).
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_run_node_id: Mapped[str | None] = mapped_column(String(36))
    last_run_status: Mapped[str | None] = mapped_column(String(16))
    last_run_error: Mapped[str | None] = mapped_column(Text)
    # Set when WeChat refused the account (200002): not scheduled until an admin edits it.
    invalid_reason: Mapped[str | None] = mapped_column(Text)
