"""Admin management of nodes: create, list, filter, update, delete, credentials."""

import pytest

from parent.extensions import db
from parent.models import Node
from tests.conftest import create_node_with_credentials
from tests.helpers import NodeCaller, assert_error

NODES = "/api/v1/cascade/nodes"


def test_create_node_answers_201_with_the_seed_message(admin):
    response = admin.post(NODES, json={"node_type": 1, "name": "child-a", "description": "d",
                                       "labels": ["cn-east"], "capacity": 2})
    body = response.get_json()
    assert response.status_code == 201 and body["message"] == "节点创建成功"
    data = body["data"]
    assert data["node_id"] and data["node_type"] == 1 and data["name"] == "child-a"
    assert data["is_active"] is True and data["status"] == "offline"
    assert data["labels"] == ["cn-east"] and data["capacity"] == 2
    assert data["api_key"] is None and "api_secret" not in data


def test_duplicate_names_are_refused(admin):
    admin.post(NODES, json={"name": "same"})
    assert_error(admin.post(NODES, json={"name": "same"}), 409, "name_taken")


def test_a_deleted_nodes_name_can_be_reused(admin):
    node_id = admin.post(NODES, json={"name": "reuse"}).get_json()["data"]["node_id"]
    admin.delete(f"{NODES}/{node_id}")
    assert admin.post(NODES, json={"name": "reuse"}).status_code == 201


def test_credentials_are_shown_once_and_never_listed(app, admin):
    creds = create_node_with_credentials(admin, name="c1")
    listing = admin.get(NODES).get_data(as_text=True)
    single = admin.get(f"{NODES}/{creds.node_id}").get_data(as_text=True)
    assert creds.api_key in listing and creds.api_secret not in listing
    assert creds.api_secret not in single
    with app.app_context():
        node = db.session.get(Node, creds.node_id)
        assert creds.api_secret not in (node.secret_ciphertext or "")


def test_credentials_response_is_not_cached(admin):
    node_id = admin.post(NODES, json={"name": "nc"}).get_json()["data"]["node_id"]
    response = admin.post(f"{NODES}/{node_id}/credentials")
    assert response.get_json()["message"] == "凭证生成成功"
    assert response.headers["Cache-Control"] == "no-store"


def test_list_filters_by_type_and_status_and_pages(admin, client, clock):
    online = create_node_with_credentials(admin, name="online")
    create_node_with_credentials(admin, name="offline")
    disabled = create_node_with_credentials(admin, name="disabled")
    admin.post(NODES, json={"name": "upstream", "node_type": 0})
    admin.put(f"{NODES}/{disabled.node_id}", json={"is_active": False})
    NodeCaller(client, online, clock=clock).post("/heartbeat", json={"version": "1.2.3"})

    def names(query):
        data = admin.get(f"{NODES}?{query}").get_json()["data"]
        return sorted(item["name"] for item in data["items"]), data["total"]

    assert names("node_type=1") == (["disabled", "offline", "online"], 3)
    assert names("node_type=0") == (["upstream"], 1)
    assert names("status=online") == (["online"], 1)
    assert names("status=offline&node_type=1") == (["offline"], 1)
    assert names("status=disabled") == (["disabled"], 1)
    page = admin.get(f"{NODES}?page=2&page_size=3").get_json()["data"]
    assert page["total"] == 4 and len(page["items"]) == 1 and page["page"] == 2
    item = next(i for i in admin.get(NODES).get_json()["data"]["items"] if i["name"] == "online")
    assert item["version"] == "1.2.3" and item["last_heartbeat_at"].endswith("Z")


@pytest.mark.parametrize("query", ["node_type=2", "status=sleepy", "page=0", "page_size=201",
                                   "page=abc"])
def test_bad_list_filters_are_422(admin, query):
    assert_error(admin.get(f"{NODES}?{query}"), 422, "validation_failed")


def test_update_changes_only_given_fields(admin):
    node_id = admin.post(NODES, json={"name": "u", "description": "keep"}).get_json()["data"]["node_id"]
    response = admin.put(f"{NODES}/{node_id}", json={"capacity": 9, "labels": ["a", "b"]})
    data = response.get_json()["data"]
    assert data["capacity"] == 9 and data["labels"] == ["a", "b"] and data["description"] == "keep"


def test_delete_hides_the_node(admin):
    node_id = admin.post(NODES, json={"name": "gone"}).get_json()["data"]["node_id"]
    assert admin.delete(f"{NODES}/{node_id}").status_code == 200
    assert_error(admin.get(f"{NODES}/{node_id}"), 404, "not_found")
    assert_error(admin.delete(f"{NODES}/{node_id}"), 404, "not_found")
    assert admin.get(NODES).get_json()["data"]["total"] == 0


def test_unknown_node_is_404_everywhere(admin):
    for method, suffix in (("GET", ""), ("PUT", ""), ("DELETE", ""), ("POST", "/credentials")):
        response = admin.open(method, f"{NODES}/nope{suffix}", json={} if method == "PUT" else None)
        assert_error(response, 404, "not_found")


def test_admin_routes_work_under_the_wx_prefix(admin):
    response = admin.post("/api/v1/wx/cascade/nodes", json={"name": "wx"})
    assert response.status_code == 201
    assert admin.get("/api/v1/wx/cascade/nodes").get_json()["data"]["total"] == 1
