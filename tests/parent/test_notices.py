"""System notices through the notice: channel, once per change."""

from __future__ import annotations

import pytest

from parent import create_app
from parent.extensions import db
from parent.services.maintenance import run_maintenance
from parent.services.sync_logs import log_sync
from tests.conftest import base_config
from tests.helpers import NodeCaller
from tests.parent.test_leasing import claim, dispatch, make_feeds
from tests.support.fake_vendors import FakeVendors

SECRET = "SECnotice0123456789abcdef"


@pytest.fixture
def fake():
    with FakeVendors() as vendors:
        yield vendors


@pytest.fixture
def robot(fake):
    return fake.add("dingtalk", "notice-robot-0123456789", secret=SECRET)


@pytest.fixture
def app(db_url, clock, fake, robot):
    application = create_app({**base_config(db_url), "notice": {
        "channel": "dingtalk", "web_hook_url": fake.url(robot), "sign_secret": SECRET,
        "failing_after": 2}}, clock=clock, environ={})
    yield application
    with application.app_context():
        db.session.remove()
        db.engine.dispose()


def sweep(app) -> dict:
    with app.app_context():
        return run_maintenance()


def titles(robot) -> list[str]:
    return [r.body["markdown"]["title"] for r in robot.accepted]


def test_a_node_going_offline_is_announced_once_per_change(app, admin, node, client, clock,
                                                           robot):
    caller = NodeCaller(client, node, mode="plain")
    sweep(app)  # starts reading the log from here
    caller.post("/heartbeat", json={})
    clock.advance(500)
    sweep(app)
    sweep(app)
    assert titles(robot) == ["节点离线：child-1"]
    assert "停止了心跳" in robot.accepted[0].body["markdown"]["text"]

    caller.post("/heartbeat", json={})  # back online, then gone again: a new change
    clock.advance(5000)  # past the threshold the cadence it showed raises
    sweep(app)
    assert titles(robot) == ["节点离线：child-1"] * 2


def test_history_from_before_notices_were_configured_is_not_announced(app, node, client,
                                                                      clock, robot):
    NodeCaller(client, node, mode="plain").post("/heartbeat", json={})
    clock.advance(500)
    sweep(app)  # the first run marks where the log stands, including this edge
    sweep(app)
    assert robot.accepted == []


def test_an_expired_wechat_session_names_the_node_and_how_to_log_in(app, admin, node, robot):
    sweep(app)
    with app.app_context():
        log_sync(node.node_id, "wechat_session_expired", "event", "success",
                 error_message="invalid session")
        db.session.commit()
    sweep(app)
    sweep(app)
    [received] = robot.accepted
    text = received.body["markdown"]["text"]
    assert received.body["markdown"]["title"] == "微信登录已过期：child-1"
    assert f"/api/v1/cascade/nodes/{node.node_id}/wechat/login" in text
    assert "invalid session" in text


def _run(admin, caller, task_id, error=None, pushed=1):
    caller.clock.advance(2)  # runs finish one after another
    dispatch(admin, task_id)
    [lease] = claim(caller)
    result = {"mp_id": lease["feeds"][0]["id"], "mp_name": "f", "article_count": 1,
              "new_count": 1, "pushed_count": 0 if error else pushed, "success": error is None,
              "error": error}
    response = caller.post(f"/leases/{lease['lease_id']}/complete", json={"results": [result]})
    assert response.status_code == 200, response.get_json()


def test_a_task_whose_pushes_keep_failing_is_announced_once(app, admin, node_caller, robot,
                                                           clock):
    make_feeds(admin, 1)
    task_id = admin.post("/api/v1/message-tasks", json={
        "name": "早报", "cron_exp": "0 0 1 1 *"}).get_json()["data"]["id"]
    sweep(app)
    failure = "push failed: dingtalk refused the message (https://oapi.dingtalk.com): code 310000"
    _run(admin, node_caller, task_id, failure)
    sweep(app)
    assert robot.accepted == []  # one failure is not "keeps failing"
    _run(admin, node_caller, task_id, failure)
    sweep(app)
    _run(admin, node_caller, task_id, failure)
    sweep(app)
    assert titles(robot) == ["推送持续失败：早报"]
    assert "310000" in robot.accepted[0].body["markdown"]["text"]

    _run(admin, node_caller, task_id)  # recovered ...
    sweep(app)
    _run(admin, node_caller, task_id, failure)
    _run(admin, node_caller, task_id, failure)  # ... and failing again: a new change
    sweep(app)
    assert titles(robot) == ["推送持续失败：早报"] * 2


def test_no_notice_channel_sends_nothing(db_url, clock, fake, robot):
    app = create_app(base_config(db_url), clock=clock, environ={})
    with app.app_context():
        assert run_maintenance()["notices"] == 0
        db.engine.dispose()


def _push(admin, caller, task_id, feed_id, status, **report):
    """One run whose push is a delivery the child reports (sent, or failed for good)."""
    caller.clock.advance(60)
    dispatch(admin, task_id)
    [lease] = claim(caller)
    ident = f"a{int(caller.clock.timestamp())}"
    assert caller.post("/articles", json={"lease_id": lease["lease_id"], "articles": [{
        "id": ident, "mp_id": feed_id, "title": ident, "url": f"http://x/{ident}",
        "publish_time": int(caller.clock.timestamp())}]}).status_code == 200
    planned = caller.post(f"/leases/{lease['lease_id']}/deliveries",
                          json={"feed_id": feed_id, "article_ids": [ident]}).get_json()["data"]
    [delivery] = planned["deliveries"]
    answer = caller.post(f"/deliveries/{delivery['delivery_id']}/report",
                         json={"status": status, **report})
    assert answer.status_code == 200, answer.get_json()
    # The lease's own results say nothing about the push: only the delivery does.
    assert caller.post(f"/leases/{lease['lease_id']}/complete",
                       json={"results": []}).status_code == 200


def test_deliveries_that_keep_failing_are_announced_with_the_vendors_answer(
        app, admin, node_caller, robot, clock):
    [feed_id] = make_feeds(admin, 1)
    task_id = admin.post("/api/v1/message-tasks", json={
        "name": "晚报", "cron_exp": "0 0 1 1 *", "message_type": 1,
        "web_hook_url": "https://hooks.example.org/x"}).get_json()["data"]["id"]
    sweep(app)
    refused = {"retryable": False, "vendor_code": "310000",
               "vendor_message": "keywords not in content"}
    _push(admin, node_caller, task_id, feed_id, "failed", **refused)
    _push(admin, node_caller, task_id, feed_id, "sent")
    _push(admin, node_caller, task_id, feed_id, "failed", **refused)
    sweep(app)
    assert robot.accepted == []  # a success in between: not "keeps failing"

    _push(admin, node_caller, task_id, feed_id, "failed", **refused)
    sweep(app)
    sweep(app)
    assert titles(robot) == ["推送持续失败：晚报"]  # once, not once per sweep
    text = robot.accepted[0].body["markdown"]["text"]
    assert "310000" in text and "keywords not in content" in text
