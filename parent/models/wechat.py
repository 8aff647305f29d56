"""WeChat logins relayed through the parent, and the commands nodes pick up.

A command is something the parent asks one node to do outside the lease model (start a
WeChat login, search accounts); the node learns it in its heartbeat or claim answer.
"""

from datetime import datetime

from sqlalchemy import JSON, Index, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import Model
from .base import UTCDateTime, new_uuid

COMMAND_PENDING = "pending"
COMMAND_DELIVERED = "delivered"
COMMAND_DONE = "done"
COMMAND_FAILED = "failed"

KIND_WECHAT_LOGIN = "wechat_login"
KIND_WECHAT_SEARCH = "wechat_search"

LOGIN_NONE = "none"
LOGIN_WAITING_SCAN = "waiting_scan"
LOGIN_SCANNED = "scanned"
LOGIN_VALID = "valid"
LOGIN_EXPIRED = "expired"
LOGIN_FAILED = "failed"
LOGIN_STATES = (LOGIN_NONE, LOGIN_WAITING_SCAN, LOGIN_SCANNED, LOGIN_VALID, LOGIN_EXPIRED,
                LOGIN_FAILED)


class NodeCommand(Model):
    __tablename__ = "node_commands"
    __table_args__ = (Index("ix_node_commands_node_id_status", "node_id", "status"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    node_id: Mapped[str] = mapped_column(String(36))
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(10), default=COMMAND_PENDING)
    result: Mapped[dict | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WechatLogin(Model):
    """The latest login a node ran for an admin; the QR image only while a scan is pending."""

    __tablename__ = "wechat_logins"

    node_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    command_id: Mapped[str | None] = mapped_column(String(36))
    state: Mapped[str] = mapped_column(String(16), default=LOGIN_NONE)
    qr_png: Mapped[bytes | None] = mapped_column(LargeBinary)
    qr_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    account_name: Mapped[str | None] = mapped_column(String(255))
    account_avatar: Mapped[str | None] = mapped_column(String(1000))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)
    requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
