"""Full pulls in keyset pages (`?limit=&after=`), and 304s on incremental pulls."""

import pytest

from shared.envelope import CURSOR_HEADER, NEXT_AFTER_HEADER
from tests.helpers import assert_error


def _feeds(admin, count, start=0):
    for index in range(start, start + count):
        response = admin.post("/api/v1/feeds", json={
            "mp_name": f"feed {index}", "source_type": "rss",
            "source_url": f"http://127.0.0.1:1/{index}.xml"})
        assert response.status_code == 201, response.get_json()


def _pull_all_pages(node_caller, limit):
    pages, after = [], None
    while True:
        params = {"limit": limit, **({"after": after} if after else {})}
        response = node_caller.get("/feeds", params=params)
        assert response.status_code == 200, response.get_json()
        pages.append(response)
        after = response.headers.get(NEXT_AFTER_HEADER)
        if not after:
            return pages


def test_pages_together_are_the_full_list_in_id_order(admin, node_caller):
    _feeds(admin, 7)
    full = node_caller.get("/feeds")
    pages = _pull_all_pages(node_caller, 3)
    items = [item for page in pages for item in page.get_json()["data"]]
    assert [len(page.get_json()["data"]) for page in pages] == [3, 3, 1]
    assert items == full.get_json()["data"]
    assert [item["id"] for item in items] == sorted(item["id"] for item in items)
    assert pages[0].headers["ETag"] == full.headers["ETag"]
    assert pages[0].headers[CURSOR_HEADER] == full.headers[CURSOR_HEADER]


def test_a_list_that_fills_its_last_page_ends_with_an_empty_page(admin, node_caller):
    _feeds(admin, 4)
    pages = _pull_all_pages(node_caller, 2)
    assert [len(page.get_json()["data"]) for page in pages] == [2, 2, 0]


def test_page_one_with_the_current_etag_is_a_304(admin, node_caller):
    _feeds(admin, 2)
    etag = node_caller.get("/feeds", params={"limit": 1}).headers["ETag"]
    response = node_caller.get("/feeds", params={"limit": 1}, headers={"If-None-Match": etag})
    assert response.status_code == 304 and response.data == b""
    _feeds(admin, 1, start=2)
    again = node_caller.get("/feeds", params={"limit": 1}, headers={"If-None-Match": etag})
    assert again.status_code == 200 and again.headers["ETag"] != etag


@pytest.mark.parametrize("limit", ["0", "5001", "x", ""])
def test_a_bad_page_size_is_refused_with_the_field_named(node_caller, limit):
    response = node_caller.get("/feeds", params={"limit": limit})
    assert_error(response, 422, "validation_failed")
    assert "limit" in response.get_json()["details"]


def test_message_tasks_page_too(admin, node_caller):
    for index in range(3):
        response = admin.post("/api/v1/message-tasks", json={
            "name": f"t{index}", "message_type": 1, "web_hook_url": "http://127.0.0.1:1/hook",
            "message_template": "x", "cron_exp": "0 8 * * *"})
        assert response.status_code == 201, response.get_json()
    first = node_caller.get("/message-tasks", params={"limit": 2})
    rest = node_caller.get("/message-tasks", params={"limit": 2,
                                                      "after": first.headers[NEXT_AFTER_HEADER]})
    assert len(first.get_json()["data"]) == 2 and len(rest.get_json()["data"]) == 1
    assert NEXT_AFTER_HEADER not in rest.headers


def test_changes_from_the_newest_cursor_with_its_etag_are_a_304(admin, node_caller):
    _feeds(admin, 2)
    changes = node_caller.get("/feeds/changes", params={"since": 0})
    cursor, etag = changes.get_json()["data"]["cursor"], changes.headers["ETag"]
    unchanged = node_caller.get("/feeds/changes", params={"since": cursor},
                                headers={"If-None-Match": etag})
    assert unchanged.status_code == 304
    _feeds(admin, 1, start=2)
    changed = node_caller.get("/feeds/changes", params={"since": cursor},
                              headers={"If-None-Match": etag})
    assert changed.status_code == 200 and len(changed.get_json()["data"]["items"]) == 1
    assert changed.headers["ETag"] != etag
