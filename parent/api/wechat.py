"""WeChat through the cascade: admin logins of a node, the node's side of them, search."""

from flask import Blueprint, g, make_response

from marshmallow import RAISE, Schema

from shared import paths
from shared.schemas import SafeStr
from shared.wechat_schemas import CommandResultSchema, LoginStateSchema
from shared import errors as codes

from ..auth import admin_required, node_required
from ..services import wechat
from .request_response import idempotent, load_body, respond
from ..openapi import ANY, OBJECT, describe

bp = Blueprint("wechat", __name__)  # under both cascade prefixes
search_bp = Blueprint("wechat_search", __name__)  # under /api/v1

# Built once (a Schema's __init__ deep-copies its fields; load keeps no per-call state
# on the instance, so threads share them): see parent/api/node_sync.py.
_LOGIN_STATE = LoginStateSchema()
_COMMAND_RESULT = CommandResultSchema()


class SearchSchema(Schema):
    class Meta:
        unknown = RAISE

    query = SafeStr(required=True, min_length=1, max_length=64)


@bp.post("/nodes/<node_id>/wechat/login")
@describe("Ask a node to start a WeChat login (a QR code follows)", data=OBJECT, status=202,
          errors=(codes.WECHAT_UNAVAILABLE, codes.CONFLICT))
@admin_required
def request_login(node_id):
    return respond(wechat.request_login(node_id), "已请求节点登录微信", status=202)


@bp.get("/nodes/<node_id>/wechat")
@describe("A node's WeChat login state", data=OBJECT)
@admin_required
def get_login(node_id):
    return respond(wechat.get_login(node_id))


@bp.get("/nodes/<node_id>/wechat/qr.png")
@describe("The WeChat login QR code to scan",
          content={"image/png": {"type": "string", "contentMediaType": "image/png"}},
          errors=(codes.QR_NOT_AVAILABLE,))
@admin_required
def qr_image(node_id):
    response = make_response(wechat.qr_image(node_id))
    response.mimetype = "image/png"
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post(paths.WECHAT_LOGIN_STATE)
@describe("Node: report its WeChat login state (QR, scanned, logged in)", body=LoginStateSchema,
          data=ANY, errors=(codes.LOGIN_SUPERSEDED,))
@node_required
@idempotent
def login_state():
    return respond(wechat.record_login_state(g.node, load_body(_LOGIN_STATE)))


@bp.post(paths.as_rule(paths.COMMAND_RESULT))
@describe("Node: answer a command the parent sent it", body=CommandResultSchema, data=ANY,
          errors=(codes.CONFLICT,))
@node_required
@idempotent
def command_result(command_id):
    return respond(wechat.record_command_result(g.node, command_id,
                                                load_body(_COMMAND_RESULT)))


@search_bp.post("/feeds/search")
@describe("Search WeChat accounts through an online node", body=SearchSchema, data=ANY,
          errors=(codes.WECHAT_UNAVAILABLE, codes.WECHAT_TIMEOUT, codes.WECHAT_FAILED))
@admin_required
def search():
    values = load_body(SearchSchema())
    return respond(wechat.search_accounts(values["query"].strip()))
