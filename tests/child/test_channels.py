"""Chat channels: bodies, signatures, splitting, vendor errors and redaction."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime, timezone
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import requests
import responses

from child.collectors.base import CollectedArticle
from child.notifiers import REGISTRY, notifier_for
from child.notifiers.base import NotifyError
from child.notifiers.channel import split_message
from child.notifiers.signing import dingtalk_sign, feishu_sign
from tests.support.fake_vendors import FakeVendors

NOW = datetime(2024, 5, 1, 4, 0, 0, tzinfo=timezone.utc)
FEED = {"id": "feed-1", "mp_name": "技术周刊", "source_type": "rss"}
ARTICLES = [CollectedArticle(id=f"a{i}", mp_id="feed-1", title=f"第{i}篇", pic_url="",
                             url=f"https://example.org/{i}", description="", content=None,
                             publish_time=1714521600 + i) for i in range(3)]
DING = "https://oapi.dingtalk.com/robot/send?access_token=ding0123456789token"
FEISHU = "https://open.feishu.cn/open-apis/bot/v2/hook/feishu-0123456789-hook"
WECOM = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=wecom-0123456789-key"


def task(url: str, **extra) -> dict:
    return {"id": "t1", "name": "推送", "message_type": 0, "message_template": "",
            "web_hook_url": url, "headers": {}, "cookies": "", **extra}


def notifier(t: dict, **kwargs):
    n = notifier_for(t, requests.Session(), 5, **kwargs)
    n.clock = lambda: NOW
    n.sleep = lambda seconds: None
    return n


# -- signatures: the vectors of DOMAIN.md, and the vendor's algorithm written out here ------------
def test_dingtalk_sign_matches_the_known_answer():
    assert dingtalk_sign("SEC0123456789abcdef", 1700000000000) == \
        "TSZbRFUuvaSQaRKUpF970OPCb2/LcQAP3wOvwZIzBZk="


def test_feishu_sign_matches_the_known_answer():
    assert feishu_sign("feishu_test_secret", 1700000000) == \
        "taGE/ihlr19o9EOAGJbI4fjJSZ0Uf4n/bc8fWjnpkHM="


@responses.activate
def test_signed_dingtalk_push_carries_a_valid_sign_in_the_query():
    responses.post("https://oapi.dingtalk.com/robot/send", json={"errcode": 0, "errmsg": "ok"})
    secret = "SECabcdef0123456789"

    assert notifier(task(DING, sign_secret=secret)).push(task(DING, sign_secret=secret), FEED,
                                                         ARTICLES, delivery_id="d-1") == 3

    [call] = responses.calls
    query = parse_qs(urlsplit(call.request.url).query)
    timestamp = query["timestamp"][0]
    assert timestamp == str(int(NOW.timestamp() * 1000))  # milliseconds
    expected = base64.b64encode(hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(),
                                         hashlib.sha256).digest()).decode()
    assert query["sign"] == [expected]
    assert quote(expected, safe="") in call.request.url  # sent URL-encoded
    body = json.loads(call.request.body)
    assert body["msgtype"] == "markdown"
    assert body["msgUuid"] == "d-1"
    assert "[第0篇](https://example.org/0)" in body["markdown"]["text"]


@responses.activate
def test_signed_feishu_push_carries_timestamp_and_sign_in_the_body():
    responses.post(FEISHU, json={"code": 0, "data": {}, "msg": "success"})
    secret = "feishu-secret-xyz"
    t = task(FEISHU, sign_secret=secret)

    notifier(t).push(t, FEED, ARTICLES)

    body = json.loads(responses.calls[0].request.body)
    assert body["timestamp"] == str(int(NOW.timestamp()))  # seconds, as a string
    key = f"{body['timestamp']}\n{secret}".encode()
    assert body["sign"] == base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
    assert body["msg_type"] == "interactive"
    assert body["card"]["elements"][0]["text"]["tag"] == "lark_md"


def test_signed_pushes_are_accepted_by_the_fake_vendors_own_check():
    with FakeVendors() as fake:
        ding = fake.add("dingtalk", "tok-ding-1", secret="SECfake0123456789")
        feishu = fake.add("feishu", "hook-feishu-1", secret="feishu-fake-secret")
        for robot in (ding, feishu):
            t = task(fake.url(robot), channel=robot.channel, sign_secret=robot.secret)
            n = notifier_for(t, requests.Session(), 5)
            assert n.push(t, FEED, ARTICLES) == 3
            assert len(robot.accepted) == 1 and robot.refused == []


def test_a_wrong_secret_fails_with_the_vendors_code_and_message():
    with FakeVendors() as fake:
        robot = fake.add("dingtalk", "tok-ding-2", secret="SECright0123456789")
        t = task(fake.url(robot), channel="dingtalk", sign_secret="SECwrong0123456789")
        with pytest.raises(NotifyError) as caught:
            notifier_for(t, requests.Session(), 5).push(t, FEED, ARTICLES)
    assert caught.value.vendor_code == 310000
    assert caught.value.retryable is False
    assert "sign not match" in str(caught.value)


# -- routing ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["dingtalk", "feishu", "wecom", "bark", "serverchan",
                                  "telegram", "webhook"])
def test_every_channel_is_one_registry_entry(name):
    assert REGISTRY[name].name == name
    assert notifier_for(task("https://example.org/x", channel=name), requests.Session()).name == name


@pytest.mark.parametrize("channel,token", [("wecom", "wecom-key-1"), ("bark", "barkdevice01"),
                                           ("serverchan", "SCT123456abcdef"),
                                           ("telegram", "123456:ABCdefGhIJKlmnop")])
def test_unsigned_channels_deliver_to_their_fake_vendor(channel, token):
    with FakeVendors() as fake:
        robot = fake.add(channel, token)
        t = task(fake.url(robot), channel=channel)
        assert notifier_for(t, requests.Session(), 5).push(t, FEED, ARTICLES) == 3
        [received] = robot.accepted
    assert "第2篇" in json.dumps(received.body, ensure_ascii=False)


# -- splitting -------------------------------------------------------------------------------
def test_split_keeps_every_line_in_order_within_the_bound():
    text = "\n".join(f"- 第{i}行 " + "字" * 50 for i in range(200))
    parts = split_message(text, 2048, lambda s: len(s.encode()))
    assert len(parts) > 1
    assert all(len(p.encode()) <= 2048 for p in parts)
    assert "\n".join(parts) == text


def test_a_line_longer_than_a_message_is_cut_into_pieces_not_dropped():
    text = "长" * 3000
    parts = split_message(text, 1000, lambda s: len(s.encode()))
    assert "".join(parts) == text and all(len(p.encode()) <= 1000 for p in parts)


def test_an_over_long_wecom_message_arrives_as_ordered_parts():
    many = [CollectedArticle(id=f"b{i}", mp_id="feed-1", title=f"标题{i} " + "长" * 80,
                             url=f"https://example.org/b/{i}", pic_url="", description="",
                             content=None, publish_time=1714521600) for i in range(60)]
    with FakeVendors() as fake:
        robot = fake.add("wecom", "wecom-split")
        t = task(fake.url(robot), channel="wecom")
        assert notifier_for(t, requests.Session(), 5).push(t, FEED, many) == 60
        texts = [r.body["markdown"]["content"] for r in robot.accepted]
    assert robot.refused == [] and len(texts) > 1
    assert texts[0].startswith(f"(1/{len(texts)})") and texts[-1].startswith(f"({len(texts)}/")
    joined = "\n".join(texts)
    positions = [joined.index(f"https://example.org/b/{i})") for i in range(60)]
    assert positions == sorted(positions)


def test_an_over_long_feishu_card_is_split_below_its_20_kb_body_limit():
    many = [CollectedArticle(id=f"c{i}", mp_id="feed-1", title=f"“引号”标题{i} " + "长" * 100,
                             url=f"https://example.org/c/{i}", pic_url="", description="",
                             content=None, publish_time=1714521600) for i in range(120)]
    with FakeVendors() as fake:
        robot = fake.add("feishu", "feishu-split", secret="feishu-split-secret")
        t = task(fake.url(robot), channel="feishu", sign_secret=robot.secret)
        assert notifier_for(t, requests.Session(), 5).push(t, FEED, many) == 120
    assert robot.refused == [] and len(robot.accepted) > 1
    titles = [r.body["card"]["header"]["title"]["content"] for r in robot.accepted]
    assert titles[0].endswith(f"(1/{len(titles)})")
    text = "\n".join(r.body["card"]["elements"][0]["text"]["content"] for r in robot.accepted)
    assert all(f"https://example.org/c/{i})" in text for i in range(120))


# -- vendor errors are read from the body ----------------------------------------------------
@responses.activate
@pytest.mark.parametrize("url,answer,code,retryable", [
    (DING, {"errcode": 310000, "errmsg": "keywords not in content"}, 310000, False),
    (DING, {"errcode": 130101, "errmsg": "send too fast"}, 130101, True),
    (WECOM, {"errcode": 93000, "errmsg": "invalid webhook url"}, 93000, False),
    (WECOM, {"errcode": 45009, "errmsg": "api freq out of limit"}, 45009, True),
    (FEISHU, {"code": 19024, "data": {}, "msg": "Key Words Not Found"}, 19024, False),
    (FEISHU, {"code": 11232, "data": {}, "msg": "frequency limited"}, 11232, True),
])
def test_errors_answered_with_http_200_fail_with_the_vendor_code(url, answer, code, retryable):
    responses.post(urlsplit(url)._replace(query="").geturl(), json=answer)
    slept = []
    n = notifier(task(url))
    n.sleep = slept.append
    with pytest.raises(NotifyError) as caught:
        n.push(task(url), FEED, ARTICLES)
    assert caught.value.vendor_code == code
    assert caught.value.retryable is retryable
    assert answer.get("errmsg", answer.get("msg")) in str(caught.value)
    # Throttling is waited out and tried again before giving up; refusals are not retried.
    assert len(responses.calls) == (4 if retryable else 1)
    assert len(slept) == (3 if retryable else 0)
    if retryable:
        assert caught.value.retry_after is not None


@responses.activate
def test_throttled_then_accepted_delivers_once():
    base = urlsplit(DING)._replace(query="").geturl()
    responses.post(base, json={"errcode": 130101, "errmsg": "send too fast"})
    responses.post(base, json={"errcode": 0, "errmsg": "ok"})
    n = notifier(task(DING))
    assert n.push(task(DING), FEED, ARTICLES) == 3
    assert len(responses.calls) == 2


@responses.activate
def test_telegram_waits_the_retry_after_it_is_told():
    url = "https://api.telegram.org/bot123:secret-token-abc/sendMessage?chat_id=42"
    responses.post("https://api.telegram.org/bot123:secret-token-abc/sendMessage", status=429,
                   json={"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 7",
                         "parameters": {"retry_after": 7}})
    responses.post("https://api.telegram.org/bot123:secret-token-abc/sendMessage",
                   json={"ok": True, "result": {}})
    slept = []
    n = notifier(task(url, channel="telegram"))
    n.sleep = slept.append
    assert n.push(task(url, channel="telegram"), FEED, ARTICLES) == 3
    assert slept == [7.0]
    assert json.loads(responses.calls[1].request.body)["chat_id"] == "42"


# -- redaction (issue 8 item 10): any encoding of a secret keeps the reply out ------------------
TOKEN = "robot/Secret+Token-77aa99"


@pytest.mark.parametrize("echo", [
    TOKEN, quote(TOKEN, safe=""), quote(TOKEN, safe="").lower(), json.dumps(f"/{TOKEN}/x")[1:-1].replace("/", "\\/"),
    base64.b64encode(f"token={TOKEN}".encode()).decode(), TOKEN.upper(),
    base64.urlsafe_b64encode(TOKEN.encode()).decode(),
])
@pytest.mark.parametrize("channel", ["webhook", "dingtalk", "wecom"])
@responses.activate
def test_no_encoding_of_a_secret_reaches_the_error(channel, echo):
    url = f"https://hooks.example.org/robot/send?access_token={quote(TOKEN, safe='')}"
    body = {"errcode": 400, "errmsg": f"bad token {echo}"} if channel != "webhook" else None
    if body:
        responses.post("https://hooks.example.org/robot/send", json=body)
    else:
        responses.post("https://hooks.example.org/robot/send", status=400, body=f"bad token {echo}")
    t = task(url, channel=channel)
    with pytest.raises(NotifyError) as caught:
        notifier(t).push(t, FEED, ARTICLES)
    text = str(caught.value)
    assert TOKEN.lower() not in text.lower() and echo not in text
    assert "withheld" in text


@responses.activate
def test_a_harmless_vendor_message_is_shown():
    responses.post("https://oapi.dingtalk.com/robot/send",
                   json={"errcode": 310000, "errmsg": "keywords not in content"})
    with pytest.raises(NotifyError, match="keywords not in content"):
        notifier(task(DING)).push(task(DING), FEED, ARTICLES)


# -- permits ---------------------------------------------------------------------------------
@responses.activate
def test_every_message_asks_for_a_permit_for_its_destination():
    responses.post("https://oapi.dingtalk.com/robot/send", json={"errcode": 0, "errmsg": "ok"})
    asked = []
    t = task(DING)
    n = notifier(t, permit=lambda channel, key: asked.append((channel, key)) or None)
    n.push(t, FEED, ARTICLES)
    n.push(t, FEED, ARTICLES)
    other = task(DING.replace("ding0123", "other0123"))
    notifier(other, permit=lambda channel, key: asked.append((channel, key))).push(
        other, FEED, ARTICLES)
    assert [c for c, _ in asked] == ["dingtalk"] * 3
    assert asked[0][1] == asked[1][1] != asked[2][1]
    assert TOKEN not in asked[0][1] and "ding0123456789token" not in asked[0][1]


@responses.activate
def test_a_limited_webhook_asks_for_a_permit_too():
    responses.post("https://hooks.example.org/x", status=204)
    asked = []
    t = task("https://hooks.example.org/x", message_type=1)
    n = notifier_for(t, requests.Session(), 5, permit=lambda c, k: asked.append(c))
    assert n.push(t, FEED, ARTICLES) == 3
    assert asked == ["webhook"]


def test_split_dingtalk_parts_carry_the_delivery_id_and_numbered_uuids():
    many = [CollectedArticle(id=f"d{i}", mp_id="feed-1", title="长" * 300,
                             url=f"https://example.org/d/{i}", pic_url="", description="",
                             content=None, publish_time=1714521600) for i in range(40)]
    with FakeVendors() as fake:
        robot = fake.add("dingtalk", "ding-split-token")
        t = task(fake.url(robot), channel="dingtalk")
        notifier_for(t, requests.Session(), 5).push(t, FEED, many, delivery_id="dlv-7")
    uuids = [r.body["msgUuid"] for r in robot.accepted]
    assert len(uuids) > 1
    assert uuids == ["dlv-7"] + [f"dlv-7-{i}" for i in range(2, len(uuids) + 1)]
