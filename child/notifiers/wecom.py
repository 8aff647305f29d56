"""WeCom (企业微信) group robot: markdown messages."""

from __future__ import annotations

from .channel import ChannelNotifier, Outgoing, Reply, read_errcode

THROTTLED = 45009  # "api freq out of limit"


class WeComNotifier(ChannelNotifier):
    name = "wecom"
    max_size = 4096  # bytes of markdown content
    has_title = False

    def build(self, task: dict, title: str, text: str, msg_uuid: str | None) -> Outgoing:
        body = {"msgtype": "markdown", "markdown": {"content": text}}
        return Outgoing("POST", (task.get("web_hook_url") or "").strip(), json=body)

    def read(self, status: int, body) -> Reply:
        return read_errcode(status, body, THROTTLED)
