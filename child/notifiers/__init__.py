"""Notifiers push new articles on as a task says; ``notifier_for`` picks one per task.

Adding a channel is one module here plus one line in ``REGISTRY``.
"""

from __future__ import annotations

import requests

from shared import channels
from shared.channels import MESSAGE_TYPE_MESSAGE, MESSAGE_TYPE_WEBHOOK, effective_channel

from ..collectors.base import CollectedArticle
from .bark import BarkNotifier
from .base import Notifier, NotifyError, Permit
from .dingtalk import DingTalkNotifier
from .feishu import FeishuNotifier
from .serverchan import ServerChanNotifier
from .telegram import TelegramNotifier
from .webhook import WebhookNotifier
from .wecom import WeComNotifier

__all__ = ["Notifier", "NotifyError", "REGISTRY", "notifier_for"]

REGISTRY = {
    channels.DINGTALK: DingTalkNotifier,
    channels.FEISHU: FeishuNotifier,
    channels.WECOM: WeComNotifier,
    channels.BARK: BarkNotifier,
    channels.SERVERCHAN: ServerChanNotifier,
    channels.TELEGRAM: TelegramNotifier,
    channels.WEBHOOK: WebhookNotifier,
}


def notifier_for(task: dict, session: requests.Session, timeout: float = 20, *,
                 content_format: str = "html", permit: Permit | None = None) -> Notifier:
    """Return the notifier of ``task``'s channel, a no-op without a URL, or a refusal.

    ``permit`` is asked before every message, so one rate limit per destination holds
    across every child.
    """
    if not (task.get("web_hook_url") or "").strip():
        return NoopNotifier()
    message_type = task.get("message_type")
    if message_type not in (MESSAGE_TYPE_MESSAGE, MESSAGE_TYPE_WEBHOOK):
        return UnsupportedNotifier(f"unknown message_type {message_type!r}")
    channel = effective_channel(task)
    notifier = REGISTRY.get(channel)
    if notifier is None:
        return UnsupportedNotifier(f"unknown channel {task.get('channel')!r}")
    return notifier(session, timeout, content_format=content_format, permit=permit)


class NoopNotifier:
    """A task without a webhook URL only collects."""

    def push(self, task: dict, feed: dict, articles: list[CollectedArticle], *,
             delivery_id: str | None = None) -> int:
        return 0


class UnsupportedNotifier:
    """Refuse to push, but only when there is something to push."""

    def __init__(self, reason: str):
        self.reason = reason

    def push(self, task: dict, feed: dict, articles: list[CollectedArticle], *,
             delivery_id: str | None = None) -> int:
        if not articles:
            return 0
        raise NotifyError(self.reason, retryable=False)
