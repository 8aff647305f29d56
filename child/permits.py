"""Send permits from the parent: one rate limit per destination across every child.

Notifiers call a ``SendPermits`` before each message; it asks the parent
(``POST /cascade/send-permits``) for the destination's next moment and waits for it. A
parent without the route (older versions) means no shared limit: sending goes ahead.
"""

from __future__ import annotations

import logging
import threading


from . import errors
from .notifiers.base import NotifyError

log = logging.getLogger(__name__)
MAX_ASKS = 50


class SendPermits:
    def __init__(self, client, stop_event: threading.Event | None = None):
        self.client = client
        self.stop_event = stop_event or threading.Event()
        self._unsupported = False

    def __call__(self, channel: str, destination: str) -> dict | None:
        """Block until one message may go to ``destination``; return its limit or None.

        :raises NotifyError: (retryable) the parent cannot be asked, or the agent is stopping.
        """
        if self._unsupported:
            return None
        for _ in range(MAX_ASKS):
            try:
                answer = self.client.send_permit({"channel": channel, "destination": destination})
            except errors.NotFoundError:
                log.warning("the parent grants no send permits (an older version): pushes "
                            "are not rate-limited across children")
                self._unsupported = True
                return None
            except errors.ParentError as exc:
                raise NotifyError(f"no send permit from the parent ({exc}); will retry",
                                  retryable=True) from None
            wait = float(answer.get("wait") or 0) if answer.get("granted") else \
                float(answer.get("retry_after") or 1)
            if self.stop_event.wait(max(0.0, wait)):
                raise NotifyError("the child is stopping", retryable=True)
            if answer.get("granted"):
                return {"limit": answer.get("limit"), "per": answer.get("per")} \
                    if answer.get("limit") else None
        raise NotifyError(f"no send permit for {channel} after {MAX_ASKS} tries", retryable=True)
