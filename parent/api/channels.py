"""Push channels: send permits for nodes, test messages for admins."""

from flask import Blueprint, g

from shared import paths
from shared import errors as codes
from shared.channels import send_permit_schema

from ..auth import admin_required, node_required
from ..services import channel_tests, send_budgets
from .request_response import load_body, respond
from ..openapi import OBJECT, describe

node_bp = Blueprint("channel_permits", __name__)
admin_bp = Blueprint("channel_tests", __name__)


@node_bp.post(paths.SEND_PERMITS)
@describe("Reserve a send under a channel's rate budget", body=send_permit_schema(), data=OBJECT,
          errors=(codes.FORBIDDEN, codes.SEND_BUDGET_BUSY))
@node_required
def send_permit():
    body = load_body(send_permit_schema())
    return respond(send_budgets.reserve_for_node(g.node, body["channel"], body["destination"]))


@admin_bp.post("/message-tasks/<task_id>/test")
@describe("Send a test message through a task's channel", data=OBJECT,
          errors=(codes.NOT_FOUND, codes.SEND_BUDGET_EXHAUSTED))
@admin_required
def test_message_task(task_id):
    reply = channel_tests.send_test_message(task_id)
    return respond(reply, "测试消息已发送" if reply["ok"] else "渠道拒绝了测试消息")
