"""Notifiers push new articles on as a task says; ``notifier_for`` picks one per task."""

from __future__ import annotations

import requests

from ..collectors.base import CollectedArticle
from .base import Notifier, NotifyError

__all__ = ["Notifier", "NotifyError", "notifier_for"]

MESSAGE_TYPE_MESSAGE = 0
MESSAGE_TYPE_WEBHOOK = 1


def notifier_for(task: dict, session: requests.Session, timeout: float = 20, *,
                 content_format: str = "html") -> Notifier:
    """Return the notifier for ``task``: a webhook, a no-op without a URL, or a refusal."""
    if not (task.get("web_hook_url") or "").strip():
        return NoopNotifier()
    message_type = task.get("message_type")
    if message_type == MESSAGE_TYPE_WEBHOOK:
        from .webhook import WebhookNotifier

        return WebhookNotifier(session, timeout, content_format=content_format)
    if message_type == MESSAGE_TYPE_MESSAGE:
        return UnsupportedNotifier(
            "message channels (DingTalk/Feishu/WeCom) are not supported yet")
    return UnsupportedNotifier(f"unknown message_type {message_type!r}")


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
