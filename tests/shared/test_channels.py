"""Routing a task to its channel by the registry's host patterns."""

from __future__ import annotations

import pytest

from shared.channels import SIGNED_CHANNELS, channel_from_url, effective_channel


@pytest.mark.parametrize("url, channel", [
    ("https://oapi.dingtalk.com/robot/send?access_token=t", "dingtalk"),
    ("https://open.larksuite.com/open-apis/bot/v2/hook/h", "feishu"),
    ("https://OPEN.FEISHU.CN/open-apis/bot/v2/hook/h", "feishu"),
    ("https://sctapi.ftqq.com/SCT1.send", "serverchan"),
    ("https://123.push.ft07.com/send/sctp1.send", "serverchan"),
    ("https://evilpush.ft07.com/send/k.send", None),
    ("https://oapi.dingtalk.com.evil.example/robot/send", None),
    ("not a url", None),
])
def test_a_webhook_url_is_routed_by_its_host(url, channel):
    assert channel_from_url(url) == channel


def test_a_task_without_a_channel_falls_back_to_a_plain_webhook():
    assert effective_channel({"message_type": 0, "web_hook_url": "https://hooks.example/x"}) \
        == "webhook"
    assert effective_channel({"message_type": 1,
                              "web_hook_url": "https://oapi.dingtalk.com/robot/send"}) == "webhook"


def test_only_dingtalk_and_feishu_sign():
    assert tuple(SIGNED_CHANNELS) == ("dingtalk", "feishu")
