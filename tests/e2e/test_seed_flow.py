"""The seed guide's whole flow against a real gunicorn parent, over real HTTP."""

from __future__ import annotations

import json
import re
import time
import uuid

import pytest

from shared.paths import CASCADE_PREFIX, WX_CASCADE_PREFIX
from shared.timeutil import parse_iso
from tests.helpers import NodeCredentials
from tests.support.http_callers import NodeHttp

pytestmark = pytest.mark.e2e

SEED_FEED_FIELDS = {"id", "faker_id", "mp_name", "mp_cover", "mp_intro", "status",
                    "created_at", "updated_at"}
SEED_TASK_FIELDS = {"id", "name", "message_type", "message_template", "web_hook_url", "mps_id",
                    "cron_exp", "status", "headers", "cookies", "created_at", "updated_at"}
API_KEY_RE = re.compile(r"^CN[A-Za-z0-9]{32}$")
API_SECRET_RE = re.compile(r"^CS[A-Za-z0-9]{32}$")

AUTH_MODES = ["plain", "signed"]
PREFIXES = [pytest.param(CASCADE_PREFIX, id="cascade"),
            pytest.param(WX_CASCADE_PREFIX, id="wx-cascade")]

FEED = {
    "mp_name": "人民日报",
    "faker_id": "MzA5MTIzNDU2Nw==",  # base64 of the account's biz number 3091234567
    "mp_cover": "https://mmbiz.qpic.cn/cover.jpg",
    "mp_intro": "参与、沟通、记录时代。",
}


def _task_body(feed_id: str) -> dict:
    return {
        "name": "早报推送",
        "message_type": 1,
        "message_template": "{{feed.mp_name}}: {{article.title}}",
        "web_hook_url": "https://hooks.example.com/werss",
        "mps_id": [{"id": feed_id, "mp_name": FEED["mp_name"]}],
        "cron_exp": "0 8 * * *",
        "headers": {"X-Token": "hook-token"},
        "cookies": "",
    }


def _ok(response, status: int = 200) -> dict:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert body["code"] == 0, body
    return body


def _create_feed(admin, **fields) -> dict:
    return _ok(admin.post("/api/v1/feeds", json={**FEED, **fields}), 201)["data"]


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("auth_mode", AUTH_MODES)
def test_seed_guide_flow_over_http(parent, admin_http, auth_mode, prefix):
    body = _ok(admin_http.post(f"{prefix}/nodes", json={"name": "上海节点", "node_type": 1}), 201)
    assert body["message"] == "节点创建成功"
    node_id = body["data"]["node_id"]
    assert body["data"]["node_type"] == 1 and body["data"]["is_active"] is True

    body = _ok(admin_http.post(f"{prefix}/nodes/{node_id}/credentials"))
    assert body["message"] == "凭证生成成功"
    credentials = body["data"]
    assert credentials["node_id"] == node_id
    assert API_KEY_RE.match(credentials["api_key"]), credentials["api_key"]
    assert API_SECRET_RE.match(credentials["api_secret"]), credentials["api_secret"]
    secret = credentials["api_secret"]

    listing = admin_http.get(f"{prefix}/nodes", params={"node_type": 1})
    items = _ok(listing)["data"]["items"]
    assert [item["node_id"] for item in items] == [node_id]
    assert items[0]["api_key"] == credentials["api_key"]
    assert items[0]["status"] == "offline"
    assert secret not in listing.text
    assert not [name for name in items[0] if "secret" in name or "hash" in name]

    node = NodeHttp(parent.base_url, NodeCredentials(node_id, credentials["api_key"], secret),
                    mode=auth_mode, prefix=prefix)
    beat = _ok(node.post("/heartbeat", json={"version": "e2e-1.0", "hostname": "e2e-host"}))
    assert beat["data"]["status"] == "online"
    assert parse_iso(beat["data"]["server_time"])

    shown = _ok(admin_http.get(f"{prefix}/nodes/{node_id}"))["data"]
    assert shown["status"] == "online"
    assert shown["version"] == "e2e-1.0" and shown["hostname"] == "e2e-host"
    assert shown["last_heartbeat_at"].endswith("Z")

    feed = _create_feed(admin_http)
    assert feed["id"] == "MP_WXS_3091234567"
    task = _ok(admin_http.post("/api/v1/message-tasks", json=_task_body(feed["id"])), 201)["data"]

    feeds = _ok(node.get("/feeds"))["data"]
    assert len(feeds) == 1
    assert SEED_FEED_FIELDS <= set(feeds[0])
    assert {k: feeds[0][k] for k in ("id", *FEED)} == {"id": feed["id"], **FEED}
    assert feeds[0]["status"] == 1

    tasks = _ok(node.get("/message-tasks"))["data"]
    assert len(tasks) == 1
    assert SEED_TASK_FIELDS <= set(tasks[0])
    assert tasks[0]["id"] == task["id"]
    mps_id, headers = tasks[0]["mps_id"], tasks[0]["headers"]
    if prefix == WX_CASCADE_PREFIX:
        # As a WeRSS parent serves them: JSON strings, for WeRSS's text columns.
        mps_id, headers = json.loads(mps_id), json.loads(headers)
    assert mps_id == [{"id": feed["id"], "mp_name": FEED["mp_name"]}]
    assert headers == {"X-Token": "hook-token"}
    assert tasks[0]["cron_exp"] == "0 8 * * *"

    now = int(time.time())
    report = {
        "task_id": task["id"],
        "results": [{"mp_id": feed["id"], "mp_name": FEED["mp_name"], "article_count": 5,
                     "success_count": 4, "timestamp": now}],
        "timestamp": now,
    }
    _ok(node.post("/report-result", json=report))

    reports = _ok(admin_http.get(f"{prefix}/reports", params={"node_id": node_id}))["data"]
    assert reports["total"] == 1
    stored = reports["items"][0]
    assert stored["task_id"] == task["id"] and stored["node_id"] == node_id
    assert [(r["mp_id"], r["article_count"], r["success_count"]) for r in stored["results"]] == [
        (feed["id"], 5, 4)]

    logs = _ok(admin_http.get(f"{prefix}/sync-logs", params={"node_id": node_id}))["data"]
    operations = {entry["operation"] for entry in logs["items"]}
    assert {"node_online", "sync_feeds", "sync_tasks", "report_result"} <= operations
    assert {entry["node_id"] for entry in logs["items"]} == {node_id}
    assert {entry["status"] for entry in logs["items"]} == {"success"}


@pytest.mark.parametrize("auth_mode", AUTH_MODES)
def test_etag_and_incremental_changes_over_http(parent, admin_http, auth_mode):
    creds = admin_http.create_node_with_credentials()
    node = NodeHttp(parent.base_url, creds, mode=auth_mode)
    kept = _create_feed(admin_http)
    gone = _create_feed(admin_http, mp_name="新华社", faker_id="MzA4NzY1NDMyMQ==")

    first = node.get("/feeds")
    assert first.status_code == 200
    etag = first.headers["ETag"]
    assert {feed["id"] for feed in first.json()["data"]} == {kept["id"], gone["id"]}

    unchanged = node.get("/feeds", headers={"If-None-Match": etag})
    assert unchanged.status_code == 304
    assert unchanged.content == b""
    assert unchanged.headers["ETag"] == etag

    changes = _ok(node.get("/feeds/changes", params={"since": 0}))["data"]
    assert {feed["id"] for feed in changes["items"]} == {kept["id"], gone["id"]}
    assert changes["deleted"] == [] and changes["has_more"] is False
    cursor = changes["cursor"]

    _ok(admin_http.delete(f"/api/v1/feeds/{gone['id']}"))

    changes = _ok(node.get("/feeds/changes", params={"since": cursor}))["data"]
    assert changes["deleted"] == [gone["id"]]
    assert changes["items"] == []
    assert int(changes["cursor"]) > int(cursor)

    changed = node.get("/feeds", headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["ETag"] != etag
    assert [feed["id"] for feed in changed.json()["data"]] == [kept["id"]]


def test_request_id_is_echoed_over_http(parent, admin_http):
    creds = admin_http.create_node_with_credentials()
    node = NodeHttp(parent.base_url, creds, mode="signed")
    node_rid, admin_rid, missing_rid = (f"e2e-{what}-{uuid.uuid4().hex}"
                                        for what in ("node", "admin", "missing"))

    beat = node.post("/heartbeat", headers={"X-Request-ID": node_rid})
    listing = admin_http.get("/api/v1/cascade/nodes", headers={"X-Request-ID": admin_rid})
    missing = admin_http.get("/api/v1/no-such-route", headers={"X-Request-ID": missing_rid})

    assert (beat.status_code, listing.status_code, missing.status_code) == (200, 200, 404)
    assert beat.headers["X-Request-ID"] == node_rid
    assert listing.headers["X-Request-ID"] == admin_rid
    assert missing.headers["X-Request-ID"] == missing_rid
    assert missing.json()["request_id"] == missing_rid
    generated = admin_http.get("/api/v1/cascade/nodes").headers["X-Request-ID"]
    assert generated and generated not in (node_rid, admin_rid, missing_rid)
