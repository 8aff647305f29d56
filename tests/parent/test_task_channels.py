"""Message-task channels, the write-only signing secret, and task secrets encrypted at rest."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from parent.extensions import db
from tests.helpers import assert_error
from tests.parent.test_leasing import claim, dispatch, make_feeds

TASKS = "/api/v1/message-tasks"
DING = "https://oapi.dingtalk.com/robot/send?access_token=dingtoken0123456789abcdef"
DING_SECRET = "SEC0f1e2d3c4b5a69788796a5b4c3d2e1f0"


def create(admin, **fields):
    body = {"name": "推送", "cron_exp": "*/5 * * * *", **fields}
    response = admin.post(TASKS, json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["data"]


@pytest.mark.parametrize("fields,channel", [
    ({"message_type": 0, "web_hook_url": DING}, "dingtalk"),
    ({"message_type": 0, "web_hook_url": "https://open.feishu.cn/open-apis/bot/v2/hook/x"}, "feishu"),
    ({"message_type": 0, "web_hook_url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k"}, "wecom"),
    ({"message_type": 1, "web_hook_url": DING}, "webhook"),
    ({"message_type": 0, "web_hook_url": "https://hooks.example.org/x", "channel": "bark"}, "bark"),
    ({"message_type": 0, "web_hook_url": "https://api.telegram.org/bot1:x/sendMessage?chat_id=1"}, "telegram"),
])
def test_channel_is_named_or_derived_from_the_url_host(admin, fields, channel):
    assert create(admin, **fields)["channel"] == channel


def test_an_unknown_channel_is_refused_and_nothing_is_stored(admin):
    response = admin.post(TASKS, json={"name": "x", "cron_exp": "* * * * *", "channel": "slack",
                                       "web_hook_url": DING})
    assert_error(response, 422, "validation_failed")
    assert "channel" in response.get_json()["details"]
    assert admin.get(TASKS).get_json()["data"]["total"] == 0


def test_sign_secret_is_write_only(admin, node_caller):
    created = create(admin, web_hook_url=DING, sign_secret=DING_SECRET)
    assert "sign_secret" not in created and created["has_sign_secret"] is True
    for answer in (admin.get(f"{TASKS}/{created['id']}"), admin.get(TASKS),
                   node_caller.get("/message-tasks")):
        assert DING_SECRET not in answer.get_data(as_text=True)

    updated = admin.put(f"{TASKS}/{created['id']}", json={"name": "改名"}).get_json()["data"]
    assert updated["has_sign_secret"] is True  # kept when not sent
    cleared = admin.put(f"{TASKS}/{created['id']}", json={"sign_secret": ""}).get_json()["data"]
    assert cleared["has_sign_secret"] is False


def test_sign_secret_reaches_the_node_only_in_its_lease(admin, node_caller):
    make_feeds(admin, 1)
    task = create(admin, web_hook_url=DING, sign_secret=DING_SECRET)
    dispatch(admin, task["id"])
    [lease] = claim(node_caller)
    assert lease["task"]["sign_secret"] == DING_SECRET
    assert lease["task"]["channel"] == "dingtalk"
    assert lease["task"]["send_limit"] == {"count": 20, "per": 60.0}


def test_a_task_without_a_limit_needs_no_permits(admin, node_caller):
    make_feeds(admin, 1)
    task = create(admin, message_type=1, web_hook_url="https://hooks.example.org/x")
    dispatch(admin, task["id"])
    [lease] = claim(node_caller)
    assert lease["task"]["send_limit"] is None and lease["task"]["sign_secret"] is None


@pytest.mark.parametrize("fields,complaint", [
    ({"web_hook_url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k",
      "sign_secret": "whatever-secret"}, "Only dingtalk and feishu sign"),
    ({"web_hook_url": DING, "sign_secret": "not-a-dingtalk-secret"}, "starts with SEC"),
])
def test_a_secret_the_channel_cannot_use_is_refused(admin, fields, complaint):
    response = admin.post(TASKS, json={"name": "x", "cron_exp": "* * * * *", **fields})
    assert_error(response, 422, "validation_failed")
    assert complaint in json.dumps(response.get_json()["details"], ensure_ascii=False)
    assert admin.get(TASKS).get_json()["data"]["total"] == 0


def test_a_database_copy_shows_no_task_secret(app, admin):
    """Issue 8 item 14: webhook URLs, headers, cookies and secrets were stored in plain text."""
    header = "Bearer hdr-secret-0123456789"
    cookie = "cookie-secret-0123456789"
    create(admin, message_type=0, web_hook_url=DING, sign_secret=DING_SECRET,
           headers={"Authorization": header}, cookies=f"sid={cookie}")
    with app.app_context():
        rows = db.session.execute(text("SELECT * FROM message_tasks")).all()
    dumped = json.dumps([list(map(str, row)) for row in rows], ensure_ascii=False)
    for secret in ("dingtoken0123456789abcdef", DING_SECRET, "hdr-secret-0123456789", cookie):
        assert secret not in dumped
    # ... and the parent still reads them back.
    task = admin.get(TASKS).get_json()["data"]["items"][0]
    assert task["web_hook_url"] == DING and task["headers"] == {"Authorization": header}
    assert task["cookies"] == f"sid={cookie}"


def test_upgrading_encrypts_the_secrets_of_existing_tasks(tmp_path):
    from flask_migrate import downgrade, upgrade

    from parent import create_app
    from parent.models import MessageTask
    from tests.conftest import base_config

    app = create_app(base_config(f"sqlite:///{tmp_path / 'old.db'}"), environ={})
    with app.app_context():
        upgrade(revision="0004")
        db.session.execute(text(
            "INSERT INTO message_tasks (id, name, message_type, message_template, web_hook_url, "
            "headers, cookies, mps_id, cron_exp, status, labels, created_at, updated_at) VALUES "
            "('t1', 'old', 0, '', :url, :headers, 'sid=old-cookie-0123456789', '[]', '* * * * *',"
            " 1, '[]', '2026-01-01 00:00:00', '2026-01-01 00:00:00')"),
            {"url": DING, "headers": json.dumps({"X-Token": "old-header-0123456789"})})
        db.session.commit()
        upgrade()
        raw = str(db.session.execute(text("SELECT * FROM message_tasks")).one())
        assert "dingtoken0123456789abcdef" not in raw and "old-header" not in raw
        db.session.expire_all()
        task = db.session.get(MessageTask, "t1")
        assert (task.web_hook_url, task.headers, task.cookies) == (
            DING, {"X-Token": "old-header-0123456789"}, "sid=old-cookie-0123456789")
        db.session.commit()
        downgrade(revision="0004")
        raw = db.session.execute(text("SELECT web_hook_url FROM message_tasks")).scalar_one()
        assert raw == DING
        db.engine.dispose()
