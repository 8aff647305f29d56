"""Push channels of message tasks: their registry, and how a task's channel is derived.

Both sides use this: the parent to validate and show a task's channel and limit its pushes,
the child to load its notifier and to pick one when a task (for example one from an older
parent) does not name one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from urllib.parse import urlsplit

from .registry import Names

DINGTALK = "dingtalk"
FEISHU = "feishu"
WECOM = "wecom"
BARK = "bark"
SERVERCHAN = "serverchan"
TELEGRAM = "telegram"
WEBHOOK = "webhook"


@dataclass(frozen=True)
class Channel:
    # "module:Class" of its notifier; the child imports it at the first push.
    notifier: str
    # Webhook hosts a task without a channel is routed to it by ("*.x.com": any subdomain).
    hosts: tuple[str, ...] = ()
    # Whether it can sign its pushes with a task's sign_secret.
    signs: bool = False
    # The vendor's documented robot limit, (count, per seconds) per destination (DOMAIN.md);
    # the parent's channel_limits: replaces it. None: unlimited.
    limit: tuple[int, float] | None = None


# One line per channel: adding one is a module in child/notifiers/ plus a line here.
REGISTRY: dict[str, Channel] = {
    DINGTALK: Channel("child.notifiers.dingtalk:DingTalkNotifier", ("oapi.dingtalk.com",),
                      signs=True, limit=(20, 60.0)),
    # Feishu's 5/s is met by 100/min spacing.
    FEISHU: Channel("child.notifiers.feishu:FeishuNotifier",
                    ("open.feishu.cn", "open.larksuite.com"), signs=True, limit=(100, 60.0)),
    WECOM: Channel("child.notifiers.wecom:WeComNotifier", ("qyapi.weixin.qq.com",),
                   limit=(20, 60.0)),
    BARK: Channel("child.notifiers.bark:BarkNotifier", ("api.day.app",)),
    # *.push.ft07.com: ServerChan 3 keys.
    SERVERCHAN: Channel("child.notifiers.serverchan:ServerChanNotifier",
                        ("sctapi.ftqq.com", "*.push.ft07.com")),
    TELEGRAM: Channel("child.notifiers.telegram:TelegramNotifier", ("api.telegram.org",),
                      limit=(20, 60.0)),
    WEBHOOK: Channel("child.notifiers.webhook:WebhookNotifier"),
}
CHANNELS = Names(REGISTRY)
SIGNED_CHANNELS = Names(REGISTRY, lambda channel: channel.signs)

# A task's message_type, as WeRSS numbers it: 0 a chat-robot message, 1 a custom webhook.
MESSAGE_TYPE_MESSAGE = 0
MESSAGE_TYPE_WEBHOOK = 1
MESSAGE_TYPES = (MESSAGE_TYPE_MESSAGE, MESSAGE_TYPE_WEBHOOK)


def channel_from_url(url: str) -> str | None:
    """Return the channel a webhook URL's host belongs to, or None for any other host.

    WeRSS routes message_type 0 by three of these hosts; the other channels' hosts join them.
    """
    try:
        host = (urlsplit((url or "").strip()).hostname or "").lower()
    except ValueError:
        return None
    for name, channel in REGISTRY.items():
        for pattern in channel.hosts:
            if host == pattern or (pattern.startswith("*.") and host.endswith(pattern[1:])):
                return name
    return None


def effective_channel(task: dict) -> str:
    """The channel a task pushes through: its own ``channel``, else derived as WeRSS does.

    ``message_type`` 1 stays the custom webhook; ``message_type`` 0 picks by the URL's host
    and falls back to a plain webhook POST for any other host.
    """
    named = task.get("channel")
    if isinstance(named, str) and named in CHANNELS:
        return named
    if task.get("message_type") == MESSAGE_TYPE_WEBHOOK:
        return WEBHOOK
    return channel_from_url(task.get("web_hook_url") or "") or WEBHOOK


def destination_of(web_hook_url: str) -> str:
    """The robot or chat a push goes to, what one rate limit applies to: its URL, no fragment."""
    parts = urlsplit((web_hook_url or "").strip())
    return f"{parts.scheme}://{parts.netloc}{parts.path}?{parts.query}"


def destination_key(channel: str, web_hook_url: str) -> str:
    """The name a send permit is asked under: SHA-256 hex, so the token never travels."""
    return hashlib.sha256(f"{channel}\n{destination_of(web_hook_url)}".encode()).hexdigest()


def send_permit_schema():
    """The body of ``POST /cascade/send-permits``: ``{channel, destination}``."""
    from marshmallow import RAISE, Schema, fields, validate

    class SendPermitSchema(Schema):
        class Meta:
            unknown = RAISE

        channel = fields.String(required=True, validate=validate.OneOf(CHANNELS))
        # SHA-256 hex of the channel and the robot's URL: the parent never sees the token.
        destination = fields.String(required=True,
                                    validate=validate.Regexp(r"^[0-9a-f]{64}\Z"))

    return SendPermitSchema()
