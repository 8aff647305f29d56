"""POST /message-tasks/{id}/test: one test message through the task's channel."""

from __future__ import annotations

import pytest

from tests.helpers import assert_error
from tests.support.fake_vendors import FakeVendors

SECRET = "SECtestroute0123456789abc"


@pytest.fixture
def fake():
    with FakeVendors() as vendors:
        yield vendors


def create(admin, **fields):
    response = admin.post("/api/v1/message-tasks", json={"name": "推送", "cron_exp": "* * * * *",
                                                          **fields})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["data"]["id"]


def test_a_signed_test_message_is_accepted_and_the_vendor_reply_shown(admin, fake):
    robot = fake.add("dingtalk", "route-token-0123456789", secret=SECRET)
    task_id = create(admin, channel="dingtalk", web_hook_url=fake.url(robot), sign_secret=SECRET)

    response = admin.post(f"/api/v1/message-tasks/{task_id}/test")

    assert response.status_code == 200, response.get_json()
    data = response.get_json()["data"]
    assert data == {"channel": "dingtalk", "ok": True, "status": 200, "vendor_code": 0,
                    "vendor_message": "ok"}
    [received] = robot.accepted
    assert "测试消息" in received.body["markdown"]["text"]


@pytest.mark.parametrize("robot_options,task_secret,code,words", [
    ({"secret": SECRET}, "SECwrongsecret000000000", 310000, "sign not match"),
    ({"keyword": "日报"}, None, 310000, "keywords not in content"),
])
def test_a_refusal_shows_the_vendors_code_and_message(admin, fake, robot_options, task_secret,
                                                      code, words):
    robot = fake.add("dingtalk", "route-token-refused", **robot_options)
    fields = {"sign_secret": task_secret} if task_secret else {}
    task_id = create(admin, channel="dingtalk", web_hook_url=fake.url(robot), **fields)

    data = admin.post(f"/api/v1/message-tasks/{task_id}/test").get_json()["data"]

    assert data["ok"] is False and data["vendor_code"] == code
    assert words in data["vendor_message"]
    assert "route-token-refused" not in str(data)


def test_the_reply_never_echoes_the_token(admin, fake):
    task_id = create(admin, channel="wecom",
                     web_hook_url=f"{fake.base}/cgi-bin/webhook/send?key=unknown-key-0123456789")
    data = admin.post(f"/api/v1/message-tasks/{task_id}/test").get_json()["data"]
    assert data["ok"] is False and data["vendor_code"] == 93000
    assert "unknown-key-0123456789" not in str(data)


def test_a_task_without_url_cannot_be_tested(admin):
    task_id = create(admin)
    assert_error(admin.post(f"/api/v1/message-tasks/{task_id}/test"), 422, "validation_failed")


def test_an_unknown_task_is_404(admin):
    assert_error(admin.post("/api/v1/message-tasks/nope/test"), 404, "not_found")
