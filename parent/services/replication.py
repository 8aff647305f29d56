"""The change log behind ETags and incremental pulls of feeds and message tasks."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import BigInteger, Table, bindparam, func, select, text
from sqlalchemy import cast as sql_cast

from shared import errors as codes

from ..clock import now
from ..errors import ApiError
from ..extensions import db, rowcount
from ..models import ChangeLogEntry, MetaValue
from ..models.replication import OP_DELETE, OP_UPSERT

_PRUNED_THROUGH_KEY = "change_log.pruned_through.{entity}"
# Any constant: serialises change-log writers on PostgreSQL so cursor ids commit in order.
_ADVISORY_LOCK_ID = 0x57525353

_LOG = cast(Table, ChangeLogEntry.__table__)
_META = cast(Table, MetaValue.__table__)
# Built once, only bound per call (every pull reads them; building and keying them per call
# cost more than the reads). How far the log was pruned; the cursor: the newest change id,
# else the pruned-through marker, else 0, in one statement.
_PRUNED = select(sql_cast(_META.c.value, BigInteger)).where(_META.c.key == bindparam("pruned_key"))
CURSOR = select(func.coalesce(
    select(func.max(_LOG.c.id)).where(_LOG.c.entity == bindparam("entity")).scalar_subquery(),
    _PRUNED.scalar_subquery(),
    0))
# An incremental pull's rows (limit + 1: the last says whether there is more).
_CHANGES = (select(_LOG.c.id, _LOG.c.entity_id, _LOG.c.op)
            .where(_LOG.c.entity == bindparam("entity"), _LOG.c.id > bindparam("since"))
            .order_by(_LOG.c.id)
            .limit(bindparam("limit")))


def record_changes(entity: str, entity_ids: list[str], op: str) -> None:
    """Append one change-log entry per entity id (in this transaction)."""
    if not entity_ids:
        return
    if db.session.get_bind().dialect.name == "postgresql":
        # Without this, a transaction holding id 101 could commit after one holding 102
        # was already read, and a child at cursor 102 would never see change 101.
        db.session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _ADVISORY_LOCK_ID})
    moment = now()
    db.session.add_all(
        ChangeLogEntry(entity=entity, entity_id=entity_id, op=op, created_at=moment)
        for entity_id in entity_ids
    )
    db.session.flush()


def record_upserts(entity: str, entity_ids: list[str]) -> None:
    record_changes(entity, entity_ids, OP_UPSERT)


def record_deletes(entity: str, entity_ids: list[str]) -> None:
    record_changes(entity, entity_ids, OP_DELETE)


def current_cursor(entity: str) -> int:
    """Return the newest change id for an entity: one statement, two indexed lookups.

    Once every entry has been pruned, the pruned-through marker stands in for it, so
    the cursor (and the ETag built from it) never moves backwards.
    """
    return int(db.session.execute(CURSOR, cursor_params(entity)).scalar_one())


def cursor_params(entity: str) -> dict:
    """The values ``CURSOR`` (also as a subquery of another read) is bound with."""
    return {"entity": entity, "pruned_key": _PRUNED_THROUGH_KEY.format(entity=entity)}


def etag_for(entity: str, cursor: int) -> str:
    return f'W/"{entity}-v1-{cursor}"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    candidates = [tag.strip() for tag in if_none_match.split(",")]
    bare = etag.removeprefix("W/")
    return "*" in candidates or any(tag.removeprefix("W/") == bare for tag in candidates)


def read_changes(entity: str, since: int, limit: int) -> tuple[dict[str, str], int, bool]:
    """Return ({entity_id: last op}, next cursor, has_more) for changes after ``since``.

    :raises ApiError: 410 cursor_expired when the cursor predates the retained log, or is
        ahead of it (it came from another database).
    """
    pruned_through = _pruned_through(entity)
    if since < pruned_through:
        raise ApiError(
            codes.CURSOR_EXPIRED,
            details={"cursor": str(since), "oldest_valid_cursor": str(pruned_through)},
        )
    rows = db.session.execute(
        _CHANGES, {"entity": entity, "since": since, "limit": limit + 1}).all()
    if not rows and since > 0 and since > current_cursor(entity):
        raise ApiError(
            codes.CURSOR_EXPIRED,
            "The cursor is ahead of this parent's change log; do a full pull.",
            details={"cursor": str(since)},
        )
    has_more = len(rows) > limit
    rows = rows[:limit]
    latest: dict[str, str] = {}
    for _, entity_id, op in rows:
        latest[entity_id] = op
    cursor = rows[-1][0] if rows else since
    return latest, cursor, has_more


def _pruned_through(entity: str) -> int:
    value = db.session.execute(
        _PRUNED, {"pruned_key": _PRUNED_THROUGH_KEY.format(entity=entity)}).scalar()
    return int(value) if value is not None else 0


def prune_change_log(entity: str, retention_days: int, moment: datetime | None = None) -> int:
    """Delete change-log entries older than the retention; remember how far we pruned."""
    cutoff = (moment or now()) - timedelta(days=retention_days)
    newest_old = db.session.execute(
        db.select(func.max(ChangeLogEntry.id)).where(
            ChangeLogEntry.entity == entity, ChangeLogEntry.created_at < cutoff
        )
    ).scalar()
    if not newest_old:
        return 0
    deleted = rowcount(db.session.execute(
        db.delete(ChangeLogEntry).where(
            ChangeLogEntry.entity == entity, ChangeLogEntry.id <= newest_old
        )
    ))
    key = _PRUNED_THROUGH_KEY.format(entity=entity)
    marker = db.session.get(MetaValue, key)
    if marker is None:
        db.session.add(MetaValue(key=key, value=str(newest_old)))
    elif int(marker.value) < newest_old:
        marker.value = str(newest_old)
    db.session.flush()
    return deleted


__all__ = [
    "OP_DELETE", "OP_UPSERT", "current_cursor", "etag_for", "etag_matches",
    "prune_change_log", "read_changes", "record_deletes", "record_upserts",
]
