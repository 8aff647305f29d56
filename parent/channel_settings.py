"""The parent's push settings: per-channel rate limits and the admin notice channel.

``channel_limits:`` (one limit per destination for the whole cascade) and ``notice:`` (where
the parent sends admin notices) in the parent's config.yaml; docs/CHANNELS.md shows both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared import channels
from shared.channels import CHANNELS, MESSAGE_TYPE_MESSAGE, SIGNED_CHANNELS, channel_from_url


@dataclass(frozen=True)
class ChannelLimit:
    """At most ``count`` messages in any ``per`` seconds to one destination."""

    count: int
    per: float
    # Kept free of the window so network delays between permit and arrival cannot push a
    # 21st message into a 60 s window.
    margin: float

    @property
    def spacing(self) -> float:
        return (self.per + self.margin) / self.count


def default_margin(per: float) -> float:
    return max(0.2, per * 0.02)


def build_channel_limits(raw: Any, error) -> dict[str, ChannelLimit]:
    """The registry's limits, replaced per channel by ``channel_limits:`` ({count, per, margin?}
    or null)."""
    limits = {name: ChannelLimit(*channel.limit, default_margin(channel.limit[1]))
              for name, channel in channels.REGISTRY.items() if channel.limit}
    if raw is None:
        return limits
    if not isinstance(raw, dict):
        raise error("channel_limits: must be a mapping of channel name to {count, per}")
    for name, value in raw.items():
        if name not in CHANNELS:
            raise error(f"channel_limits: unknown channel {name!r} (one of {', '.join(CHANNELS)})")
        if value is None:
            limits.pop(name, None)
            continue
        if not isinstance(value, dict) or set(value) - {"count", "per", "margin"}:
            raise error(f"channel_limits.{name}: expected {{count, per, margin?}}")
        try:
            count = int(value.get("count", ""))
            per = float(value.get("per", 60))
            margin = float(value["margin"]) if value.get("margin") is not None \
                else default_margin(per)
        except (TypeError, ValueError):
            raise error(f"channel_limits.{name}: count and per must be numbers") from None
        if count < 1 or not 0.1 <= per <= 86400 or not 0 <= margin <= per:
            raise error(f"channel_limits.{name}: need count >= 1, 0.1 <= per <= 86400 and "
                        f"0 <= margin <= per")
        limits[name] = ChannelLimit(count, per, margin)
    return limits


NOTICE_KEYS = {"channel", "web_hook_url", "sign_secret", "headers", "message_type",
               "failing_after"}


def build_notice(raw: Any, error) -> dict | None:
    """The ``notice:`` channel, shaped like a message task the notifiers understand."""
    if raw in (None, {}):
        return None
    if not isinstance(raw, dict):
        raise error("notice: must be a mapping with web_hook_url (and channel, sign_secret)")
    unknown = sorted(set(raw) - NOTICE_KEYS)
    if unknown:
        raise error(f"notice: unknown key(s): {', '.join(unknown)}")
    url = str(raw.get("web_hook_url") or "").strip()
    if not url.lower().startswith(("http://", "https://")):
        raise error("notice.web_hook_url: expected an http(s) URL")
    channel = raw.get("channel") or channel_from_url(url) or "webhook"
    if channel not in CHANNELS:
        raise error(f"notice.channel: unknown channel {channel!r} (one of {', '.join(CHANNELS)})")
    secret = raw.get("sign_secret") or None
    if secret and channel not in SIGNED_CHANNELS:
        raise error(f"notice.sign_secret: only {' and '.join(SIGNED_CHANNELS)} sign")
    try:
        failing_after = int(raw.get("failing_after", 3))
    except (TypeError, ValueError):
        raise error("notice.failing_after: expected a whole number") from None
    if failing_after < 1:
        raise error("notice.failing_after: must be at least 1")
    headers = raw.get("headers") or {}
    if not isinstance(headers, dict):
        raise error("notice.headers: must be a mapping")
    return {"id": "notice", "name": "system notice", "message_type": MESSAGE_TYPE_MESSAGE,
            "channel": channel, "web_hook_url": url, "sign_secret": secret, "message_template": "",
            "headers": {str(k): str(v) for k, v in headers.items()}, "cookies": "",
            "failing_after": failing_after}
