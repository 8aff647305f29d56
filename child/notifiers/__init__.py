"""Notifiers push new articles on as a task says; ``notifier_for`` picks one per task.

Adding a channel is one module here plus one line in ``shared.channels.REGISTRY``, which
names the module; it is imported at the channel's first push (docs/DEVELOPING.md).
"""

from __future__ import annotations

import requests

from shared import channels
from shared.channels import MESSAGE_TYPE_MESSAGE, MESSAGE_TYPE_WEBHOOK, effective_channel
from shared.registry import Resolved

from ..collectors.base import CollectedArticle
from .base import Notifier, NotifyError, Permit

__all__ = ["Notifier", "NotifyError", "REGISTRY", "notifier_for"]

# channel name -> notifier class, read from the shared registry.
REGISTRY = Resolved(channels.REGISTRY, "notifier")


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
    if channel not in REGISTRY:
        return UnsupportedNotifier(f"unknown channel {task.get('channel')!r}")
    return REGISTRY[channel](session, timeout, content_format=content_format, permit=permit)


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
