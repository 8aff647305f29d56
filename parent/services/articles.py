"""Ingesting collected articles, deduplicated per (feed, article id)."""

from __future__ import annotations

from sqlalchemy import func

from shared import errors as codes
from shared.timeutil import isoformat_z

from ..clock import now
from ..errors import ApiError
from ..extensions import db
from ..models import Article, Feed, Node
from .sqlutil import insert_ignoring_conflicts
from ..paging import first_row as _first

MAX_BATCH = 500


def ingest_articles(node: Node, articles: list[dict], allowed_feeds: list[str] | None) -> dict:
    """Store new articles; an article already stored only gains content it lacked.

    :raises ApiError: 422 when an article names an unknown feed or one outside the lease.
    """
    feed_ids = {article["mp_id"] for article in articles}
    known = set(db.session.execute(db.select(Feed.id).where(Feed.id.in_(feed_ids))).scalars())
    problems = {}
    for index, article in enumerate(articles):
        if article["mp_id"] not in known:
            problems[str(index)] = {"mp_id": [f"Unknown feed {article['mp_id']!r}."]}
        elif allowed_feeds is not None and article["mp_id"] not in allowed_feeds:
            problems[str(index)] = {"mp_id": ["This feed is not part of the lease."]}
    if problems:
        raise ApiError(codes.VALIDATION_FAILED, "Some articles cannot be stored; see details.",
                       details={"articles": problems})

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
        } for (feed_id, article_id), a in unique.items()]
        # One multi-row INSERT ... ON CONFLICT DO NOTHING RETURNING: the rows it returns
        # are exactly the new ones, even when two children upload the same article.
        inserted = [tuple(row) for row in db.session.execute(
            insert_ignoring_conflicts(Article, ["feed_id", "article_id"])
            .returning(Article.feed_id, Article.article_id),
            rows,
        ).all()]
        new = len(inserted)
        _fill_missing_content(unique, set(inserted), moment)
    db.session.flush()
    return {"received": len(articles), "new": new}


def _fill_missing_content(unique: dict, inserted: set, moment) -> None:
    with_content = [key for key, a in unique.items() if a.get("content") and key not in inserted]
    for feed_id, article_id in with_content:
        db.session.execute(
            db.update(Article)
            .where(Article.feed_id == feed_id, Article.article_id == article_id,
                   Article.content.is_(None))
            .values(content=unique[(feed_id, article_id)]["content"], updated_at=moment)
        )


def article_to_dict(article: Article) -> dict:
    return {
        "id": article.article_id,
        "mp_id": article.feed_id,
        "title": article.title,
        "url": article.url,
        "pic_url": article.pic_url,
        "description": article.description,
        "publish_time": article.publish_time,
        "has_content": article.content is not None,
        "node_id": article.node_id,
        "created_at": isoformat_z(article.created_at),
    }


def list_articles(filters: dict, page: int, page_size: int,
                  offset: int | None = None) -> tuple[list[Article], int]:
    conditions = []
    if filters.get("feed_id"):
        conditions.append(Article.feed_id == filters["feed_id"])
    if filters.get("since") is not None:
        conditions.append(Article.publish_time >= filters["since"])
    if filters.get("q"):
        conditions.append(Article.title.contains(filters["q"], autoescape=True))
    total = db.session.execute(
        db.select(func.count()).select_from(Article).where(*conditions)).scalar_one()
    rows = db.session.execute(
        db.select(Article).where(*conditions)
        .order_by(Article.publish_time.desc(), Article.id.desc())
        .limit(page_size).offset(_first(page, page_size, offset))
    ).scalars().all()
    return list(rows), total
