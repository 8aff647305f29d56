"""Administrators, their bearer tokens and the failed-login record used for throttling."""

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import Model
from .base import BigIntPK, TimestampMixin, UTCDateTime


class Admin(TimestampMixin, Model):
    __tablename__ = "admins"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(100))
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AdminToken(Model):
    """An opaque bearer token; only its keyed digest (HMAC-SHA256 under secret_key) is stored."""

    __tablename__ = "admin_tokens"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    admin_id: Mapped[int] = mapped_column(ForeignKey("admins.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class LoginFailure(Model):
    """One failed login, counted per username and per client address."""

    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_key_time", "throttle_key", "failed_at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    throttle_key: Mapped[str] = mapped_column(String(200))
    failed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AdminLoginSource(Model):
    """An address an admin has logged in from: it may still try when the username is under
    attack from everywhere (the global ceiling), so a distributed guesser cannot lock the
    owner out."""

    __tablename__ = "admin_login_sources"
    __table_args__ = (UniqueConstraint("admin_id", "source"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    admin_id: Mapped[int] = mapped_column(ForeignKey("admins.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(100))
    last_login_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
