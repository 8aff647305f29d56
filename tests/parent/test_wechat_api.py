"""WeChat through the parent: relayed logins, session changes, invalid feeds, search."""

import base64
import threading
from datetime import timedelta

import pytest

from parent.extensions import db
from parent.models import SyncLog
from tests.conftest import create_node_with_credentials
from tests.helpers import NodeCaller, assert_error
from tests.parent.test_leasing import claim_all, dispatch, make_task
from tests.support.fake_wechat import tiny_png

PNG = tiny_png(b"qr")


def iso(moment):
    return moment.isoformat().replace("+00:00", "Z")


def heartbeat(caller, valid, name="运营号", expires_at=None):
    response = caller.post("/heartbeat", json={"capabilities": {
        "sources": ["rss", "wechat"],
        "wechat": {"session_valid": valid, "expires_at": expires_at,
                   "account": {"name": name, "avatar": "https://mmbiz.qpic.cn/a.jpg"}}}})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]


def wechat_view(admin, node_id):
    response = admin.get(f"/api/v1/cascade/nodes/{node_id}/wechat")
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]


def sync_rows(app, operation):
    with app.app_context():
        return db.session.execute(db.select(SyncLog).where(SyncLog.operation == operation)
                                  ).scalars().all()


def test_node_without_a_login_shows_state_none(admin, node):
    view = wechat_view(admin, node.node_id)
    assert view["state"] == "none" and view["account"] is None and view["qr_expires_at"] is None


def test_admin_login_reaches_the_node_and_its_qr_is_served_until_scanned(admin, node, node_caller,
                                                                          clock):
    response = admin.post(f"/api/v1/cascade/nodes/{node.node_id}/wechat/login")
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["data"]["state"] == "waiting_scan"
    assert_error(admin.get(f"/api/v1/cascade/nodes/{node.node_id}/wechat/qr.png"), 404,
                 "qr_not_available")

    commands = heartbeat(node_caller, False)["commands"]
    assert [c["kind"] for c in commands] == ["wechat_login"]
    assert "commands" not in heartbeat(node_caller, False), "each command is delivered once"

    qr_until = clock() + timedelta(minutes=4)
    reported = node_caller.post("/wechat/login-state", json={
        "command_id": commands[0]["id"], "state": "waiting_scan",
        "qr_png": base64.b64encode(PNG).decode(), "qr_expires_at": iso(qr_until)})
    assert reported.status_code == 200, reported.get_json()
    image = admin.get(f"/api/v1/cascade/nodes/{node.node_id}/wechat/qr.png")
    assert image.status_code == 200 and image.mimetype == "image/png" and image.data == PNG
    assert wechat_view(admin, node.node_id)["qr_expires_at"] == iso(qr_until)

    node_caller.post("/wechat/login-state", json={"command_id": commands[0]["id"],
                                                 "state": "scanned"})
    assert wechat_view(admin, node.node_id)["state"] == "scanned"
    assert_error(admin.get(f"/api/v1/cascade/nodes/{node.node_id}/wechat/qr.png"), 404,
                 "qr_not_available")  # the image is gone once scanned

    expires = iso(clock() + timedelta(days=2))
    node_caller.post("/wechat/login-state", json={
        "command_id": commands[0]["id"], "state": "valid", "expires_at": expires,
        "account": {"name": "运营号", "avatar": "https://mmbiz.qpic.cn/a.jpg"}})
    early = wechat_view(admin, node.node_id)  # before the heartbeat that confirms it
    assert early["state"] == "valid" and early["account"]["name"] == "运营号"
    heartbeat(node_caller, True, expires_at=expires)
    view = wechat_view(admin, node.node_id)
    assert view["state"] == "valid" and view["account"]["name"] == "运营号"
    assert view["expires_at"] == expires
    listed = admin.get("/api/v1/cascade/nodes").get_json()["data"]["items"][0]
    assert listed["capabilities"]["wechat"]["session_valid"] is True
    assert listed["capabilities"]["wechat"]["account"]["name"] == "运营号"


def test_qr_code_that_expires_unscanned_shows_failed(admin, node, node_caller, clock):
    admin.post(f"/api/v1/cascade/nodes/{node.node_id}/wechat/login")
    command = heartbeat(node_caller, False)["commands"][0]
    node_caller.post("/wechat/login-state", json={
        "command_id": command["id"], "state": "waiting_scan",
        "qr_png": base64.b64encode(PNG).decode(), "qr_expires_at": iso(clock() + timedelta(seconds=60))})
    clock.advance(61)
    assert wechat_view(admin, node.node_id)["state"] == "failed"
    assert_error(admin.get(f"/api/v1/cascade/nodes/{node.node_id}/wechat/qr.png"), 404,
                 "qr_not_available")


def test_bad_qr_upload_is_refused_and_changes_nothing(admin, node, node_caller):
    admin.post(f"/api/v1/cascade/nodes/{node.node_id}/wechat/login")
    command = heartbeat(node_caller, False)["commands"][0]
    bad = node_caller.post("/wechat/login-state", json={
        "command_id": command["id"], "state": "waiting_scan",
        "qr_png": base64.b64encode(b"<svg/>").decode()})
    assert_error(bad, 422, "validation_failed")
    assert_error(node_caller.post("/wechat/login-state", json={"state": "bogus"}), 422,
                 "validation_failed")
    assert wechat_view(admin, node.node_id)["qr_ready"] is False


def test_report_of_a_superseded_login_is_refused(admin, node, node_caller):
    admin.post(f"/api/v1/cascade/nodes/{node.node_id}/wechat/login")
    first = heartbeat(node_caller, False)["commands"][0]
    node_caller.post("/wechat/login-state", json={"command_id": first["id"], "state": "failed",
                                                 "error": "stopped"})
    admin.post(f"/api/v1/cascade/nodes/{node.node_id}/wechat/login")
    assert_error(node_caller.post("/wechat/login-state", json={
        "command_id": first["id"], "state": "scanned"}), 409, "login_superseded")


def test_login_routes_work_under_the_werss_prefix(admin, node, client, clock):
    wx = NodeCaller(client, node, clock=clock, prefix="/api/v1/wx/cascade")
    assert admin.post(f"/api/v1/wx/cascade/nodes/{node.node_id}/wechat/login").status_code == 202
    data = wx.post("/heartbeat", json={}).get_json()["data"]
    assert data["commands"][0]["kind"] == "wechat_login"
    assert wx.post("/wechat/login-state", json={"command_id": data["commands"][0]["id"],
                                               "state": "scanned"}).status_code == 200
    assert admin.get(f"/api/v1/wx/cascade/nodes/{node.node_id}/wechat").get_json()[
        "data"]["state"] == "scanned"


def test_a_login_request_reaches_the_node_with_its_next_claim(app, admin, node, node_caller):
    """Claims do not wait at the parent, so a node with a WeChat session is told to come
    back within cascade.wechat_claim_interval (3 s); that claim brings the request."""
    heartbeat(node_caller, True)
    idle = node_caller.post("/claim", json={"max": 1, "wait": 10})
    assert idle.status_code == 204 and int(idle.headers["Retry-After"]) <= 3
    assert admin.post(f"/api/v1/cascade/nodes/{node.node_id}/wechat/login").status_code == 202
    response = node_caller.post("/claim", json={"max": 1, "wait": 10})
    assert response.status_code == 200, response.status_code
    assert response.get_json()["data"]["leases"] == []
    assert response.get_json()["data"]["commands"][0]["kind"] == "wechat_login"


def test_session_change_is_logged_once_per_change(app, admin, node, node_caller):
    heartbeat(node_caller, True)
    heartbeat(node_caller, True)
    heartbeat(node_caller, False)
    heartbeat(node_caller, False)
    heartbeat(node_caller, False)
    expired = sync_rows(app, "wechat_session_expired")
    assert len(expired) == 1 and "运营号" in expired[0].error_message
    assert len(sync_rows(app, "wechat_session_valid")) == 1
    logs = admin.get("/api/v1/cascade/sync-logs?operation=wechat_session_expired").get_json()
    assert logs["data"]["total"] == 1 if "total" in logs["data"] else len(logs["data"]) == 1
    assert wechat_view(admin, node.node_id)["state"] == "expired"


def test_released_wechat_lease_goes_to_another_node_without_an_attempt(admin, client, clock):
    admin.post("/api/v1/feeds", json={"mp_name": "wx", "faker_id": "MzA5MTIzNDU2Nw=="})
    dispatch(admin, make_task(admin))
    first = NodeCaller(client, create_node_with_credentials(admin, name="a"), clock=clock)
    second = NodeCaller(client, create_node_with_credentials(admin, name="b"), clock=clock)
    heartbeat(first, True)
    heartbeat(second, True)
    lease = claim_all(first)[0]
    heartbeat(first, False)  # its session expired: it reports first, then hands back
    data = first.post(f"/leases/{lease['lease_id']}/fail", json={
        "error": "WeChat session expired", "retryable": True, "release": True}).get_json()["data"]
    assert data["status"] == "pending"
    assert claim_all(first) == []
    again = claim_all(second)
    assert again and again[0]["attempt"] == 1


def test_feed_wechat_refused_is_not_scheduled_until_edited(app, admin, node, node_caller):
    feed = admin.post("/api/v1/feeds", json={"mp_name": "wx", "faker_id": "MzA5MTIzNDU2Nw=="}
                      ).get_json()["data"]
    task_id = make_task(admin)
    dispatch(admin, task_id)
    heartbeat(node_caller, True)
    lease = claim_all(node_caller)[0]
    done = node_caller.post(f"/leases/{lease['lease_id']}/complete", json={"results": [{
        "mp_id": feed["id"], "success": False, "feed_invalid": True,
        "error": "WeChat refuses this account (200002 invalid args)"}]})
    assert done.status_code == 200, done.get_json()
    shown = admin.get(f"/api/v1/feeds/{feed['id']}").get_json()["data"]
    assert "200002" in shown["invalid_reason"]
    assert dispatch(admin, task_id)["allocations"] == []
    assert len(sync_rows(app, "wechat_feed_invalid")) == 1
    admin.put(f"/api/v1/feeds/{feed['id']}", json={"mp_name": "wx renamed"})
    assert admin.get(f"/api/v1/feeds/{feed['id']}").get_json()["data"]["invalid_reason"] is None
    assert len(dispatch(admin, task_id)["allocations"]) == 1


def test_search_without_any_session_is_503(admin, node, node_caller):
    heartbeat(node_caller, False)
    assert_error(admin.post("/api/v1/feeds/search", json={"query": "人民"}), 503,
                 "wechat_unavailable")


@pytest.mark.parametrize("body", [{}, {"query": ""}, {"query": "x" * 65}, {"query": 3},
                                  {"query": "a", "extra": 1}])
def test_bad_search_is_refused(admin, body):
    response = admin.post("/api/v1/feeds/search", json=body)
    assert response.status_code in (400, 422), response.get_json()


def test_search_is_relayed_to_a_node_with_a_session(app, admin, node, node_caller, clock):
    heartbeat(node_caller, True)
    rows = [{"faker_id": "MzA5MjE4NjA2Nw==", "mp_name": "人民日报", "mp_intro": "权威",
             "mp_cover": "https://mmbiz.qpic.cn/c.jpg"}]
    stop = threading.Event()

    def the_node():
        while not stop.is_set():
            data = node_caller.post("/heartbeat", json={}).get_json()["data"]
            for command in data.get("commands", []):
                assert command["payload"] == {"query": "人民"}
                node_caller.post(f"/commands/{command['id']}/result", json={"results": rows})
                return
            stop.wait(0.1)

    worker = threading.Thread(target=the_node)
    worker.start()
    try:
        response = admin.post("/api/v1/feeds/search", json={"query": "人民"})
    finally:
        stop.set()
        worker.join()
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["data"] == rows
    created = admin.post("/api/v1/feeds", json={k: rows[0][k] for k in
                                                ("faker_id", "mp_name", "mp_intro", "mp_cover")})
    assert created.status_code == 201
    assert created.get_json()["data"]["id"] == "MP_WXS_3092186067"


def test_every_feed_is_collected_once_before_any_twice_despite_a_rate_limit(app, admin, client,
                                                                           clock):
    """Fairness: a feed handed back by a rate-limited node goes before the next cycle's."""
    feeds = [admin.post("/api/v1/feeds", json={"mp_name": f"wx{n}", "faker_id": f"F{n}"}
                        ).get_json()["data"]["id"] for n in range(4)]
    task_id = make_task(admin)
    first = NodeCaller(client, create_node_with_credentials(admin, name="a"), clock=clock)
    second = NodeCaller(client, create_node_with_credentials(admin, name="b"), clock=clock)
    heartbeat(first, True)
    heartbeat(second, True)
    dispatch(admin, task_id)
    collected = []

    def collect_one(caller):
        [lease] = caller.post("/claim", json={"max": 1, "wait": 0}).get_json()["data"]["leases"]
        feed_id = lease["feeds"][0]["id"]
        caller.post(f"/leases/{lease['lease_id']}/complete", json={"results": [
            {"mp_id": feed_id, "article_count": 1}]})
        collected.append(feed_id)
        clock.advance(1)

    collect_one(first)
    [limited] = first.post("/claim", json={"max": 1, "wait": 0}).get_json()["data"]["leases"]
    until = iso(clock() + timedelta(hours=1))
    first.post(f"/leases/{limited['lease_id']}/fail", json={
        "error": "WeChat frequency control (200013)", "rate_limited_until": until})
    collect_one(second)
    dispatch(admin, task_id)  # the next cycle arrives before this one is done
    for _ in range(2):
        collect_one(second)
    assert sorted(collected) == sorted(feeds), "each feed once before any feed twice"
    collect_one(second)
    assert collected[-1] in feeds and len(collected) == 5


def test_werss_fields_of_a_wechat_article_are_kept(admin, node_caller):
    feed = admin.post("/api/v1/feeds", json={"mp_name": "wx", "faker_id": "MzA5MTIzNDU2Nw=="}
                      ).get_json()["data"]
    dispatch(admin, make_task(admin))
    heartbeat(node_caller, True)
    [lease] = claim_all(node_caller)
    fields = {"item_show_type": 0, "copyright_stat": 1, "create_time": 1718000000,
              "update_time": 1718000100}
    response = node_caller.post("/articles", json={"lease_id": lease["lease_id"], "articles": [{
        "id": "2650000001_1", "mp_id": feed["id"], "title": "测试", "url": "https://mp.weixin.qq.com/s/abc",
        "publish_time": 1718000100, "wechat": fields}]})
    assert response.status_code == 200, response.get_json()
    [stored] = admin.get(f"/api/v1/articles?feed_id={feed['id']}").get_json()["data"]["items"]
    assert stored["id"] == "2650000001_1" and stored["wechat"] == fields


def test_unscanned_relogin_leaves_a_valid_session_shown_valid(admin, node, node_caller, clock):
    heartbeat(node_caller, True)
    admin.post(f"/api/v1/cascade/nodes/{node.node_id}/wechat/login")
    command = heartbeat(node_caller, True)["commands"][0]
    node_caller.post("/wechat/login-state", json={
        "command_id": command["id"], "state": "waiting_scan",
        "qr_png": base64.b64encode(PNG).decode(), "qr_expires_at": iso(clock() + timedelta(seconds=30))})
    assert wechat_view(admin, node.node_id)["state"] == "waiting_scan"
    clock.advance(31)
    assert wechat_view(admin, node.node_id)["state"] == "valid"
