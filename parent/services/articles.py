"""Ingesting collected articles, deduplicated per (feed, article id)."""

from __future__ import annotations

from typing import Any, cast

from marshmallow import Schema, ValidationError
from sqlalchemy import Table, bindparam, or_

from shared import errors as codes

from ..paging import fetch_page
from ..clock import now
from ..errors import ApiError
from ..extensions import db
from ..models import Allocation, Article, Feed, Lease, Node
from ..models.work import ALLOC_LEASED
from .sqlutil import insert_ignoring_conflicts

MAX_BATCH = 500


def ingest_batch(node: Node, raw_articles: list, schema: Schema,
                 lease_id: str | None = None) -> dict:
    """Validate each article on its own, store the good ones, and say which were refused.

    Only feeds the node holds a lease on are writable: with ``lease_id``, that lease's
    feeds; without, the feeds of every live lease the node holds. A live lease's upload
    replaces an earlier copy written by another node (the collecting node's version
    wins); an ended lease of this node may still add articles, never change them.

    :raises ApiError: 404/403 for an unknown or foreign lease; 403 when every article
        names a feed the node holds no lease on; 422 when every article is refused.
    """
    good: list[tuple[int, dict]] = []
    refused: dict[int, Any] = {}  # marshmallow's messages: a list or a dict per field
    for index, raw in enumerate(raw_articles):
        if not isinstance(raw, dict):
            refused[index] = {"_schema": ["Expected an article object."]}
            continue
        try:
            good.append((index, schema.load(raw)))
        except ValidationError as exc:
            refused[index] = exc.messages
    writable, overwrite = _writable_feeds(node, lease_id)
    feed_ids = {article["mp_id"] for _, article in good}
    known = set(db.session.execute(db.select(Feed.id).where(Feed.id.in_(feed_ids))).scalars())
    lease_refusals = 0
    accepted = []
    for index, article in good:
        if article["mp_id"] not in known:
            refused[index] = {"mp_id": [f"Unknown feed {article['mp_id']!r}."]}
        elif article["mp_id"] not in writable:
            refused[index] = {"mp_id": [NOT_LEASED]}
            lease_refusals += 1
        else:
            accepted.append(article)
    if refused and not accepted:
        if lease_refusals == len(refused):
            raise ApiError(codes.FORBIDDEN, "This node holds no lease on these feeds; "
                           "articles are accepted only for feeds of a lease it holds.",
                           details={"articles": {str(i): e for i, e in sorted(refused.items())}})
        raise ApiError(codes.VALIDATION_FAILED, "No article of the batch can be stored; "
                       "see details.",
                       details={"articles": {str(i): e for i, e in sorted(refused.items())}})
    stored = ingest_articles(node, accepted, overwrite=overwrite)
    stored["received"] = len(raw_articles)
    stored["refused"] = [_refusal(index, raw_articles[index], errors)
                         for index, errors in sorted(refused.items())]
    return stored


NOT_LEASED = "This node holds no lease on this feed."


def _refusal(index: int, raw, errors: dict) -> dict:
    raw = raw if isinstance(raw, dict) else {}
    ident = raw.get("id")
    return {"index": index, "id": str(ident)[:255] if isinstance(ident, (str, int)) else None,
            "mp_id": str(raw.get("mp_id"))[:64] if isinstance(raw.get("mp_id"), (str, int))
            else None, "errors": errors}


def _writable_feeds(node: Node, lease_id: str | None) -> tuple[set[str], bool]:
    """(feeds this upload may write, whether it may replace what another node wrote)."""
    moment = now()
    if lease_id:
        lease = db.session.get(Lease, lease_id)
        if lease is None:
            raise ApiError(codes.NOT_FOUND, f"Lease {lease_id!r} does not exist.")
        if lease.node_id != node.id:
            raise ApiError(codes.FORBIDDEN, "This lease belongs to another node.")
        allocation = db.session.get(Allocation, lease.allocation_id)
        feeds = set(allocation.feed_ids) if allocation else set()
        live = bool(allocation and allocation.current_lease_id == lease.id
                    and allocation.status == ALLOC_LEASED
                    and allocation.lease_expires_at is not None
                    and allocation.lease_expires_at > moment)
        return feeds, live
    rows = db.session.execute(db.select(Allocation.feed_ids).where(
        Allocation.leased_to == node.id, Allocation.status == ALLOC_LEASED,
        Allocation.lease_expires_at > moment)).scalars().all()
    return {feed_id for feed_ids in rows for feed_id in feed_ids}, True


def ingest_articles(node: Node, articles: list[dict], overwrite: bool = False) -> dict:
    """Store valid articles of writable feeds; an article already stored gains content it
    lacked, and with ``overwrite`` takes this node's version over another node's."""
    unique: dict[tuple[str, str], dict] = {}
    for article in articles:
        unique[(article["mp_id"], article["id"])] = article  # the last copy in a batch wins
    moment = now()
    new = 0
    if unique:
        rows = [{
            "feed_id": feed_id, "article_id": article_id,
            "title": a.get("title") or "", "url": a.get("url") or "",
            "pic_url": a.get("pic_url") or "", "description": a.get("description") or "",
            "content": a.get("content"), "publish_time": a.get("publish_time") or 0,
            "node_id": node.id, "created_at": moment, "updated_at": moment,
            "wechat": a.get("wechat") or None,
        } for (feed_id, article_id), a in unique.items()]
        # One multi-row INSERT ... ON CONFLICT DO NOTHING RETURNING: the rows it returns
        # are exactly the new ones, even when two children upload the same article.
        inserted = [tuple(row) for row in db.session.execute(
            insert_ignoring_conflicts(Article, ["feed_id", "article_id"])
            .returning(Article.feed_id, Article.article_id),
            rows,
        ).all()]
        new = len(inserted)
        if overwrite:
            _replace_foreign_copies([r for r in rows
                                     if (r["feed_id"], r["article_id"]) not in set(inserted)],
                                    node, moment)
        _fill_missing_content(unique, set(inserted), moment)
    db.session.flush()
    return {"received": len(articles), "new": new}


def _replace_foreign_copies(rows: list[dict], node: Node, moment) -> None:
    """Give the collecting node's version to articles another node wrote first."""
    if not rows:
        return
    table = cast(Table, Article.__table__)  # a mapped class's table (typed as FromClause)
    statement = table.update().where(
        table.c.feed_id == bindparam("b_feed_id"), table.c.article_id == bindparam("b_article_id"),
        or_(table.c.node_id.is_(None), table.c.node_id != node.id),
    ).values(title=bindparam("b_title"), url=bindparam("b_url"), pic_url=bindparam("b_pic_url"),
             description=bindparam("b_description"), publish_time=bindparam("b_publish_time"),
             node_id=node.id, updated_at=moment)
    db.session.execute(statement, [{f"b_{k}": r[k] for k in (
        "feed_id", "article_id", "title", "url", "pic_url", "description", "publish_time")}
        for r in rows])


def _fill_missing_content(unique: dict, inserted: set, moment) -> None:
    with_content = [key for key, a in unique.items() if a.get("content") and key not in inserted]
    for feed_id, article_id in with_content:
        db.session.execute(
            db.update(Article)
            .where(Article.feed_id == feed_id, Article.article_id == article_id,
                   Article.content.is_(None))
            .values(content=unique[(feed_id, article_id)]["content"], updated_at=moment)
        )


def list_articles(filters: dict) -> tuple[list[Article], int]:
    """One page of articles, newest first (window in ``filters``), and the total."""
    conditions = []
    if filters.get("feed_id"):
        conditions.append(Article.feed_id == filters["feed_id"])
    if filters.get("since") is not None:
        conditions.append(Article.publish_time >= filters["since"])
    if filters.get("q"):
        conditions.append(Article.title.contains(filters["q"], autoescape=True))
    return fetch_page(Article, conditions, (Article.publish_time.desc(), Article.id.desc()),
                      filters)
