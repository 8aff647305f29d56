"""WeChat end to end: a live parent, three real children, the fake mp.weixin.qq.com.

Two children are logged in through the parent's login routes; WeChat work goes only to
them; one is rate-limited mid-run and its remaining feeds finish on the other; a session
expires, the admin sees it, logs the node in again through the parent, and work resumes;
an article a WeRSS child uploads and the same article our child collects are stored once.
"""

from __future__ import annotations

import time

import pytest

from shared.paths import WX_CASCADE_PREFIX
from tests.support.fake_wechat import FakeWechat
from tests.support.http_callers import NodeHttp
from tests.support.processes import start_child, wait_for

FEEDS = 6


@pytest.fixture
def fake():
    with FakeWechat() as server:
        yield server


def wechat_state(admin, node_id) -> dict:
    response = admin.get(f"/api/v1/cascade/nodes/{node_id}/wechat")
    assert response.status_code == 200, response.text
    return response.json()["data"]


def log_in_through_parent(admin, fake: FakeWechat, node_id: str) -> str:
    """Drive the admin's login of a node: start, see the QR, scan, confirm; return the token."""
    assert admin.post(f"/api/v1/cascade/nodes/{node_id}/wechat/login").status_code == 202
    wait_for(lambda: wechat_state(admin, node_id)["qr_ready"], 30, what="the QR code upload")
    image = admin.get(f"/api/v1/cascade/nodes/{node_id}/wechat/qr.png")
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    fake.scan()
    wait_for(lambda: wechat_state(admin, node_id)["state"] == "scanned", 20, what="scanned")
    fake.confirm()
    wait_for(lambda: wechat_state(admin, node_id)["state"] == "valid", 20, what="a valid session")
    assert admin.get(f"/api/v1/cascade/nodes/{node_id}/wechat/qr.png").status_code == 404
    return fake.newest_token()


def feeds_by_id(admin) -> dict:
    rows = admin.get("/api/v1/feeds", params={"page_size": 200}).json()["data"]["items"]
    return {row["id"]: row for row in rows}


def test_wechat_collection_across_three_children(parent, admin_http, fake, services, tmp_path):
    admin = admin_http
    nodes = [admin.create_node_with_credentials(name=f"wx-{n}") for n in range(3)]
    children = [start_child(parent.base_url, creds, tmp_path, f"wx-{n}",
                            CASCADE_WECHAT_BASE_URL=fake.base_url, CASCADE_CAPACITY="1",
                            CASCADE_WECHAT_PAGE_PAUSE="0", CASCADE_WECHAT_ACCOUNT_PAUSE="0",
                            CASCADE_WECHAT_ARTICLE_PAUSE="0", CASCADE_WECHAT_COOLDOWN="600",
                            CASCADE_ALLOW_PRIVATE_ADDRESSES="true")
                for n, creds in enumerate(nodes)]
    try:
        first, second, third = (creds.node_id for creds in nodes)
        wait_for(lambda: all(n["status"] == "online" for n in admin.get(
            "/api/v1/cascade/nodes").json()["data"]["items"]), 30, what="three children online")

        first_token = log_in_through_parent(admin, fake, first)
        log_in_through_parent(admin, fake, second)
        assert wechat_state(admin, third)["state"] == "none"

        # Finding an account goes through a node with a session, within a few seconds.
        fake.add_account("MzA5MjE4NjA2Nw==", "人民日报", signature="参与、沟通、记录时代。")
        asked = time.monotonic()
        found = admin.post("/api/v1/feeds/search", json={"query": "人民"})
        assert found.status_code == 200, found.text
        assert time.monotonic() - asked < 5
        assert found.json()["data"] == [{"faker_id": "MzA5MjE4NjA2Nw==", "mp_name": "人民日报",
                                         "mp_intro": "参与、沟通、记录时代。",
                                         "mp_cover": "https://mmbiz.qpic.cn/head.jpg"}]
        added = admin.post("/api/v1/feeds", json=found.json()["data"][0])
        assert added.status_code == 201 and added.json()["data"]["id"] == "MP_WXS_3092186067"
        admin.delete("/api/v1/feeds/MP_WXS_3092186067")

        feed_ids = []
        for n in range(FEEDS):
            fakeid = f"MzA5MDAwMDAw{n}Q=="
            fake.add_account(fakeid, f"公众号{n}", articles=3)
            created = admin.post("/api/v1/feeds", json={"mp_name": f"公众号{n}",
                                                        "faker_id": fakeid})
            assert created.status_code == 201, created.text
            feed_ids.append(created.json()["data"]["id"])
        task = admin.post("/api/v1/message-tasks", json={
            "name": "wechat", "message_type": 1, "web_hook_url": services.base_url + "/hook",
            "cron_exp": "0 0 1 1 *"}).json()["data"]

        fake.limit_session(first_token, 1)  # the first child is rate-limited after one feed
        fake.list_delay = 0.5  # so neither child can take every feed before the other claims
        assert admin.post("/api/v1/cascade/dispatch", json={"task_id": task["id"]}).ok
        wait_for(lambda: all(feeds_by_id(admin)[f]["last_run_status"] == "success"
                             for f in feed_ids), 60, what="every WeChat feed collected")
        ran_on = [feeds_by_id(admin)[f]["last_run_node_id"] for f in feed_ids]
        assert third not in ran_on, "WeChat work goes only to nodes with a session"
        assert first_token in fake.freq_controlled, "the first child hit frequency control"
        assert ran_on.count(second) >= FEEDS - 1, "its remaining feeds finished on the other"
        for feed_id in feed_ids:
            stored = admin.get("/api/v1/articles", params={"feed_id": feed_id}).json()["data"]
            assert stored["total"] == 3

        # A WeRSS child, through WeRSS's own routes, uploads an article our child already
        # stored: it is stored once. (A label keeps our children off this task.)
        item = fake.accounts["MzA5MDAwMDAw0Q=="].articles[0]
        werss_creds = admin.create_node_with_credentials(name="werss")
        admin.request("PUT", f"/api/v1/cascade/nodes/{werss_creds.node_id}",
                      json={"labels": ["werss"]})
        werss = NodeHttp(parent.base_url, werss_creds, mode="plain", prefix=WX_CASCADE_PREFIX)
        assert werss.post("/heartbeat", json={"capabilities": {"sources": ["wechat"], "wechat": {
            "session_valid": True, "expires_at": None}}}).status_code == 200
        werss_task = admin.post("/api/v1/message-tasks", json={
            "name": "werss", "message_type": 1, "web_hook_url": services.base_url + "/hook",
            "cron_exp": "0 0 1 1 *", "labels": ["werss"],
            "mps_id": [{"id": feed_ids[0]}]}).json()["data"]
        assert admin.post("/api/v1/cascade/dispatch", json={"task_id": werss_task["id"]}).ok
        package = werss.post("/claim-task", json={}).json()["data"]
        assert package and package["feeds"][0]["id"] == feed_ids[0]
        uploaded = werss.post("/upload-articles", json={
            "allocation_id": package["allocation_id"], "articles": [{
                "id": item["aid"], "mp_id": feed_ids[0], "title": item["title"],
                "url": item["link"], "pic_url": item["cover"], "content": "",
                "publish_time": item["update_time"], "description": item["digest"],
                "ext": {"mp_title": "公众号0", "mp_id": feed_ids[0]}}]})
        assert uploaded.status_code == 200, uploaded.text
        assert uploaded.json()["data"]["new"] == 0
        assert admin.get("/api/v1/articles", params={"feed_id": feed_ids[0]}).json()[
            "data"]["total"] == 3

        # The second child's session expires: the admin sees it once in the sync log.
        fake.expire_sessions()
        fake.publish("MzA5MDAwMDAw0Q==", title="过期后的新文章")
        assert admin.post("/api/v1/cascade/dispatch", json={"task_id": task["id"]}).ok
        wait_for(lambda: wechat_state(admin, second)["state"] == "expired", 30,
                 what="the admin sees the expired session")
        logs = admin.get("/api/v1/cascade/sync-logs", params={
            "operation": "wechat_session_expired", "node_id": second}).json()["data"]
        rows = logs["items"] if isinstance(logs, dict) else logs
        assert len(rows) == 1
        assert any(n["capabilities"]["wechat"]["session_valid"] is False
                   for n in admin.get("/api/v1/cascade/nodes").json()["data"]["items"]
                   if n["node_id"] == second)

        # Logged in again through the parent, the node finishes the waiting work.
        log_in_through_parent(admin, fake, second)
        wait_for(lambda: admin.get("/api/v1/articles", params={"feed_id": feed_ids[0]}).json()[
            "data"]["total"] == 4, 60, what="work resumed after the new login")
        again = wait_for(lambda: [f for f in feed_ids
                                  if feeds_by_id(admin)[f]["last_run_node_id"] == second
                                  and feeds_by_id(admin)[f]["last_run_status"] == "success"],
                         30, what="results after the new login")
        assert again
    finally:
        for child in children:
            child.stop()
    for child in children:
        log = child.log_text()
        assert first_token not in log, "WeChat tokens never reach the log"
        assert "Traceback" not in log, log[-3000:]
    assert first_token not in parent.log_path.read_text(errors="replace"), \
        "the parent never sees a WeChat token"
