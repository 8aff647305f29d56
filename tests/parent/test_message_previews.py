"""Templates are checked when a task is saved, and previewed as the child renders them."""

from __future__ import annotations

import json

import pytest

from tests.helpers import assert_error

TASKS = "/api/v1/message-tasks"
PREVIEW = "/api/v1/message-tasks/preview"
HOOK = "https://oapi.dingtalk.com/robot/send?access_token=abc"
MARKDOWN = ("### {{feed.mp_name}} 订阅消息：\n{% if articles %}\n{% for article in articles %}\n"
            "- [**{{ article.title }}**]({{article.url}}) ({{ article.publish_time }})\n\n"
            "{% endfor %}\n{% else %}\n- 暂无文章\n\n{% endif %}")


def task(**fields) -> dict:
    return {"name": "早报", "message_type": 0, "message_template": MARKDOWN,
            "web_hook_url": HOOK, "mps_id": [], "cron_exp": "0 8 * * *", **fields}


def task_count(admin) -> int:
    return admin.get(TASKS).get_json()["data"]["total"]


@pytest.mark.parametrize("template", ["{{= len(articles) }}", "前言\n{{=feed.mp_name}}"])
def test_werss_python_expressions_are_refused_when_a_task_is_created(admin, template):
    body = assert_error(admin.post(TASKS, json=task(message_template=template)), 422,
                        "validation_failed")

    (message,) = body["details"]["message_template"]
    assert "runs Python and is not supported" in message
    assert task_count(admin) == 0


def test_werss_python_expressions_are_refused_when_a_task_is_updated(admin):
    created = admin.post(TASKS, json=task()).get_json()["data"]
    response = admin.put(f"{TASKS}/{created['id']}", json={"message_template": "{{= 1 + 1 }}"})

    assert_error(response, 422, "validation_failed")
    again = admin.get(f"{TASKS}/{created['id']}").get_json()["data"]
    assert again["message_template"] == MARKDOWN, "a refused update changes nothing"


def test_a_template_syntax_error_is_refused_when_saved(admin):
    body = assert_error(admin.post(TASKS, json=task(message_template="{% for a in articles %}")),
                        422, "validation_failed")
    assert "syntax error on line 1" in body["details"]["message_template"][0]


def test_preview_renders_sample_articles_like_werss(admin):
    response = admin.post(PREVIEW, json={"message_template": MARKDOWN, "articles": "sample"})

    assert response.status_code == 200, response.get_json()
    data = response.get_json()["data"]
    assert data["articles"] == "sample" and data["article_count"] == 2
    assert data["content_type"] == "text/plain; charset=utf-8"
    lines = data["body"].split("\n")
    assert lines[0] == "### 示例公众号 订阅消息："
    assert lines[1].startswith('- [**示例文章二："引号"与 <标签>**](https://mp.weixin.qq.com/s/')
    assert len(lines) == 3


def test_preview_uses_a_tasks_template_and_real_recent_articles(admin, node_caller):
    feed = admin.post("/api/v1/feeds", json={"mp_name": "技术周刊", "source_type": "rss",
                                             "source_url": "http://127.0.0.1:1/f.xml"})
    feed_id = feed.get_json()["data"]["id"]
    created = admin.post(TASKS, json=task(
        message_type=1, mps_id=[{"id": feed_id, "mp_name": "技术周刊"}],
        message_template='{"items": [{% for a in articles %}"{{ a.title }}: {{ a.content }}"'
                         '{% endfor %}]}')).get_json()["data"]
    # Articles are uploaded by the node that holds the feed's lease.
    assert admin.post("/api/v1/cascade/dispatch", json={"task_id": created["id"]}).status_code == 201
    assert node_caller.post("/claim", json={"max": 1, "wait": 0}).status_code == 200
    uploaded = node_caller.post("/articles", json={"articles": [
        {"id": "r1", "mp_id": feed_id, "title": "真文章", "url": "https://example.org/r1",
         "pic_url": "", "description": "d", "publish_time": 1714521600,
         "content": "<p>正文 <b>一</b></p>"}]})
    assert uploaded.status_code == 200, uploaded.get_json()

    response = admin.post(PREVIEW, json={"task_id": created["id"], "content_format": "text"})

    data = response.get_json()["data"]
    assert data["articles"] == "recent" and data["feed"] == {"id": feed_id, "mp_name": "技术周刊"}
    assert data["content_type"] == "application/json; charset=utf-8"
    assert json.loads(data["body"]) == {"items": ["真文章: 正文 一"]}


def test_preview_of_a_template_that_fails_is_422_naming_the_problem(admin):
    response = admin.post(PREVIEW, json={"message_template": "{{ 1 / 0 }}", "articles": "sample"})

    body = assert_error(response, 422, "validation_failed")
    assert "ZeroDivisionError" in body["details"]["message_template"][0]


def test_preview_of_an_unknown_task_is_404(admin):
    assert_error(admin.post(PREVIEW, json={"task_id": "nope"}), 404, "not_found")


def test_preview_needs_an_admin(client):
    assert client.post(PREVIEW, json={"message_template": "x"}).status_code == 401


DING_SECRET = "SEC0f1e2d3c4b5a69788796a5b4c3d2e1f0"


def test_preview_shows_the_dingtalk_request_as_sent_with_secrets_masked(admin):
    created = admin.post(TASKS, json=task(sign_secret=DING_SECRET)).get_json()["data"]

    data = admin.post(PREVIEW, json={"task_id": created["id"], "articles": "sample"}) \
        .get_json()["data"]

    assert data["channel"] == "dingtalk" and data["message_count"] == 1
    [message] = data["messages"]
    request = message["request"]
    assert request["method"] == "POST" and request["url"] == "https://oapi.dingtalk.com"
    assert request["body"]["msgtype"] == "markdown"
    assert request["body"]["markdown"]["title"] == "示例公众号 更新了 2 篇文章"
    assert request["body"]["markdown"]["text"] == data["body"]
    shown = json.dumps(data, ensure_ascii=False)
    assert DING_SECRET not in shown and "access_token=abc" not in shown


@pytest.mark.parametrize("channel,shape", [
    ("feishu", lambda body: body["msg_type"] == "interactive"),
    ("wecom", lambda body: body["msgtype"] == "markdown"),
    ("serverchan", lambda body: body["title"] == "示例公众号 更新了 2 篇文章"),
])
def test_preview_renders_for_the_channel_asked_for(admin, channel, shape):
    data = admin.post(PREVIEW, json={"message_template": MARKDOWN, "articles": "sample",
                                     "channel": channel}).get_json()["data"]
    assert data["channel"] == channel
    assert shape(data["messages"][0]["request"]["body"]), data["messages"][0]


def test_preview_splits_a_long_push_as_wecom_would_never_cutting_it(admin):
    # 50 articles of long titles: more than WeCom's 4096 bytes of markdown in one message.
    template = ("{% for a in articles %}- {{ a.title }} " + "长" * 200 + "\n{% endfor %}")
    data = admin.post(PREVIEW, json={"message_template": template, "articles": "sample",
                                     "channel": "wecom", "limit": 2}).get_json()["data"]
    texts = [m["request"]["body"]["markdown"]["content"] for m in data["messages"]]
    assert all(len(text.encode()) <= 4096 for text in texts)
    long = admin.post(PREVIEW, json={
        "message_template": "{% for a in articles %}" + "段落" * 1500 + "\n{% endfor %}",
        "articles": "sample", "channel": "wecom", "limit": 2}).get_json()["data"]
    assert long["message_count"] >= 3
    parts = [m["request"]["body"]["markdown"]["content"] for m in long["messages"]]
    assert all(len(part.encode()) <= 4096 for part in parts)
    assert "".join(parts).count("段落") == 3000  # nothing dropped


def test_preview_of_a_telegram_task_masks_the_bot_token(admin):
    url = "https://api.telegram.org/bot123456:ABCdefGHIjklMNO/sendMessage?chat_id=-1001"
    created = admin.post(TASKS, json=task(web_hook_url=url)).get_json()["data"]
    data = admin.post(PREVIEW, json={"task_id": created["id"], "articles": "sample"}) \
        .get_json()["data"]
    [message] = data["messages"]
    assert data["channel"] == "telegram" and message["request"]["body"]["chat_id"] == "-1001"
    assert message["request"]["body"]["text"].startswith("### 示例公众号 订阅消息")
    assert "ABCdefGHIjklMNO" not in json.dumps(data)


def test_preview_of_a_telegram_task_without_a_chat_says_so(admin):
    response = admin.post(PREVIEW, json={"articles": "sample", "channel": "telegram"})
    body = assert_error(response, 422, "validation_failed")
    assert "chat_id" in body["details"]["web_hook_url"][0]


def test_preview_of_an_unknown_channel_is_refused(admin):
    assert_error(admin.post(PREVIEW, json={"articles": "sample", "channel": "slack"}),
                 422, "validation_failed")
