"""Cascade nodes (children and upstream parents) and their credentials."""

from datetime import datetime, timedelta

from sqlalchemy import JSON, Boolean, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import Model
from .base import TimestampMixin, UTCDateTime, new_uuid

NODE_TYPE_PARENT = 0
NODE_TYPE_CHILD = 1

STATUS_ONLINE = "online"
STATUS_OFFLINE = "offline"
STATUS_DISABLED = "disabled"


class Node(TimestampMixin, Model):
    __tablename__ = "nodes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    node_type: Mapped[int] = mapped_column(Integer, default=NODE_TYPE_CHILD)
    name: Mapped[str] = mapped_column(String(100))
    # Equals name while the node exists and NULL once deleted, so a deleted node's name
    # can be reused while the unique index still guards concurrent creates.
    name_key: Mapped[str | None] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    api_url: Mapped[str | None] = mapped_column(String(500))
    labels: Mapped[list] = mapped_column(JSON, default=list)
    capacity: Mapped[int] = mapped_column(Integer, default=4)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    api_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    # Fernet token of the api_secret under a key derived from secret_key (never in the DB).
    secret_ciphertext: Mapped[str | None] = mapped_column(Text)
    credentials_issued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    last_heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Presence as last recorded in the sync log; used only to detect transitions.
    presence: Mapped[str] = mapped_column(String(10), default=STATUS_OFFLINE)
    # The node counts as offline from this moment unless heard from again: its last sign
    # of life plus the threshold its own cadence (seconds between requests) earns it.
    offline_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cadence_seconds: Mapped[int | None] = mapped_column(Integer)
    last_sync_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    agent_version: Mapped[str | None] = mapped_column(String(64))
    hostname: Mapped[str | None] = mapped_column(String(255))
    running: Mapped[int] = mapped_column(Integer, default=0)
    # What the agent says it can run at once; leases are capped by the lower of the two.
    reported_capacity: Mapped[int | None] = mapped_column(Integer)
    capabilities: Mapped[dict] = mapped_column(JSON, default=dict)
    callback_url: Mapped[str | None] = mapped_column(String(500))
    # Set by a lease failure carrying rate_limited_until: no WeChat work until then.
    wechat_blocked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The sources (wechat, rss) an admin says this node runs; NULL: work it out
    # (services/node_sources.py).
    sources: Mapped[list | None] = mapped_column(JSON)
    # Which routes the node has called: "werss" (only /api/v1/wx/cascade) or "native".
    route_family: Mapped[str | None] = mapped_column(String(10))
    # A stopping child asked for its waiting claims to end (POST /cascade/claim/cancel).
    claim_cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set when a command (a WeChat login, a search) waits: heartbeats and claims read it
    # with the node's own row, so a node with nothing waiting costs no extra query.
    commands_waiting: Mapped[bool] = mapped_column(Boolean, default=False)

    def status_at(self, moment: datetime, offline_after: int) -> str:
        """Return online/offline/disabled as seen at ``moment``."""
        if not self.is_active or self.deleted_at is not None:
            return STATUS_DISABLED
        if self.offline_at is not None:
            return STATUS_ONLINE if moment <= self.offline_at else STATUS_OFFLINE
        if self.last_heartbeat_at and moment - self.last_heartbeat_at <= timedelta(
            seconds=offline_after
        ):
            return STATUS_ONLINE
        return STATUS_OFFLINE
