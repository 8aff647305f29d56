"""Send one test message through a task's channel and report what the vendor answered.

The parent uses the child's notifiers (child/notifiers), so a test goes out exactly as a
push would: same body, same signature, same permit from the shared rate limit.
"""

from __future__ import annotations

import time
from typing import Any

import requests
from marshmallow import ValidationError

from child.collectors.base import CollectedArticle
from child.notifiers import notifier_for
from child.notifiers.base import NotifyError

from ..config import settings
from . import send_budgets
from .message_tasks import get_task, task_channel, task_to_wire

TEST_FEED = {"id": "werss-test", "mp_name": "WeRSS Cascade", "mp_cover": "", "mp_intro": "",
             "faker_id": ""}


def test_article() -> CollectedArticle:
    return CollectedArticle(
        id="werss-cascade-test", mp_id="werss-test", title="WeRSS Cascade 测试消息",
        url="https://github.com/rachelos/we-mp-rss", pic_url="",
        description="这是一条测试消息：看到它说明推送渠道配置正确。", content=None,
        publish_time=int(time.time()))


def task_as_pushed(task) -> dict:
    """The task as a node's lease carries it, signing secret included."""
    wire = task_to_wire(task)
    return {**wire, "channel": task_channel(task), "sign_secret": task.sign_secret}


def push_once(task: dict, feed: dict, articles: list, *, timeout: float | None = None) -> dict:
    """Push through ``task``'s channel from the parent; return the vendor's reply."""
    with requests.Session() as session:
        notifier = notifier_for(task, session,
                                timeout or max(5.0, settings().test_connection_timeout),
                                permit=send_budgets.local_permit)
        channel = getattr(notifier, "name", None)
        if channel is None:
            raise ValidationError({"web_hook_url": ["The task has no webhook URL to test."]})
        if hasattr(notifier, "throttle_retries"):
            notifier.throttle_retries = 0  # an admin waits for this answer
        try:
            notifier.push(task, feed, articles)
        except NotifyError as exc:
            return {"ok": False, "channel": channel, "vendor_code": exc.vendor_code,
                    "vendor_message": str(exc), "retryable": exc.retryable}
    # Every HTTP notifier keeps the vendor's answer; the Notifier protocol does not need it.
    reply: Any = getattr(notifier, "last_reply", None)
    reply = reply.to_wire() if hasattr(reply, "to_wire") else dict(reply or {})
    return {"channel": channel, **reply, "ok": True}


def send_test_message(task_id: str) -> dict:
    """:raises ValidationError: the task has no URL to send to."""
    task = get_task(task_id)
    if not (task.web_hook_url or "").strip():
        raise ValidationError({"web_hook_url": ["The task has no webhook URL to test."]})
    return push_once(task_as_pushed(task), TEST_FEED, [test_article()])
