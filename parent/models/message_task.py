"""Message tasks: cron-scheduled collect + push jobs."""

from sqlalchemy import JSON, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from shared.channels import MESSAGE_TYPE_MESSAGE

from ..extensions import Model
from .base import TimestampMixin, new_uuid
from .encrypted import EncryptedJSON, EncryptedText


class MessageTask(TimestampMixin, Model):
    __tablename__ = "message_tasks"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    name: Mapped[str] = mapped_column(String(255))
    message_type: Mapped[int] = mapped_column(Integer, default=MESSAGE_TYPE_MESSAGE)
    message_template: Mapped[str] = mapped_column(Text, default="")
    # Secrets (tokens in the URL's query, auth headers, cookies) are encrypted at rest.
    web_hook_url: Mapped[str] = mapped_column(EncryptedText, default="")
    headers: Mapped[dict] = mapped_column(EncryptedJSON, default=dict)
    cookies: Mapped[str] = mapped_column(EncryptedText, default="")
    # [{"id": feed id, "mp_name": ...}]; empty means every enabled feed.
    mps_id: Mapped[list] = mapped_column(JSON, default=list)
    cron_exp: Mapped[str] = mapped_column(String(120))
    status: Mapped[int] = mapped_column(Integer, default=1)
    labels: Mapped[list] = mapped_column(JSON, default=list)
    # A feed's first run for this task also pushes its newest N older articles.
    push_newest: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # shared.channels names; NULL: derived from the URL's host as WeRSS does.
    channel: Mapped[str | None] = mapped_column(String(16))
    # DingTalk SEC… or Feishu signing secret: write-only, sent to a node only in its lease.
    sign_secret: Mapped[str | None] = mapped_column(EncryptedText)
