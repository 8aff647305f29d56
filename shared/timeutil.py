"""Times on the wire: ISO 8601 UTC with a trailing Z, or Unix seconds."""

from contextvars import ContextVar
from datetime import datetime, timezone, tzinfo
from typing import overload

# The zone a time without one is read in. UTC, except while the parent answers a WeRSS
# node, whose clocks write local times (parent: cascade.werss_timezone).
naive_time_zone: ContextVar[tzinfo] = ContextVar("naive_time_zone", default=timezone.utc)


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(timezone.utc)


@overload
def isoformat_z(value: datetime) -> str: ...
@overload
def isoformat_z(value: datetime | None) -> str | None: ...
def isoformat_z(value: datetime | None) -> str | None:
    """Format an aware or naive-UTC datetime as ISO 8601 with a Z suffix."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S") + (
        f".{value.microsecond // 1000:03d}Z" if value.microsecond else "Z"
    )


def parse_iso(value: str, naive_zone: tzinfo = timezone.utc) -> datetime:
    """Parse an ISO 8601 time (Z or offset; without one, in ``naive_zone``) into aware UTC."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=naive_zone)
    return parsed.astimezone(timezone.utc)


def from_unix(seconds: float) -> datetime:
    """Turn Unix seconds into an aware UTC datetime."""
    return datetime.fromtimestamp(seconds, timezone.utc)


def to_unix(value: datetime | None) -> int | None:
    """Turn a datetime into whole Unix seconds."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return int(value.timestamp())
