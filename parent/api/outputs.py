"""Public feeds of collected articles: /feed/{feed_id}.{rss,atom,json} and /feed/all.*.

Unauthenticated and read-only, as in WeRSS, so RSS readers can subscribe (docs/FEEDS.md).
"""

from flask import Blueprint, Response, request
from marshmallow import EXCLUDE, Schema

from shared.schemas import QueryInt

from ..config import settings
from ..services import outputs
from .request_response import load_query
from ..openapi import describe

bp = Blueprint("outputs", __name__)

_KINDS = f"any({outputs.RSS}, {outputs.ATOM}, {outputs.JSON_FEED})"
FEED_DOCUMENT = {"application/rss+xml": {"type": "string"},
                 "application/atom+xml": {"type": "string"},
                 "application/feed+json": {"type": "object"}}


class FeedOutputQuerySchema(Schema):
    class Meta:
        # Readers append cache busters (?_=123); they must not break a subscription.
        unknown = EXCLUDE

    limit = QueryInt(load_default=outputs.DEFAULT_LIMIT, minimum=1, maximum=outputs.MAX_LIMIT)


@bp.get(f"/feed/all.<{_KINDS}:kind>")
@describe("Every feed's articles as RSS, Atom or JSON Feed", query=FeedOutputQuerySchema,
          content=FEED_DOCUMENT, empty={304: "Not modified (If-None-Match / If-Modified-Since)"},
          public=True)
def all_feeds(kind):
    return _serve(None, kind)


@bp.get(f"/feed/<feed_id>.<{_KINDS}:kind>")
@describe("One feed's articles as RSS, Atom or JSON Feed", query=FeedOutputQuerySchema,
          content=FEED_DOCUMENT, empty={304: "Not modified (If-None-Match / If-Modified-Since)"},
          public=True)
def one_feed(feed_id, kind):
    return _serve(feed_id, kind)


def _serve(feed_id, kind):
    query = load_query(FeedOutputQuerySchema())
    public = settings().public_base_url
    # Without a configured public address the links come from the Host header: never let
    # a shared cache hand one client's Host to another.
    base_url = f"{public}/" if public else request.url_root
    self_url = f"{public}{request.path}" if public else request.base_url
    document = outputs.build_feed_document(
        feed_id, kind, query["limit"], base_url=base_url, self_url=self_url,
        if_none_match=request.headers.get("If-None-Match"),
        if_modified_since=request.headers.get("If-Modified-Since"),
    )
    response = Response(status=304) if document.not_modified else Response(
        document.body, content_type=document.content_type)
    response.headers["ETag"] = document.etag
    if document.last_modified is not None:
        response.last_modified = document.last_modified
    # Readers poll; a short lifetime plus cheap revalidation keeps new articles visible.
    if public:
        response.headers["Cache-Control"] = "public, max-age=60"
    else:
        response.headers["Cache-Control"] = "private, max-age=60"
        response.headers["Vary"] = "Host, X-Forwarded-Host, X-Forwarded-Proto"
    return response
