"""Admin management of cascade nodes and their credentials."""

from flask import Blueprint

from shared import errors as codes

from ..auth import admin_required
from ..paging import page_body
from ..clock import now
from ..schemas import NodeCreateSchema, NodeListQuerySchema, NodeUpdateSchema, TestConnectionSchema
from ..services import connectivity, nodes
from .request_response import load_body, load_query, respond
from .dumps import CredentialsSchema, NodeAdminSchema, NodeDeletedSchema
from ..openapi import OBJECT, describe, page_of

bp = Blueprint("admin_nodes", __name__)


@bp.post("/nodes")
@describe("Register a node", body=NodeCreateSchema, data=NodeAdminSchema, status=201,
          errors=(codes.NAME_TAKEN,))
@admin_required
def create_node():
    node = nodes.create_node(load_body(NodeCreateSchema()))
    return respond(NodeAdminSchema().dump(node), "节点创建成功", status=201)


@bp.get("/nodes")
@describe("List nodes, a page at a time", query=NodeListQuerySchema, data=page_of(NodeAdminSchema))
@admin_required
def list_nodes():
    query = load_query(NodeListQuerySchema())
    rows, total = nodes.list_nodes(query)
    return respond(page_body(NodeAdminSchema(moment=now()).dump(rows, many=True), total, query))


@bp.get("/nodes/<node_id>")
@describe("One node", data=NodeAdminSchema)
@admin_required
def get_node(node_id):
    return respond(NodeAdminSchema().dump(nodes.get_node(node_id)))


@bp.put("/nodes/<node_id>")
@describe("Change a node (fields given are changed)", body=NodeUpdateSchema, data=NodeAdminSchema,
          errors=(codes.NAME_TAKEN,))
@admin_required
def update_node(node_id):
    node = nodes.update_node(node_id, load_body(NodeUpdateSchema(partial=True)))
    return respond(NodeAdminSchema().dump(node), "节点更新成功")


@bp.delete("/nodes/<node_id>")
@describe("Delete a node (its leases go back to the queue)",
          data=NodeDeletedSchema)
@admin_required
def delete_node(node_id):
    nodes.delete_node(node_id)
    return respond(NodeDeletedSchema().dump({"node_id": node_id, "deleted": True}), "节点删除成功")


@bp.post("/nodes/<node_id>/credentials")
@describe("Issue (or rotate) a node's api_key and api_secret; the secret is shown once",
          data=CredentialsSchema)
@admin_required
def issue_credentials(node_id):
    node, api_key, api_secret = nodes.issue_credentials(node_id)
    return respond(
        CredentialsSchema().dump({"node_id": node.id, "api_key": api_key,
                                  "api_secret": api_secret}),
        "凭证生成成功",
        headers={"Cache-Control": "no-store"},
    )


@bp.post("/nodes/<node_id>/test-connection")
@describe("Check that the parent can reach a node at its api_url", body=TestConnectionSchema,
          body_required=False, data=OBJECT)
@admin_required
def test_connection(node_id):
    values = load_body(TestConnectionSchema(), required=False)
    return respond(connectivity.test_connection(node_id, values))
