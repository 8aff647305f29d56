"""WeChat through the cascade: admin logins of a node, the node's side of them, search."""

from flask import Blueprint, g, make_response

from marshmallow import RAISE, Schema

from shared import paths
from shared.schemas import SafeStr
from shared.wechat_schemas import CommandResultSchema, LoginStateSchema

from ..auth import admin_required, node_required
from ..services import wechat
from ._io import idempotent, load_body, respond

bp = Blueprint("wechat", __name__)  # under both cascade prefixes
search_bp = Blueprint("wechat_search", __name__)  # under /api/v1


class SearchSchema(Schema):
    class Meta:
        unknown = RAISE

    query = SafeStr(required=True, min_length=1, max_length=64)


@bp.post("/nodes/<node_id>/wechat/login")
@admin_required
def request_login(node_id):
    return respond(wechat.request_login(node_id), "已请求节点登录微信", status=202)


@bp.get("/nodes/<node_id>/wechat")
@admin_required
def get_login(node_id):
    return respond(wechat.get_login(node_id))


@bp.get("/nodes/<node_id>/wechat/qr.png")
@admin_required
def qr_image(node_id):
    response = make_response(wechat.qr_image(node_id))
    response.mimetype = "image/png"
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post(paths.WECHAT_LOGIN_STATE)
@node_required
@idempotent
def login_state():
    return respond(wechat.record_login_state(g.node, load_body(LoginStateSchema())))


@bp.post(paths.as_rule(paths.COMMAND_RESULT))
@node_required
@idempotent
def command_result(command_id):
    return respond(wechat.record_command_result(g.node, command_id,
                                                load_body(CommandResultSchema())))


@search_bp.post("/feeds/search")
@admin_required
def search():
    values = load_body(SearchSchema())
    return respond(wechat.search_accounts(values["query"].strip()))
