"""Pushing articles to a real webhook receiver on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import socket
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests

from child.collectors.base import CollectedArticle
from child.notifiers import notifier_for
from child.notifiers.base import NotifyError
from child.notifiers.webhook import WebhookNotifier
from tests.support.local_server import LocalServer, Reply

BEIJING = timezone(timedelta(hours=8))
NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=BEIJING)
FEED = {"id": "feed-1", "faker_id": "", "mp_name": "技术周刊", "mp_cover": "", "mp_intro": "",
        "status": 1, "source_type": "rss", "source_url": "https://example.org/feed.xml"}
ARTICLES = [
    CollectedArticle(id="post-2", mp_id="feed-1", title='第二篇 "引号"', url="https://example.org/2",
                     pic_url="https://img.example.org/2.jpg", description="<p>摘要二</p>",
                     content="<p>正文二</p>", publish_time=1714608000),
    CollectedArticle(id="post-1", mp_id="feed-1", title="第一篇", url="https://example.org/1",
                     pic_url="", description="摘要一", content=None, publish_time=1714521600),
]
SECRET_HEADER = "Bearer tok-5f4dcc3b5aa765d6"
SECRET_COOKIE = "sess-8d969eef6ecad3c2"


@pytest.fixture
def receiver():
    with LocalServer() as running:
        running.serve("/hook", Reply(200, b'{"ok": true}'))
        yield running


@pytest.fixture
def session():
    with requests.Session() as s:
        s.trust_env = False
        yield s


@pytest.fixture
def notifier(session):
    return WebhookNotifier(session, timeout=5, clock=lambda: NOW)


def task_for(url: str, template: str = "", **extra) -> dict:
    return {"id": "task-1", "name": "每日推送", "message_type": 1, "message_template": template,
            "web_hook_url": url, "headers": {}, "cookies": "", "cron_exp": "*/5 * * * *",
            "mps_id": [], **extra}


def test_default_body_carries_task_feed_and_articles_as_uploaded(receiver, notifier):
    pushed = notifier.push(task_for(receiver.url("/hook")), FEED, ARTICLES)

    assert pushed == 2
    [request] = receiver.requests
    assert request.method == "POST"
    assert request.headers["Content-Type"] == "application/json; charset=utf-8"
    assert "技术周刊".encode() in request.body  # readable UTF-8, not \\u escapes
    assert json.loads(request.body) == {
        "task": {"id": "task-1", "name": "每日推送"},
        "feed": {"id": "feed-1", "mp_name": "技术周刊"},
        "articles": [article.to_wire() for article in ARTICLES],
    }


def test_text_template_is_sent_as_rendered_plain_text(receiver, notifier):
    template = ("{{ feed.mp_name }} 更新了 {{ articles|length }} 篇：\n"
                "{% for a in articles %}- {{ a.title }} {{ a.url }} ({{ a.publish_time }})\n"
                "{% endfor %}")

    assert notifier.push(task_for(receiver.url("/hook"), template), FEED, ARTICLES) == 2

    [request] = receiver.requests
    assert request.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert request.body.decode("utf-8") == (
        "技术周刊 更新了 2 篇：\n"
        '- 第二篇 "引号" https://example.org/2 (2024-05-02 08:00:00)\n'
        "- 第一篇 https://example.org/1 (2024-05-01 08:00:00)")  # cleaned as WeRSS does


def test_werss_style_json_template_arrives_as_valid_json(receiver, notifier):
    template = r"""{"msgtype": "markdown", "markdown": {"title": "{{ feed.mp_name }}",
      "text": "{% for a in articles %}[{{ a.title }}]({{ a.url }}) {{ a.description }}\n
{%- endfor %}"}}"""

    notifier.push(task_for(receiver.url("/hook"), template), FEED, ARTICLES)

    [request] = receiver.requests
    assert request.headers["Content-Type"] == "application/json; charset=utf-8"
    # As in WeRSS, iterations are joined with a newline (escaped inside a JSON string).
    assert json.loads(request.body)["markdown"]["text"] == (
        '[第二篇 "引号"](https://example.org/2) <p>摘要二</p>\n\n'
        "[第一篇](https://example.org/1) 摘要一\n")


def test_task_headers_and_cookies_reach_the_receiver(receiver, notifier):
    task = task_for(receiver.url("/hook"), headers={"Authorization": SECRET_HEADER,
                                                    "X-Source": "werss"},
                    cookies=f"sid={SECRET_COOKIE}; theme=dark")

    notifier.push(task, FEED, ARTICLES)

    [request] = receiver.requests
    assert request.headers["Authorization"] == SECRET_HEADER
    assert request.headers["X-Source"] == "werss"
    assert request.headers["Cookie"] == f"sid={SECRET_COOKIE}; theme=dark"


def test_content_type_from_the_task_wins(receiver, notifier):
    task = task_for(receiver.url("/hook"), "{{ articles|length }}",
                    headers={"content-type": "application/x-www-form-urlencoded"})

    notifier.push(task, FEED, ARTICLES)

    [request] = receiver.requests
    assert request.headers.get_all("Content-Type") == ["application/x-www-form-urlencoded"]


def test_nothing_is_posted_without_articles(receiver, notifier):
    assert notifier.push(task_for(receiver.url("/hook")), FEED, []) == 0
    assert receiver.requests == []


@pytest.mark.parametrize("status, retryable", [
    (429, True), (500, True), (503, True), (400, False), (401, False), (404, False)])
def test_refusals_say_whether_a_retry_can_help(receiver, notifier, status, retryable):
    receiver.serve("/hook", Reply(status, b'{"errcode": 1, "errmsg": "refused"}'))

    with pytest.raises(NotifyError, match=f"HTTP {status}") as caught:
        notifier.push(task_for(receiver.url("/hook")), FEED, ARTICLES)

    assert caught.value.retryable is retryable
    assert "refused" in str(caught.value)  # the receiver's reason helps the admin


def test_a_redirect_is_an_error_and_is_not_followed(receiver, notifier):
    receiver.serve("/hook", Reply(302, headers={"Location": "/moved"}))
    receiver.serve("/moved", Reply(200))

    with pytest.raises(NotifyError, match="HTTP 302") as caught:
        notifier.push(task_for(receiver.url("/hook")), FEED, ARTICLES)

    assert caught.value.retryable is False
    assert receiver.requests_to("/moved") == []


def test_unreachable_receiver_is_retryable(notifier):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    with pytest.raises(NotifyError, match="could not be reached") as caught:
        notifier.push(task_for(f"http://127.0.0.1:{port}/hook"), FEED, ARTICLES)

    assert caught.value.retryable is True


def test_slow_receiver_times_out_and_is_retryable(receiver, session):
    receiver.serve("/hook", Reply(200, delay=3))
    started = time.monotonic()

    with pytest.raises(NotifyError, match="timed out") as caught:
        WebhookNotifier(session, timeout=0.3).push(task_for(receiver.url("/hook")), FEED, ARTICLES)

    assert caught.value.retryable is True
    assert time.monotonic() - started < 2


def test_broken_template_is_not_retryable_and_sends_nothing(receiver, notifier):
    with pytest.raises(NotifyError, match="cannot be rendered: SecurityError") as caught:
        notifier.push(task_for(receiver.url("/hook"), "{{ ''.__class__.__mro__ }}"), FEED, ARTICLES)

    assert caught.value.retryable is False
    assert receiver.requests == []


@pytest.mark.parametrize("headers, cookies", [
    ({"X-Token": "abc\r\nX-Injected: 1"}, ""),
    ({"X-Name": "中文值"}, ""),
    ({}, "sid=abc\r\nX-Injected: 1"),
])
def test_unsendable_headers_are_refused_before_sending(receiver, notifier, headers, cookies):
    task = task_for(receiver.url("/hook"), headers=headers, cookies=cookies)

    with pytest.raises(NotifyError) as caught:
        notifier.push(task, FEED, ARTICLES)

    assert caught.value.retryable is False
    assert "abc" not in str(caught.value) and "中文值" not in str(caught.value)
    assert receiver.requests == []


def test_secrets_stay_out_of_errors_and_logs(receiver, notifier, caplog):
    echo = f"bad token {SECRET_HEADER} cookie sid={SECRET_COOKIE} at /hook/robot-key-778899"
    receiver.serve("/hook/robot-key-778899", Reply(401, echo))
    task = task_for(receiver.url("/hook/robot-key-778899?access_token=dd-0123456789"),
                    headers={"Authorization": SECRET_HEADER}, cookies=f"sid={SECRET_COOKIE}")
    caplog.set_level(logging.DEBUG)

    with pytest.raises(NotifyError) as caught:
        notifier.push(task, FEED, ARTICLES)
    receiver.serve("/hook/robot-key-778899", Reply(200))
    notifier.push(task, FEED, ARTICLES)

    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("child."))
    assert "pushed 2 article(s)" in ours
    for text in (str(caught.value), ours):
        for secret in ("tok-5f4dcc3b5aa765d6", SECRET_COOKIE, "robot-key-778899", "dd-0123456789"):
            assert secret not in text
    assert "HTTP 401" in str(caught.value)


@pytest.mark.parametrize("url,channel", [
    ("https://oapi.dingtalk.com/robot/send?access_token=x", "dingtalk"),
    ("https://open.feishu.cn/open-apis/bot/v2/hook/abc", "feishu"),
    ("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k", "wecom"),
    ("https://example.org/hook", "webhook"),
])
def test_message_tasks_pick_their_channel_by_url_host_as_werss_does(session, url, channel):
    notifier = notifier_for({**task_for(url), "message_type": 0}, session)

    assert notifier.name == channel
    assert notifier.push({}, FEED, []) == 0


@pytest.mark.parametrize("message_type", [0, 1])
def test_task_without_webhook_url_pushes_nothing(session, message_type):
    notifier = notifier_for({**task_for(""), "message_type": message_type}, session)

    assert notifier.push(task_for(""), FEED, ARTICLES) == 0


def test_notifier_for_webhook_task_posts_to_it(receiver, session):
    task = task_for(receiver.url("/hook"))

    assert notifier_for(task, session, timeout=5).push(task, FEED, ARTICLES) == 2
    assert len(receiver.requests_to("/hook")) == 1


@pytest.mark.parametrize("url_tail,echo,secret", [
    ("/robot/send?access_token=dd0123456789abcdef", "invalid access_token: dd0123456789abcdef",
     "dd0123456789abcdef"),
    ("/open-apis/bot/v2/hook/6f1c2b7e-aaaa-bbbb-cccc-0123456789ab",
     "hook 6f1c2b7e-aaaa-bbbb-cccc-0123456789ab not found",
     "6f1c2b7e-aaaa-bbbb-cccc-0123456789ab"),
])
def test_a_token_echoed_on_its_own_is_blanked_from_the_error(url_tail, echo, secret):
    import requests

    from child.notifiers.base import NotifyError
    from child.notifiers.webhook import WebhookNotifier
    from tests.support.local_server import LocalServer, Reply

    with LocalServer() as server:
        server.serve(url_tail.split("?")[0], Reply(400, echo.encode()))
        with pytest.raises(NotifyError) as caught:
            WebhookNotifier(requests.Session()).push(task_for(server.url(url_tail)), FEED, ARTICLES)
    assert secret not in str(caught.value)


def test_the_content_format_setting_reaches_the_template(receiver):
    """WeRSS's webhook.content_format: the child's CASCADE_CONTENT_FORMAT."""
    task = task_for(receiver.url("/hook"), "{% for a in articles %}{{ a.content }}{% endfor %}")
    article = CollectedArticle(id="c1", mp_id="feed-1", title="t", url="https://example.org/c",
                               pic_url="", description="", publish_time=0,
                               content="<h2>标题</h2><p>正文</p>")
    with requests.Session() as session:
        session.trust_env = False
        notifier_for(task, session, content_format="markdown").push(task, FEED, [article])

    [request] = receiver.requests
    assert request.body.decode("utf-8") == "## 标题\n\n正文"


def test_every_push_carries_its_delivery_id(receiver, notifier):
    url = receiver.url("/hook")
    assert notifier.push(task_for(url), FEED, ARTICLES, delivery_id="d-42") == 2
    assert receiver.requests_to("/hook")[-1].headers.get("X-WeRSS-Delivery-Id") == "d-42"


def test_throttled_webhook_says_when_and_why(receiver, notifier):
    url = receiver.serve("/busy", Reply(429, b"slow down", headers={"Retry-After": "7"}))
    with pytest.raises(NotifyError) as caught:
        notifier.push(task_for(url), FEED, ARTICLES, delivery_id="d-1")
    assert (caught.value.retryable, caught.value.retry_after, caught.value.vendor_code) == (
        True, 7.0, "429")
