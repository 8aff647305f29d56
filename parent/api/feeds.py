"""Admin CRUD of feeds, and bulk import from JSON or OPML."""

from flask import Blueprint, request

from shared import errors as codes

from ..auth import admin_required
from ..paging import page_body
from ..errors import ApiError
from ..schemas import FeedCreateSchema, FeedListQuerySchema, FeedUpdateSchema
from ..services import feeds
from .request_response import load_body, load_query, read_json, respond
from .dumps import FeedAdminSchema
from ..openapi import DELETED, OBJECT, describe, page_of

# A list of feeds as POST /feeds takes them (bare or as {"feeds": [...]}), or OPML as the
# body or as the multipart field `file`.
_FEEDS = {"type": "array", "items": FeedCreateSchema}
IMPORT_BODY = {
    "application/json": {"oneOf": [_FEEDS, {"type": "object", "required": ["feeds"],
                                             "properties": {"feeds": _FEEDS}}]},
    "text/x-opml": {"type": "string"},
    "multipart/form-data": {"type": "object", "required": ["file"],
                            "properties": {"file": {"type": "string",
                                                    "contentMediaType": "text/x-opml"}}},
}

bp = Blueprint("feeds", __name__)
_feed = FeedAdminSchema()

_OPML_TYPES = {"text/x-opml", "text/xml", "application/xml", "application/opml+xml",
               "text/x-opml+xml"}


@bp.post("/feeds")
@describe("Add a feed (a WeChat account or an RSS source)", body=FeedCreateSchema,
          data=FeedAdminSchema, status=201, errors=(codes.ALREADY_EXISTS,))
@admin_required
def create_feed():
    feed = feeds.create_feed(load_body(FeedCreateSchema()))
    return respond(_feed.dump(feed), "公众号添加成功", status=201)


@bp.get("/feeds")
@describe("List feeds, a page at a time", query=FeedListQuerySchema, data=page_of(FeedAdminSchema))
@admin_required
def list_feeds():
    query = load_query(FeedListQuerySchema())
    rows, total = feeds.list_feeds(query)
    return respond(page_body(_feed.dump(rows, many=True), total, query))


@bp.get("/feeds/<feed_id>")
@describe("One feed", data=FeedAdminSchema)
@admin_required
def get_feed(feed_id):
    return respond(_feed.dump(feeds.get_feed(feed_id)))


@bp.put("/feeds/<feed_id>")
@describe("Change a feed (fields given are changed)", body=FeedUpdateSchema, data=FeedAdminSchema,
          errors=(codes.ALREADY_EXISTS,))
@admin_required
def update_feed(feed_id):
    feed = feeds.update_feed(feed_id, load_body(FeedUpdateSchema(partial=True)))
    return respond(_feed.dump(feed), "公众号更新成功")


@bp.delete("/feeds/<feed_id>")
@describe("Delete a feed", data=DELETED)
@admin_required
def delete_feed(feed_id):
    feeds.delete_feed(feed_id)
    return respond({"id": feed_id, "deleted": True}, "公众号删除成功")


@bp.post("/feeds/import")
@describe("Import feeds from JSON ({\"feeds\": [...]} or a list) or an OPML file",
          body=IMPORT_BODY, data=OBJECT)
@admin_required
def import_feeds():
    """Import a JSON list ({"feeds": [...]} or a bare list), or an OPML file."""
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("file")
        if upload is None:
            raise ApiError(codes.VALIDATION_FAILED, details={"file": ["Attach the file as 'file'."]})
        rows = feeds.parse_opml(upload.read())
    elif request.mimetype in _OPML_TYPES:
        rows = feeds.parse_opml(request.get_data())
    else:
        payload = read_json()
        rows = payload.get("feeds") if isinstance(payload, dict) else payload
        if not isinstance(rows, list):
            raise ApiError(codes.VALIDATION_FAILED,
                           details={"feeds": ["Send a list of feeds, or {\"feeds\": [...]}."]})
    report = feeds.import_feeds(rows)
    return respond(report, f"导入完成: {report['created']} created, "
                           f"{len(report['skipped'])} skipped, {len(report['rejected'])} rejected")
