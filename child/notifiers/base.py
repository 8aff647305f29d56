"""What every notifier implements and raises."""

from __future__ import annotations

from typing import Callable, Protocol

from ..collectors.base import CollectedArticle

# Sent with every webhook push: the delivery's id, the same on every retry by any child,
# so a receiver can drop a message it already has.
DELIVERY_ID_HEADER = "X-WeRSS-Delivery-Id"

# permit(channel, destination) blocks until one message may be sent to ``destination`` (an
# opaque key) and returns the destination's limit ({"limit", "per"}) or None when unlimited.
Permit = Callable[[str, str], "dict | None"]


class NotifyError(Exception):
    """Articles could not be pushed.

    ``retryable`` says whether trying again may help, ``retry_after`` (seconds) when, and
    ``vendor_code`` is the receiver's own error code (DingTalk ``errcode``, Feishu ``code``...).
    """

    def __init__(self, message: str, *, retryable: bool = False,
                 retry_after: float | None = None, vendor_code: int | str | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.vendor_code = vendor_code


class Notifier(Protocol):
    def push(self, task: dict, feed: dict, articles: list[CollectedArticle], *,
             delivery_id: str | None = None) -> int:
        """Push ``articles`` of ``feed`` as ``task`` says; return how many were pushed.

        ``delivery_id`` is the idempotency key of this delivery; send it where the
        destination can use one.

        :raises NotifyError: when the receiver could not be reached or refused them.
        """
        ...
