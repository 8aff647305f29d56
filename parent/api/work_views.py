"""Admin views of work distribution and collected articles."""

from flask import Blueprint

from ..auth import admin_required
from ..paging import page_body
from ..services import articles, work_views
from ..work_view_schemas import AllocationQuerySchema, ArticleQuerySchema, FeedStatusQuerySchema
from .request_response import load_query, respond
from .dumps import AllocationAdminSchema, ArticleAdminSchema
from ..openapi import OBJECT, describe, page_of

cascade_bp = Blueprint("work_views", __name__)
articles_bp = Blueprint("articles", __name__)


@cascade_bp.get("/allocations")
@describe("Allocations of task runs, a page at a time", query=AllocationQuerySchema,
          data=page_of(AllocationAdminSchema))
@admin_required
def list_allocations():
    query = load_query(AllocationQuerySchema())
    rows, total = work_views.list_allocations(query)
    return respond(page_body(AllocationAdminSchema().dump(rows, many=True), total, query))


@cascade_bp.get("/feed-status")
@describe("Each feed's collection status", query=FeedStatusQuerySchema, data=page_of(OBJECT))
@admin_required
def feed_status():
    query = load_query(FeedStatusQuerySchema())
    items, total = work_views.feed_status(query)
    return respond(page_body(items, total, query))


@cascade_bp.get("/stats")
@describe("Counts of nodes, feeds, allocations and articles", data=OBJECT)
@admin_required
def stats():
    return respond(work_views.stats())


@articles_bp.get("/articles")
@describe("Collected articles, newest first", query=ArticleQuerySchema,
          data=page_of(ArticleAdminSchema))
@admin_required
def list_articles():
    query = load_query(ArticleQuerySchema())
    rows, total = articles.list_articles(query)
    return respond(page_body(ArticleAdminSchema().dump(rows, many=True), total, query))
