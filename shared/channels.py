"""Push channels of message tasks: their names and how a task's channel is derived.

Both sides use this: the parent to validate and show a task's channel, the child to pick its
notifier when a task (for example one from an older parent) does not name one.
"""

from __future__ import annotations

import hashlib
from urllib.parse import urlsplit

DINGTALK = "dingtalk"
FEISHU = "feishu"
WECOM = "wecom"
BARK = "bark"
SERVERCHAN = "serverchan"
TELEGRAM = "telegram"
WEBHOOK = "webhook"
CHANNELS = (DINGTALK, FEISHU, WECOM, BARK, SERVERCHAN, TELEGRAM, WEBHOOK)
# Channels that can sign their pushes with a task's sign_secret.
SIGNED_CHANNELS = (DINGTALK, FEISHU)

# A task's message_type, as WeRSS numbers it: 0 a chat-robot message, 1 a custom webhook.
MESSAGE_TYPE_MESSAGE = 0
MESSAGE_TYPE_WEBHOOK = 1
MESSAGE_TYPES = (MESSAGE_TYPE_MESSAGE, MESSAGE_TYPE_WEBHOOK)

# The three hosts WeRSS routes message_type 0 by, plus the hosts of the other channels.
_HOSTS = {
    "oapi.dingtalk.com": DINGTALK,
    "open.feishu.cn": FEISHU,
    "open.larksuite.com": FEISHU,
    "qyapi.weixin.qq.com": WECOM,
    "api.day.app": BARK,
    "sctapi.ftqq.com": SERVERCHAN,
    "api.telegram.org": TELEGRAM,
}


def channel_from_url(url: str) -> str | None:
    """Return the channel a webhook URL's host belongs to, or None for any other host."""
    try:
        host = (urlsplit((url or "").strip()).hostname or "").lower()
    except ValueError:
        return None
    if host.endswith(".push.ft07.com"):  # ServerChan 3 keys
        return SERVERCHAN
    return _HOSTS.get(host)


def effective_channel(task: dict) -> str:
    """The channel a task pushes through: its own ``channel``, else derived as WeRSS does.

    ``message_type`` 1 stays the custom webhook; ``message_type`` 0 picks by the URL's host
    and falls back to a plain webhook POST for any other host.
    """
    named = task.get("channel")
    if named in CHANNELS:
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
