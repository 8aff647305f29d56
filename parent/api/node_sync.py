"""Routes children (and existing WeRSS nodes) call with AK-SK credentials."""

from flask import Blueprint, current_app, g, make_response, request

from shared import paths
from shared.envelope import CURSOR_HEADER, NEXT_AFTER_HEADER
from shared.schemas import (
    ChangesQuerySchema, ChangesSchema, FeedSchema, HeartbeatSchema, PageQuerySchema,
    ReportResultSchema,
)
from shared import errors as codes

from ..auth import node_required
from ..models.replication import ENTITY_FEED, ENTITY_MESSAGE_TASK
from ..services import node_sync, nodes, pull_pages, wechat
from . import werss_shapes
from .request_response import idempotent, load_body, load_query, respond
from .dumps import WhoamiSchema
from ..openapi import OBJECT, describe

bp = Blueprint("node_sync", __name__)

# Built once: a schema's __init__ deep-copies its declared fields, and load/dump keep no
# per-call state on the instance (marshmallow 4 has no schema context), so threads share them.
_HEARTBEAT = HeartbeatSchema()
_WHOAMI = WhoamiSchema()
_PAGE_QUERY = PageQuerySchema()
_CHANGES_QUERY = ChangesQuerySchema()
_REPORT_RESULT = ReportResultSchema()


@bp.post(paths.HEARTBEAT)
@describe("Heartbeat: report version, capacity and capabilities; get commands",
          body=HeartbeatSchema, body_required=False, data=OBJECT)
@node_required
@idempotent
def heartbeat():
    payload = load_body(_HEARTBEAT, required=False)
    data = nodes.record_heartbeat(g.node, payload)
    commands = wechat.deliver_commands(g.node)  # e.g. an admin asked for a WeChat login
    if commands:
        data["commands"] = commands
    return respond(data, "心跳成功")


@bp.get(paths.WHOAMI)
@describe("The node these credentials belong to",
          data=WhoamiSchema)
@node_required
def whoami():
    return respond(_WHOAMI.dump({"node_id": g.node.id, "name": g.node.name,
                                        "node_type": g.node.node_type}))


def _full_pulls() -> dict[str, tuple[int, int, bytes]]:
    """entity -> (cursor, item count, encoded body) of the app's last full pull.

    Per app (so per database) and per process: a fleet re-pulling 10,000 unchanged
    feeds costs one indexed query, not a rebuild of the list.
    """
    return current_app.extensions.setdefault("werss.full_pulls", {})


def _werss_tasks(entity: str) -> bool:
    return entity == ENTITY_MESSAGE_TASK and werss_shapes.on_werss_prefix()


def _pull_page(entity: str):
    query = load_query(_PAGE_QUERY)
    werss = _werss_tasks(entity)
    if_none_match = request.headers.get("If-None-Match")
    result = pull_pages.pull_page(g.node, entity,
                                  werss_shapes.their_etag(if_none_match) if werss else if_none_match,
                                  query["after"], query["limit"])
    etag = werss_shapes.etag(result.etag) if werss else result.etag
    headers = {"ETag": etag, CURSOR_HEADER: str(result.cursor), "Cache-Control": "no-cache"}
    if result.next_after is not None:
        headers[NEXT_AFTER_HEADER] = result.next_after
    if result.not_modified:
        response = make_response("", 304)
        response.headers.update(headers)
        return response
    items = result.items or []  # None only on a 304
    return respond(werss_shapes.tasks(items) if werss else items, headers=headers)


def _pull(entity: str):
    if "limit" in request.args:  # a paged full pull; without `limit`, the whole list
        return _pull_page(entity)
    # Tasks on the WeRSS prefix have another shape (werss_shapes), cached apart.
    werss = entity == ENTITY_MESSAGE_TASK and werss_shapes.on_werss_prefix()
    key = entity + ":werss" if werss else entity
    held = _full_pulls().get(key)
    if_none_match = request.headers.get("If-None-Match")
    result = node_sync.pull_all(g.node, entity,
                                werss_shapes.their_etag(if_none_match) if werss else if_none_match,
                                cached=held[:2] if held else None)
    etag = werss_shapes.etag(result.etag) if werss else result.etag
    headers = {"ETag": etag, CURSOR_HEADER: str(result.cursor), "Cache-Control": "no-cache"}
    if result.not_modified:
        response = make_response("", 304)
    elif result.reuse_cached and held is not None:  # reused only when it was passed
        response = make_response(held[2], 200)
        response.mimetype = "application/json"
    else:
        items = result.items or []  # None only on a 304
        response = respond(werss_shapes.tasks(items) if werss else items, headers=headers)
        _full_pulls()[key] = (result.cursor, len(items), response.get_data())
    response.headers.update(headers)
    return response


@bp.get(paths.FEEDS)
@describe("Pull every feed (or, with limit, a page after `after`)", query=PageQuerySchema,
          data={"type": "array", "items": FeedSchema}, empty={304: "Not modified (If-None-Match)"})
@node_required
def pull_feeds():
    return _pull(ENTITY_FEED)


@bp.get(paths.MESSAGE_TASKS)
@describe("Pull every message task (or, with limit, a page after `after`)", query=PageQuerySchema,
          data={"type": "array", "items": OBJECT}, empty={304: "Not modified (If-None-Match)"},
          description="Under /api/v1/wx/cascade the fields headers, cookies and mps_id are "
                      "JSON text, as a WeRSS parent serves them (docs/COMPAT.md).")
@node_required
def pull_message_tasks():
    return _pull(ENTITY_MESSAGE_TASK)


def _changes(entity: str):
    query = load_query(_CHANGES_QUERY)
    werss = _werss_tasks(entity)
    if_none_match = request.headers.get("If-None-Match")

    def etag(cursor) -> str:
        value = pull_pages.changes_etag(entity, cursor)
        return werss_shapes.etag(value) if werss else value

    if pull_pages.changes_not_modified(
            g.node, entity, query["since"],
            werss_shapes.their_etag(if_none_match) if werss else if_none_match):
        response = make_response("", 304)
        response.headers["ETag"] = etag(query["since"])
        return response
    data = node_sync.pull_changes(g.node, entity, query["since"], query["limit"])
    if werss:
        data = {**data, "items": werss_shapes.tasks(data["items"])}
    return respond(data, headers={"ETag": etag(data["cursor"])})


@bp.get(paths.FEED_CHANGES)
@describe("Feed changes since a cursor", query=ChangesQuerySchema, data=ChangesSchema,
          empty={304: "Not modified (If-None-Match)"}, errors=(codes.CURSOR_EXPIRED,))
@node_required
def feed_changes():
    return _changes(ENTITY_FEED)


@bp.get(paths.MESSAGE_TASK_CHANGES)
@describe("Message-task changes since a cursor", query=ChangesQuerySchema, data=ChangesSchema,
          empty={304: "Not modified (If-None-Match)"}, errors=(codes.CURSOR_EXPIRED,))
@node_required
def message_task_changes():
    return _changes(ENTITY_MESSAGE_TASK)


@bp.post(paths.REPORT_RESULT)
@describe("Report a task's results (the seed's report route)", body=ReportResultSchema, data=OBJECT)
@node_required
@idempotent
def report_result():
    payload = load_body(_REPORT_RESULT)
    return respond(node_sync.store_report(g.node, payload), "结果上报成功")
