"""Every admin list pages the same way: limit/offset or page/page_size, one page shape."""

from __future__ import annotations

import pytest

from tests.conftest import create_node_with_credentials
from tests.helpers import NodeCaller, assert_error

PAGE_KEYS = {"items", "total", "page", "page_size", "limit", "offset"}
LISTS = ["/api/v1/cascade/nodes", "/api/v1/cascade/sync-logs", "/api/v1/cascade/reports",
         "/api/v1/feeds", "/api/v1/message-tasks", "/api/v1/cascade/allocations",
         "/api/v1/cascade/feed-status", "/api/v1/articles", "/api/v1/wx/cascade/nodes",
         "/api/v1/deliveries"]


@pytest.fixture
def three_of_everything(admin, client):
    feed_ids = []
    for index in range(3):
        creds = create_node_with_credentials(admin, name=f"n{index}")
        NodeCaller(client, creds, mode="plain").post("/report-result", json={
            "task_id": "t", "results": [], "timestamp": None})
        response = admin.post("/api/v1/feeds", json={
            "mp_name": f"f{index}", "source_type": "rss",
            "source_url": f"http://127.0.0.1:1/{index}.xml"})
        feed_ids.append(response.get_json()["data"]["id"])
    task_ids = [admin.post("/api/v1/message-tasks", json={
        "name": f"t{index}", "cron_exp": "0 8 * * *", "message_type": 1,
        "web_hook_url": f"http://127.0.0.1:1/hook-{index}", "push_newest": 1,
        "mps_id": [{"id": feed_ids[index], "mp_name": f"f{index}"}]}).get_json()["data"]["id"]
        for index in range(3)]
    for task_id in task_ids:
        admin.post("/api/v1/cascade/dispatch", json={"task_id": task_id})
    creds = create_node_with_credentials(admin, name="uploader")
    caller = NodeCaller(client, creds, mode="plain")
    for lease in caller.post("/claim", json={"max": 3, "wait": 0}).get_json()["data"]["leases"]:
        feed_id = lease["feeds"][0]["id"]
        caller.post("/articles", json={"lease_id": lease["lease_id"], "articles": [{
            "id": f"a-{feed_id}", "mp_id": feed_id, "title": "t", "url": "http://x.invalid/",
            "publish_time": 1764300000}]})
        caller.post(f"/leases/{lease['lease_id']}/deliveries",
                    json={"feed_id": feed_id, "article_ids": [f"a-{feed_id}"]})


@pytest.mark.parametrize("route", LISTS)
def test_both_spellings_give_the_same_page_in_the_same_shape(admin, three_of_everything, route):
    by_offset = admin.get(f"{route}?limit=1&offset=1").get_json()["data"]
    by_page = admin.get(f"{route}?page=2&page_size=1").get_json()["data"]
    assert set(by_offset) == set(by_page) == PAGE_KEYS
    assert by_offset == by_page
    assert (by_page["page"], by_page["page_size"], by_page["limit"], by_page["offset"]) == (2, 1, 1, 1)
    assert by_page["total"] >= 3 and len(by_page["items"]) == 1
    everything = admin.get(f"{route}?limit=200").get_json()["data"]["items"]
    assert by_page["items"] == everything[1:2]


@pytest.mark.parametrize("route", LISTS)
@pytest.mark.parametrize("query,field", [("limit=10&page_size=20", "limit"),
                                         ("page=2&offset=0&limit=5", "offset"),
                                         ("limit=201", "limit"), ("page_size=0", "page_size"),
                                         ("offset=-1", "offset")])
def test_contradictory_or_out_of_range_paging_is_a_422_naming_the_field(admin, route, query,
                                                                        field):
    response = admin.get(f"{route}?{query}")
    assert_error(response, 422, "validation_failed")
    assert field in response.get_json()["details"]


def test_an_offset_between_pages_is_honoured(admin, three_of_everything):
    items = admin.get("/api/v1/feeds?limit=2&offset=1").get_json()["data"]["items"]
    everything = admin.get("/api/v1/feeds?limit=200").get_json()["data"]["items"]
    assert items == everything[1:3]


def test_the_seeds_sync_log_query_still_works(admin, three_of_everything):
    data = admin.get("/api/v1/cascade/sync-logs?limit=50").get_json()["data"]
    assert data["limit"] == 50 and data["offset"] == 0 and data["page"] == 1
