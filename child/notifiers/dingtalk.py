"""DingTalk custom robot: markdown messages, 加签 with the task's ``SEC…`` secret."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .channel import ChannelNotifier, Outgoing, Reply, read_errcode
from .signing import dingtalk_sign

THROTTLED = 130101  # "send too fast"


class DingTalkNotifier(ChannelNotifier):
    name = "dingtalk"
    max_size = 18_000  # markdown text; DingTalk's own bound is about 20,000 bytes

    def build(self, task: dict, title: str, text: str, msg_uuid: str | None) -> Outgoing:
        url = (task.get("web_hook_url") or "").strip()
        parts = urlsplit(url)
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                 if k not in ("timestamp", "sign")]
        secret = (task.get("sign_secret") or "").strip()
        if secret:
            timestamp = int(self.clock().timestamp() * 1000)
            sign = dingtalk_sign(secret, timestamp)
            query += [("timestamp", str(timestamp)), ("sign", sign)]
        body = {"msgtype": "markdown", "markdown": {"title": title, "text": text},
                "at": {"atMobiles": [], "isAtAll": False}}
        if msg_uuid:
            body["msgUuid"] = msg_uuid
        return Outgoing("POST", urlunsplit(parts._replace(query=urlencode(query))), json=body,
                        secrets=[value for key, value in query if key == "sign"])

    def read(self, status: int, body) -> Reply:
        return read_errcode(status, body, THROTTLED)
