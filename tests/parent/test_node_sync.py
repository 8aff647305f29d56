"""What nodes pull and push: heartbeat, feeds/tasks with ETag and cursors, report-result."""

import contextlib
import threading

import pytest
from sqlalchemy import event

from parent.extensions import db
from tests.helpers import NodeCaller, assert_error


@contextlib.contextmanager
def recorded_sql(app):
    """Collect every SQL statement the app sends while the block runs."""
    statements = []

    def on_execute(conn, cursor, statement, parameters, context, executemany):
        statements.append(" ".join(statement.split()).upper())

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", on_execute)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)


def _writes(statements):
    return [s for s in statements if s.startswith(("INSERT", "UPDATE", "DELETE"))]


def _feed(admin, name="Feed", **fields):
    body = {"mp_name": name, "source_type": "rss", "source_url": f"http://127.0.0.1:1/{name}.xml",
            **fields}
    response = admin.post("/api/v1/feeds", json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["data"]


def test_heartbeat_reports_server_time_and_intervals(node_caller, clock):
    response = node_caller.post("/heartbeat", json={
        "version": "0.2.0", "hostname": "edge-1", "capacity": 3, "running": 1,
        "capabilities": {"sources": ["rss", "wechat"],
                         "wechat": {"session_valid": True, "expires_at": "2030-01-01T00:00:00Z"}},
        "callback_url": "http://10.0.0.5:9000/cb"})
    data = response.get_json()["data"]
    assert response.status_code == 200 and response.get_json()["message"] == "心跳成功"
    assert data["server_time"].startswith(clock().strftime("%Y-%m-%dT%H:%M:%S"))
    assert data["heartbeat_interval"] == 60 and data["sync_interval"] == 300
    assert data["offline_after"] == 180 and data["status"] == "online"


def test_heartbeat_without_body_is_fine(node_caller):
    assert node_caller.post("/heartbeat").status_code == 200


def test_a_reported_change_is_one_update_after_two_reads_of_the_node(app, plain_caller,
                                                                      node_caller):
    plain_caller.post("/heartbeat", json={})  # first one also records node_online
    with recorded_sql(app) as statements:
        assert plain_caller.post("/heartbeat", json={"running": 1}).status_code == 200
    writes = _writes(statements)
    assert len(writes) == 1 and writes[0].startswith("UPDATE NODES"), writes
    # The fast lane's read finds the change and leaves the heartbeat to the app, whose
    # authentication reads the node again (parent/node_lane.py).
    reads = [s for s in statements if s.startswith("SELECT")]
    assert len(reads) == 2 and all("FROM NODES" in r and "API_KEY" in r for r in reads), reads

    with recorded_sql(app) as statements:
        assert node_caller.post("/heartbeat", json={"running": 2}).status_code == 200
    writes = _writes(statements)
    assert sorted(w.split()[0] + " " + w.split()[2 if w.startswith("INSERT") else 1]
                  for w in writes) == ["INSERT USED_NONCES", "UPDATE NODES"], writes


def test_not_modified_pull_reads_no_feed_rows(app, admin, plain_caller):
    for index in range(3):
        _feed(admin, f"f{index}")
    first = plain_caller.get("/feeds")
    assert first.status_code == 200 and len(first.get_json()["data"]) == 3
    with recorded_sql(app) as statements:
        second = plain_caller.get("/feeds", headers={"If-None-Match": first.headers["ETag"]})
    assert second.status_code == 304 and second.data == b""
    assert second.headers["ETag"] == first.headers["ETag"]
    assert not [s for s in statements if "FROM FEEDS" in s], statements


def test_etag_changes_when_a_feed_changes(admin, plain_caller):
    feed = _feed(admin)
    etag = plain_caller.get("/feeds").headers["ETag"]
    admin.put(f"/api/v1/feeds/{feed['id']}", json={"mp_name": "Renamed"})
    response = plain_caller.get("/feeds", headers={"If-None-Match": etag})
    assert response.status_code == 200 and response.get_json()["data"][0]["mp_name"] == "Renamed"


def test_feeds_pull_has_the_seed_shape(admin, plain_caller):
    _feed(admin, "Shape", mp_intro="intro")
    item = plain_caller.get("/feeds").get_json()["data"][0]
    for key in ("id", "faker_id", "mp_name", "mp_cover", "mp_intro", "status", "created_at",
                "updated_at", "source_type", "source_url"):
        assert key in item
    assert item["created_at"].endswith("Z")


def test_changes_page_through_with_has_more(admin, plain_caller):
    ids = [_feed(admin, f"p{index}")["id"] for index in range(5)]
    seen, cursor, pages = [], "0", 0
    while True:
        data = plain_caller.get("/feeds/changes", params={"since": cursor, "limit": 2}
                                ).get_json()["data"]
        seen += [item["id"] for item in data["items"]]
        cursor, pages = data["cursor"], pages + 1
        if not data["has_more"]:
            break
    assert sorted(seen) == sorted(ids) and pages == 3
    empty = plain_caller.get("/feeds/changes", params={"since": cursor}).get_json()["data"]
    assert empty == {"items": [], "deleted": [], "cursor": cursor, "has_more": False}


def test_full_pull_gives_a_cursor_for_incremental_pulls(admin, plain_caller):
    _feed(admin, "a")
    cursor = plain_caller.get("/feeds").headers["X-Cascade-Cursor"]
    added = _feed(admin, "b")
    data = plain_caller.get("/feeds/changes", params={"since": cursor}).get_json()["data"]
    assert [item["id"] for item in data["items"]] == [added["id"]]


def test_disabled_task_leaves_the_node_task_list(admin, plain_caller):
    task = admin.post("/api/v1/message-tasks", json={"name": "t", "cron_exp": "*/5 * * * *"}
                      ).get_json()["data"]
    listing = plain_caller.get("/message-tasks")
    assert [t["id"] for t in listing.get_json()["data"]] == [task["id"]]
    cursor = listing.headers["X-Cascade-Cursor"]
    admin.put(f"/api/v1/message-tasks/{task['id']}", json={"status": 0})
    assert plain_caller.get("/message-tasks").get_json()["data"] == []
    changes = plain_caller.get("/message-tasks/changes", params={"since": cursor}).get_json()["data"]
    assert changes["items"] == [] and changes["deleted"] == [task["id"]]


REPORT = {"task_id": "task-1", "timestamp": "2026-11-28T10:00:00Z", "results": [
    {"mp_id": "MP_WXS_1", "mp_name": "A", "article_count": 5, "success_count": 4,
     "timestamp": 1764324000}]}


def test_report_result_is_stored_and_visible_to_admins(admin, plain_caller, node):
    response = plain_caller.post("/report-result", json=REPORT)
    assert response.status_code == 200 and response.get_json()["message"] == "结果上报成功"
    items = admin.get("/api/v1/cascade/reports?task_id=task-1").get_json()["data"]["items"]
    assert len(items) == 1 and items[0]["node_id"] == node.node_id
    assert items[0]["results"][0]["success_count"] == 4
    assert items[0]["results"][0]["timestamp"] == "2025-11-28T10:00:00Z"


def test_report_result_with_idempotency_key_is_stored_once(admin, node_caller):
    headers = {"Idempotency-Key": "report-abc"}
    first = node_caller.post("/report-result", json=REPORT, headers=headers)
    again = node_caller.post("/report-result", json=REPORT, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()
    assert admin.get("/api/v1/cascade/reports").get_json()["data"]["total"] == 1
    other = dict(REPORT, task_id="task-2")
    assert_error(node_caller.post("/report-result", json=other, headers=headers), 422,
                 "idempotency_key_reused")
    assert admin.get("/api/v1/cascade/reports").get_json()["data"]["total"] == 1


def test_idempotency_keys_are_per_node(admin, client, node, clock):
    from tests.conftest import create_node_with_credentials

    other = create_node_with_credentials(admin, name="other")
    headers = {"Idempotency-Key": "shared-key"}
    for creds in (node, other):
        assert NodeCaller(client, creds, clock=clock).post(
            "/report-result", json=REPORT, headers=headers).status_code == 200
    assert admin.get("/api/v1/cascade/reports").get_json()["data"]["total"] == 2


def test_a_retry_that_arrives_while_the_original_runs_waits_for_its_answer(
        app, admin, node, monkeypatch):
    """Plain credentials: authenticating writes nothing, so only the key makes it wait."""
    from parent.services import node_sync as service

    store_report, runs = service.store_report, []
    started, finish = threading.Event(), threading.Event()

    def slow_first_run(node_row, payload):
        runs.append(payload["task_id"])
        if len(runs) == 1:
            started.set()
            finish.wait(10)
        return store_report(node_row, payload)

    monkeypatch.setattr(service, "store_report", slow_first_run)
    NodeCaller(app.test_client(), node, mode="plain").post("/heartbeat", json={})  # online
    answers = {}

    def send(name):
        answers[name] = NodeCaller(app.test_client(), node, mode="plain").post(
            "/report-result", json=REPORT, headers={"Idempotency-Key": "report-slow"})

    original = threading.Thread(target=send, args=("original",))
    original.start()
    assert started.wait(10)
    retry = threading.Thread(target=send, args=("retry",))
    retry.start()
    retry.join(0.5)
    assert retry.is_alive() and "retry" not in answers  # it waits for the original ...
    finish.set()
    original.join(10)
    retry.join(10)
    assert answers["original"].status_code == answers["retry"].status_code == 200
    assert answers["retry"].headers["Idempotent-Replayed"] == "true"  # ... and gets its answer
    assert runs == ["task-1"]  # the work ran once
    assert admin.get("/api/v1/cascade/reports").get_json()["data"]["total"] == 1


@pytest.mark.parametrize("body,field", [
    ({"results": []}, "task_id"),
    ({"task_id": "t"}, "results"),
    ({"task_id": "t", "results": [{"mp_name": "x"}]}, "results"),
    ({"task_id": "t", "results": [{"mp_id": "x", "article_count": -1}]}, "results"),
    ({"task_id": "t", "results": [], "timestamp": "yesterday"}, "timestamp"),
])
def test_bad_reports_are_refused_and_not_stored(admin, plain_caller, body, field):
    response = plain_caller.post("/report-result", json=body)
    assert field in assert_error(response, 422, "validation_failed")["details"]
    assert admin.get("/api/v1/cascade/reports").get_json()["data"]["total"] == 0


def test_sync_log_records_every_pull_and_push(admin, plain_caller, node):
    plain_caller.post("/heartbeat", json={})
    plain_caller.get("/feeds")
    plain_caller.get("/message-tasks")
    plain_caller.post("/report-result", json=REPORT)
    items = admin.get(f"/api/v1/cascade/sync-logs?node_id={node.node_id}").get_json()["data"]["items"]
    assert [(i["operation"], i["direction"]) for i in items] == [
        ("report_result", "push"), ("sync_tasks", "pull"), ("sync_feeds", "pull"),
        ("node_online", "event")]
    assert all(i["status"] == "success" for i in items)
    assert items[0]["data_count"] == 1
    only = admin.get("/api/v1/cascade/sync-logs?operation=sync_feeds&limit=1").get_json()["data"]
    assert only["total"] == 1 and only["items"][0]["operation"] == "sync_feeds"
    node_view = admin.get(f"/api/v1/cascade/nodes/{node.node_id}").get_json()["data"]
    assert node_view["last_sync_at"] is not None


def test_sync_log_limit_is_capped(admin):
    assert_error(admin.get("/api/v1/cascade/sync-logs?limit=201"), 422, "validation_failed")


def test_repeated_full_pull_is_served_without_reading_feed_rows(app, admin, plain_caller):
    for index in range(3):
        _feed(admin, f"r{index}")
    first = plain_caller.get("/feeds")
    with recorded_sql(app) as statements:
        second = plain_caller.get("/feeds")
    assert second.status_code == 200 and second.get_json() == first.get_json()
    assert not [s for s in statements if "FROM FEEDS" in s], statements
    added = _feed(admin, "r-new")
    third = plain_caller.get("/feeds").get_json()["data"]
    assert added["id"] in [item["id"] for item in third] and len(third) == 4
