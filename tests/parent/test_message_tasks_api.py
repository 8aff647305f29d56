"""Admin CRUD of message tasks, and what nodes pull of them."""

from __future__ import annotations

import json
import uuid

import pytest

from shared.envelope import CURSOR_HEADER
from tests.helpers import NodeCaller, assert_error

TASKS = "/api/v1/message-tasks"
HOOK = "https://oapi.dingtalk.com/robot/send?access_token=abc"
MPS = [{"id": "MP_WXS_3092186067", "mp_name": "人民日报"}]

TASK_FIELDS = {"id", "name", "message_type", "message_template", "web_hook_url", "mps_id",
               "cron_exp", "status", "headers", "cookies", "created_at", "updated_at"}


def task(**fields) -> dict:
    return {"name": "早报", "message_type": 1, "message_template": "{{ article.title }}",
            "web_hook_url": HOOK, "mps_id": MPS, "cron_exp": "0 8 * * *", **fields}


ADMIN_ONLY_FIELDS = ("schedule_timezone", "next_run_at", "next_run_local")


def create(admin, payload: dict) -> dict:
    response = admin.post(TASKS, json=payload)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["data"]


def as_nodes_see_it(task_view: dict) -> dict:
    """An admin's view of a task without the next-run fields only admins are shown."""
    return {k: v for k, v in task_view.items() if k not in ADMIN_ONLY_FIELDS}


def total_tasks(admin) -> int:
    return admin.get(TASKS).get_json()["data"]["total"]


def node_tasks(node_caller, **kwargs):
    return node_caller.get("/message-tasks", **kwargs)


def changes(node_caller, since):
    response = node_caller.get("/message-tasks/changes", params={"since": since})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]


# --- create ---------------------------------------------------------------------------


def test_create_webhook_task(admin):
    response = admin.post(TASKS, json=task(headers={"X-Token": "t"}, cookies="a=1; b=2",
                                           labels=["cn"]))

    assert response.status_code == 201
    data = response.get_json()["data"]
    assert TASK_FIELDS <= set(data)
    uuid.UUID(data["id"])
    assert data["name"] == "早报"
    assert data["message_type"] == 1
    assert data["message_template"] == "{{ article.title }}"
    assert data["web_hook_url"] == HOOK
    assert data["mps_id"] == MPS
    assert data["cron_exp"] == "0 8 * * *"
    assert data["status"] == 1
    assert data["headers"] == {"X-Token": "t"}
    assert data["cookies"] == "a=1; b=2"
    assert data["labels"] == ["cn"]
    assert data["created_at"].endswith("Z")
    assert admin.get(f"{TASKS}/{data['id']}").get_json()["data"] == data


def test_message_task_defaults(admin):
    data = create(admin, {"name": "all feeds", "cron_exp": "*/30 * * * *"})

    assert data["message_type"] == 0
    assert data["web_hook_url"] == ""
    assert data["mps_id"] == []  # every feed
    assert data["headers"] == {}
    assert data["cookies"] == ""
    assert data["status"] == 1


def test_werss_string_forms_of_mps_id_and_headers_are_accepted(admin):
    data = create(admin, task(mps_id=json.dumps(MPS, ensure_ascii=False),
                              headers='{"Content-Type": "application/json"}'))

    assert data["mps_id"] == MPS
    assert data["headers"] == {"Content-Type": "application/json"}


@pytest.mark.parametrize("mps_id", ["", "[]", []])
def test_empty_mps_id_means_every_feed(admin, mps_id):
    assert create(admin, task(mps_id=mps_id))["mps_id"] == []


@pytest.mark.parametrize("cron_exp", [
    "0 8 * * *", "*/5 * * * *", "0 9-18/2 * * 1-5", "30 0 8 * * *", "15 */10 * * * *",
    "0 0 29 2 *",
])
def test_cron_with_five_or_six_fields_is_accepted(admin, cron_exp):
    assert create(admin, task(cron_exp=cron_exp))["cron_exp"] == cron_exp


@pytest.mark.parametrize("cron_exp", [
    "", "every morning", "* * * *", "* * * * * * *", "61 * * * *", "0 25 * * *",
    "0 8 * * 9", "61 0 8 * * *",
    # Issue 8 item 15: never fires, or more often than cascade.min_cron_interval (60 s).
    "0 0 31 2 *", "0 0 30 2 *", "*/1 * * * * *", "*/10 * * * * *", "0,30 * * * * *",
])
def test_invalid_cron_is_422_naming_cron_exp(admin, cron_exp):
    body = assert_error(admin.post(TASKS, json=task(cron_exp=cron_exp)), 422, "validation_failed")

    assert "cron_exp" in body["details"]
    assert total_tasks(admin) == 0


@pytest.mark.parametrize("payload, field", [
    pytest.param(task(web_hook_url=""), "web_hook_url", id="webhook-without-url"),
    pytest.param({"name": "x", "message_type": 1, "cron_exp": "* * * * *"}, "web_hook_url",
                 id="webhook-url-missing"),
    pytest.param(task(web_hook_url="not a url"), "web_hook_url", id="bad-url"),
    pytest.param(task(message_type=2), "message_type", id="type-2"),
    pytest.param(task(message_type="1"), "message_type", id="type-as-string"),
    pytest.param(task(status=2), "status", id="status-2"),
    pytest.param(task(name=""), "name", id="empty-name"),
    pytest.param({"cron_exp": "* * * * *"}, "name", id="no-name"),
    pytest.param({"name": "x"}, "cron_exp", id="no-cron"),
    pytest.param(task(headers=["X-A"]), "headers", id="headers-list"),
    pytest.param(task(headers="{not json"), "headers", id="headers-bad-json"),
    pytest.param(task(headers={"X-A": 1}), "headers", id="header-not-string"),
    pytest.param(task(headers={"X-A": "a\r\nInjected: 1"}), "headers", id="header-crlf"),
    pytest.param(task(headers={"bad name": "v"}), "headers", id="header-bad-name"),
    pytest.param(task(mps_id="{not json"), "mps_id", id="mps-bad-json"),
    pytest.param(task(mps_id=[{"mp_name": "no id"}]), "mps_id", id="mps-without-id"),
    pytest.param(task(mps_id={"id": "x"}), "mps_id", id="mps-not-a-list"),
    pytest.param(task(schedule="daily"), "schedule", id="unknown-field"),
])
def test_invalid_task_is_422_naming_the_field(admin, payload, field):
    body = assert_error(admin.post(TASKS, json=payload), 422, "validation_failed")

    assert field in body["details"]
    assert total_tasks(admin) == 0


def test_message_task_routes_need_an_admin(client, node_caller, admin):
    assert_error(client.get(TASKS), 401, "authentication_required")
    assert_error(client.post(TASKS, json=task()), 401, "authentication_required")
    refused = node_caller.client.post(TASKS, json=task(), headers={
        "Authorization": node_caller.authorization("POST", TASKS, "", json.dumps(task()).encode())})
    assert_error(refused, 401, "wrong_credential_type")
    assert total_tasks(admin) == 0


# --- list, get, update, delete ------------------------------------------------------------


def test_list_pages_and_filters_by_status(admin):
    ids = [create(admin, task(name=f"t{i}", status=i % 2))["id"] for i in range(5)]

    page1 = admin.get(TASKS, query_string={"page": 1, "page_size": 3}).get_json()["data"]
    page2 = admin.get(TASKS, query_string={"page": 2, "page_size": 3}).get_json()["data"]
    enabled = admin.get(TASKS, query_string={"status": 1}).get_json()["data"]
    disabled = admin.get(TASKS, query_string={"status": 0}).get_json()["data"]

    assert page1["total"] == 5 and len(page1["items"]) == 3 and len(page2["items"]) == 2
    assert sorted(t["id"] for t in page1["items"] + page2["items"]) == sorted(ids)
    assert {t["name"] for t in enabled["items"]} == {"t1", "t3"} and enabled["total"] == 2
    assert {t["name"] for t in disabled["items"]} == {"t0", "t2", "t4"}


@pytest.mark.parametrize("params", [{"status": 3}, {"page_size": 500}, {"page": -1}])
def test_bad_list_query_is_422(admin, params):
    assert_error(admin.get(TASKS, query_string=params), 422, "validation_failed")


@pytest.mark.parametrize("method", ["get", "put", "delete"])
def test_unknown_task_is_404_envelope(admin, method):
    kwargs = {"json": {"name": "x"}} if method == "put" else {}

    response = getattr(admin, method)(f"{TASKS}/no-such-task", **kwargs)

    assert_error(response, 404, "not_found")


def test_update_changes_only_the_given_fields(admin, clock):
    created = create(admin, task())
    clock.advance(5)

    response = admin.put(f"{TASKS}/{created['id']}",
                         json={"cron_exp": "0 0 9 * * *", "mps_id": "[]", "headers": "{}"})

    assert response.status_code == 200, response.get_json()
    data = response.get_json()["data"]
    assert data["cron_exp"] == "0 0 9 * * *"
    assert data["mps_id"] == [] and data["headers"] == {}
    assert data["name"] == created["name"] and data["web_hook_url"] == HOOK
    assert data["updated_at"] > created["updated_at"]
    assert admin.get(f"{TASKS}/{created['id']}").get_json()["data"] == data


def test_update_to_webhook_needs_a_url(admin):
    created = create(admin, task(message_type=0, web_hook_url=""))

    body = assert_error(admin.put(f"{TASKS}/{created['id']}", json={"message_type": 1}),
                        422, "validation_failed")
    assert "web_hook_url" in body["details"]
    ok = admin.put(f"{TASKS}/{created['id']}", json={"message_type": 1, "web_hook_url": HOOK})
    assert ok.status_code == 200
    assert ok.get_json()["data"]["message_type"] == 1


def test_webhook_task_cannot_drop_its_url(admin):
    created = create(admin, task())

    body = assert_error(admin.put(f"{TASKS}/{created['id']}", json={"web_hook_url": ""}),
                        422, "validation_failed")
    assert "web_hook_url" in body["details"]


@pytest.mark.parametrize("change, field", [
    ({"cron_exp": "bad"}, "cron_exp"), ({"status": 5}, "status"), ({"name": ""}, "name"),
    ({"id": "other"}, "id"),
])
def test_invalid_update_writes_nothing(admin, change, field):
    created = create(admin, task())

    body = assert_error(admin.put(f"{TASKS}/{created['id']}", json={"cookies": "new", **change}),
                        422, "validation_failed")
    assert field in body["details"]
    assert admin.get(f"{TASKS}/{created['id']}").get_json()["data"] == created


def test_delete_removes_the_task(admin):
    created = create(admin, task())

    response = admin.delete(f"{TASKS}/{created['id']}")

    assert response.status_code == 200
    assert response.get_json()["data"] == {"id": created["id"], "deleted": True}
    assert_error(admin.get(f"{TASKS}/{created['id']}"), 404, "not_found")
    assert total_tasks(admin) == 0


# --- what nodes see ---------------------------------------------------------------------


def test_node_lists_only_enabled_tasks(admin, node_caller):
    enabled = create(admin, task(name="on"))
    create(admin, task(name="off", status=0))

    response = node_tasks(node_caller)

    assert response.status_code == 200
    assert response.get_json()["data"] == [as_nodes_see_it(enabled)]


WERSS_TEXT_FIELDS = ("headers", "cookies", "mps_id")


def test_node_sees_tasks_under_the_werss_prefix_as_werss_stores_them(admin, client, node):
    # WeRSS keeps these three in text columns and json.loads them when it runs the task.
    enabled = create(admin, task(headers={"X-Token": "t0ken", "Accept": "application/json"},
                                 cookies="sid=abc; lang=zh"))
    werss = NodeCaller(client, node, mode="plain", prefix="/api/v1/wx/cascade")
    native = NodeCaller(client, node, mode="plain")

    served = werss.get("/message-tasks").get_json()["data"]

    assert len(served) == 1
    item = served[0]
    assert all(isinstance(item[name], str) for name in WERSS_TEXT_FIELDS)
    assert json.loads(item["headers"]) == {"X-Token": "t0ken", "Accept": "application/json"}
    assert json.loads(item["mps_id"]) == MPS and item["cookies"] == "sid=abc; lang=zh"
    assert {k: v for k, v in item.items() if k not in WERSS_TEXT_FIELDS} == {
        k: v for k, v in as_nodes_see_it(enabled).items() if k not in WERSS_TEXT_FIELDS}
    # The native contract keeps its types, and each shape has its own ETag.
    native_response = native.get("/message-tasks")
    assert native_response.get_json()["data"] == [as_nodes_see_it(enabled)]
    werss_response = werss.get("/message-tasks")
    assert werss_response.headers["ETag"] != native_response.headers["ETag"]
    assert werss.get("/message-tasks", headers={
        "If-None-Match": werss_response.headers["ETag"]}).status_code == 304
    changes = werss.get("/message-tasks/changes", params={"since": 0}).get_json()["data"]
    assert json.loads(changes["items"][0]["headers"])["X-Token"] == "t0ken"


def test_node_gets_304_until_tasks_change(admin, node_caller):
    created = create(admin, task())
    first = node_tasks(node_caller)
    etag = first.headers["ETag"]

    assert node_tasks(node_caller, headers={"If-None-Match": etag}).status_code == 304

    admin.put(f"{TASKS}/{created['id']}", json={"name": "晚报"})
    changed = node_tasks(node_caller, headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.get_json()["data"][0]["name"] == "晚报"
    assert changed.headers["ETag"] != etag


def test_disabling_a_task_tells_nodes_to_drop_it(admin, node_caller):
    created = create(admin, task())
    cursor = node_tasks(node_caller).headers[CURSOR_HEADER]

    admin.put(f"{TASKS}/{created['id']}", json={"status": 0})
    disabled = changes(node_caller, cursor)
    assert disabled["items"] == [] and disabled["deleted"] == [created["id"]]
    assert node_tasks(node_caller).get_json()["data"] == []

    admin.put(f"{TASKS}/{created['id']}", json={"status": 1})
    enabled = changes(node_caller, disabled["cursor"])
    assert [t["id"] for t in enabled["items"]] == [created["id"]]
    assert enabled["items"][0]["status"] == 1 and enabled["deleted"] == []


def test_deleting_a_task_tells_nodes_to_drop_it(admin, node_caller):
    created = create(admin, task())
    start = changes(node_caller, 0)
    assert [t["id"] for t in start["items"]] == [created["id"]]

    admin.delete(f"{TASKS}/{created['id']}")

    after = changes(node_caller, start["cursor"])
    assert after["items"] == [] and after["deleted"] == [created["id"]]


def test_task_changes_do_not_show_in_feed_changes(admin, node_caller):
    feed_cursor = node_caller.get("/feeds").headers[CURSOR_HEADER]

    create(admin, task())

    feed_changes = node_caller.get("/feeds/changes", params={"since": feed_cursor})
    data = feed_changes.get_json()["data"]
    assert data["items"] == [] and data["deleted"] == []
