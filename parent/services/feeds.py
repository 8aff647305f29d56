"""Feeds: CRUD, bulk import (JSON or OPML) and the wire shape children pull."""

from __future__ import annotations

import base64
import binascii
import hashlib
import time

from defusedxml import ElementTree
from marshmallow import ValidationError
from sqlalchemy import bindparam, or_
from sqlalchemy.exc import IntegrityError

from shared import errors as codes
from shared.schemas import FeedSchema
from shared.sources import identity_of

from ..errors import ApiError, NotFoundError
from .. import unit_of_work
from ..extensions import db
from ..models import Feed
from ..models.replication import ENTITY_FEED
from ..schemas import FeedCreateSchema
from . import bulk, replication
from ..paging import fetch_page

MAX_IMPORT_ROWS = 5000
IMPORT_CHUNK = 200
CHUNK_PAUSE = 0.05
FEED_WIRE = FeedSchema()


def feed_to_wire(feed: Feed) -> dict:
    """The feed as nodes pull it: dumped by the contract's shared.schemas.FeedSchema."""
    return FEED_WIRE.dump(feed)


def _blank_identities_to_none(values: dict) -> dict:
    """An empty faker_id or source_url is no identity: store NULL so the unique index skips it."""
    return {**values, **{name: None for name in ("faker_id", "source_url")
                         if name in values and not values[name]}}


def derive_feed_id(values: dict) -> str:
    """Pick a stable id: WeRSS's MP_WXS_<biz> for WeChat, a URL digest for RSS."""
    if values.get("id"):
        return values["id"]
    if identity_of(values.get("source_type")) == "source_url":  # RSS_<digest> for rss
        return values["source_type"].upper() + "_" + hashlib.sha256(values["source_url"].encode("utf-8")).hexdigest()[:24]
    faker_id = values["faker_id"]
    try:
        decoded = base64.b64decode(faker_id + "=" * (-len(faker_id) % 4), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        decoded = ""
    if decoded.isdigit() and len(decoded) <= 40:
        return f"MP_WXS_{decoded}"
    return "MP_WXS_" + hashlib.sha256(faker_id.encode("utf-8")).hexdigest()[:24]


def _conflicts(candidates: list[dict]) -> dict[str, str]:
    """Map each id/faker_id/source_url already in the database to the feed holding it."""
    ids = [c["id"] for c in candidates]
    faker_ids = [c["faker_id"] for c in candidates if c.get("faker_id")]
    urls = [c["source_url"] for c in candidates if c.get("source_url")]
    rows = db.session.execute(
        db.select(Feed.id, Feed.faker_id, Feed.source_url).where(
            or_(Feed.id.in_(ids), Feed.faker_id.in_(faker_ids), Feed.source_url.in_(urls))
        )
    ).all()
    taken: dict[str, str] = {}
    for feed_id, faker_id, source_url in rows:
        for value in (feed_id, faker_id, source_url):
            if value:
                taken[value] = feed_id
    return taken


def _duplicate_reason(values: dict, taken: dict[str, str]) -> str | None:
    for name in ("id", "faker_id", "source_url"):
        value = values.get(name)
        if value and value in taken:
            return f"{name} {value!r} is already used by feed {taken[value]!r}"
    return None


def create_feed(values: dict) -> Feed:
    values = _blank_identities_to_none(values)
    values["id"] = derive_feed_id(values)
    reason = _duplicate_reason(values, _conflicts([values]))
    if reason:
        raise ApiError(codes.ALREADY_EXISTS, f"Feed not created: {reason}.")
    feed = Feed(**values)
    db.session.add(feed)
    db.session.flush()
    replication.record_upserts(ENTITY_FEED, [feed.id])
    return feed


def get_feed(feed_id: str) -> Feed:
    feed = db.session.get(Feed, feed_id)
    if feed is None:
        raise NotFoundError("Feed", feed_id)
    return feed


def list_feeds(filters: dict) -> tuple[list[Feed], int]:
    """One page of feeds (``filters`` holds the window: parent/paging.py) and the total."""
    conditions = []
    if filters.get("source_type"):
        conditions.append(Feed.source_type == filters["source_type"])
    if filters.get("status") is not None:
        conditions.append(Feed.status == filters["status"])
    if filters.get("q"):
        conditions.append(Feed.mp_name.contains(filters["q"], autoescape=True))
    return fetch_page(Feed, conditions, (Feed.created_at, Feed.id), filters)


def all_feeds() -> list[Feed]:
    return list(db.session.execute(db.select(Feed).order_by(Feed.id)).scalars())


# Built once: every incremental pull with changes reads its feeds by id.
_FEEDS_BY_ID = db.select(Feed).where(Feed.id.in_(bindparam("ids", expanding=True)))


def feeds_by_ids(ids) -> list[Feed]:
    if not ids:
        return []
    return list(db.session.execute(_FEEDS_BY_ID, {"ids": list(ids)}).scalars())


def update_feed(feed_id: str, values: dict) -> Feed:
    feed = get_feed(feed_id)
    if values.get("id", feed.id) != feed.id:
        # Nodes key their caches by id: a new id is a new feed, so delete and create instead.
        raise ValidationError({"id": ["The id of a feed cannot be changed."]})
    values = _blank_identities_to_none(values)
    merged = {"source_type": feed.source_type, "source_url": feed.source_url, **values}
    if identity_of(merged["source_type"]) == "source_url" and not merged.get("source_url"):
        raise ValidationError({"source_url": [f"Required for an {merged['source_type']} feed."]})
    probe = {name: values.get(name) for name in ("faker_id", "source_url")}
    taken = {k: v for k, v in _conflicts([{"id": "", **probe}]).items() if v != feed.id}
    reason = _duplicate_reason(probe, taken)
    if reason:
        raise ApiError(codes.ALREADY_EXISTS, f"Feed not updated: {reason}.")
    for name, value in values.items():
        setattr(feed, name, value)
    feed.invalid_reason = None  # an admin's edit is the retry WeChat's 200002 waits for
    db.session.flush()
    replication.record_upserts(ENTITY_FEED, [feed.id])
    return feed


def delete_feed(feed_id: str) -> None:
    feed = get_feed(feed_id)
    db.session.delete(feed)
    db.session.flush()
    replication.record_deletes(ENTITY_FEED, [feed_id])


def _import_chunk(chunk: list[tuple[int, dict]], earlier: dict[str, str],
                  skipped: list[dict]) -> list[str]:
    """Create one chunk's new feeds and commit; ``earlier`` holds what previous rows took."""
    for attempt in (1, 2):
        taken = {**_conflicts([values for _, values in chunk]), **earlier}
        created: list[Feed] = []
        chunk_skipped: list[dict] = []
        chunk_taken: dict[str, str] = {}
        for index, values in chunk:
            reason = _duplicate_reason(values, {**taken, **chunk_taken})
            if reason:
                chunk_skipped.append({"row": index, "id": values["id"], "reason": reason})
                continue
            for name in ("id", "faker_id", "source_url"):
                if values.get(name):
                    chunk_taken[values[name]] = values["id"]
            created.append(Feed(**values))
        try:
            db.session.add_all(created)
            db.session.flush()
            replication.record_upserts(ENTITY_FEED, [feed.id for feed in created])
            # A chunk per transaction: a long import never holds SQLite's write lock for
            # long, and what it reports as created is kept even if a later chunk fails.
            unit_of_work.commit_now()
        except IntegrityError:
            db.session.rollback()
            if attempt == 2:
                raise
            continue  # a parallel import took some of these: look again
        earlier.update(chunk_taken)
        skipped += chunk_skipped
        return [feed.id for feed in created]
    return []


def parse_opml(document: bytes) -> list[dict]:
    """Turn OPML outlines with an xmlUrl into rss feed rows.

    :raises ApiError: 422 when the document is not OPML.
    """
    try:
        root = ElementTree.fromstring(document, forbid_dtd=True)
    except Exception as exc:  # defusedxml raises several types for hostile or broken XML
        raise ApiError(codes.VALIDATION_FAILED, "The file is not valid OPML.",
                       details={"file": [str(exc)[:200]]}) from None
    if root.tag.lower() != "opml":
        raise ApiError(codes.VALIDATION_FAILED, "The file is not OPML.",
                       details={"file": ["The root element must be <opml>."]})
    rows = []
    for outline in root.iter("outline"):
        url = outline.get("xmlUrl") or outline.get("xmlurl")
        if not url:
            continue
        rows.append({
            "mp_name": (outline.get("title") or outline.get("text") or url)[:255],
            "mp_intro": outline.get("description") or "",
            "source_type": "rss",
            "source_url": url.strip(),
        })
    return rows


def import_feeds(rows: list) -> dict:
    """Import feeds, one import at a time on SQLite (see ``bulk``)."""
    if len(rows) > MAX_IMPORT_ROWS:
        raise ApiError(codes.PAYLOAD_TOO_LARGE, f"Import at most {MAX_IMPORT_ROWS} feeds at a time.")
    # End the request's transaction (on SQLite it holds the write lock) before waiting.
    unit_of_work.commit_now()
    with bulk.one_big_write_at_a_time():
        return _import_feeds(rows)


def _import_feeds(rows: list) -> dict:
    """Validate each row, create the good ones, and say exactly what was left out and why.

    Rows are written IMPORT_CHUNK at a time, each chunk in a transaction of its own: on
    SQLite one 5,000-feed transaction held the write lock long enough to starve nodes'
    heartbeats. A chunk is all or nothing; an import stopped midway keeps earlier chunks.
    """
    schema = FeedCreateSchema()
    rejected, candidates = [], []
    for index, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            rejected.append({"row": index, "reason": "not an object", "errors": None})
            continue
        try:
            values = schema.load(row)
        except ValidationError as exc:
            rejected.append({"row": index, "reason": "invalid", "errors": exc.normalized_messages()})
            continue
        values = _blank_identities_to_none(values)
        values["id"] = derive_feed_id(values)
        candidates.append((index, values))

    skipped: list[dict] = []
    created_ids: list[str] = []
    earlier: dict[str, str] = {}  # an id, faker_id or source_url taken -> the feed that took it
    sqlite = db.session.get_bind().dialect.name == "sqlite"
    for start in range(0, len(candidates), IMPORT_CHUNK):
        began = time.monotonic()
        created_ids += _import_chunk(candidates[start:start + IMPORT_CHUNK], earlier, skipped)
        if sqlite and start + IMPORT_CHUNK < len(candidates):
            # Leave the lock free at least as long as the chunk held it, so node requests
            # queued behind it (parent/write_queue.py) get through before the next chunk.
            time.sleep(max(CHUNK_PAUSE, time.monotonic() - began))
    return {
        "created": len(created_ids),
        "created_ids": created_ids,
        "skipped": skipped,
        "rejected": rejected,
        "total_rows": len(rows),
    }
