"""Admin views of work distribution and collected articles."""

from flask import Blueprint

from ..auth import admin_required
from ..paging import page_body
from ..services import articles, views
from ..work_schemas import AllocationQuerySchema, ArticleQuerySchema, FeedStatusQuerySchema
from ._io import load_query, respond

cascade_bp = Blueprint("work_views", __name__)
articles_bp = Blueprint("articles", __name__)


_page = page_body


@cascade_bp.get("/allocations")
@admin_required
def list_allocations():
    query = load_query(AllocationQuerySchema())
    rows, total = views.list_allocations(query, query["page"], query["page_size"],
                                           query["offset"])
    return respond(_page([views.allocation_to_dict(a) for a in rows], total, query))


@cascade_bp.get("/feed-status")
@admin_required
def feed_status():
    query = load_query(FeedStatusQuerySchema())
    items, total = views.feed_status(query, query["page"], query["page_size"], query["offset"])
    return respond(_page(items, total, query))


@cascade_bp.get("/stats")
@admin_required
def stats():
    return respond(views.stats())


@articles_bp.get("/articles")
@admin_required
def list_articles():
    query = load_query(ArticleQuerySchema())
    rows, total = articles.list_articles(query, query["page"], query["page_size"],
                                           query["offset"])
    return respond(_page([articles.article_to_dict(a) for a in rows], total, query))
