"""Per-destination send budgets (one rate limit across every child) and notice bookkeeping."""

from sqlalchemy import BigInteger, Float, String
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import Model


class SendBudget(Model):
    """When the next message to one destination may go out (Unix seconds).

    ``destination`` is a SHA-256 the child computes from the channel and the robot's URL,
    so no token is stored. ``grants`` makes each reservation a guarded update.
    """

    __tablename__ = "send_budgets"

    destination: Mapped[str] = mapped_column(String(64), primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    next_at: Mapped[float] = mapped_column(Float)
    grants: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[float] = mapped_column(Float)


class NoticeMark(Model):
    """What the notice sender has already announced (a cursor, or a task's failing state)."""

    __tablename__ = "notice_marks"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))
