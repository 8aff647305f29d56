"""Feishu / Lark bot: an interactive card with a ``lark_md`` block, as WeRSS sends."""

from __future__ import annotations

import json

from .channel import ChannelNotifier, Outgoing, Reply
from .signing import feishu_sign

THROTTLED = 11232  # "frequency limited"
BUSY_WAIT = 1.0  # its limit is 5/s as well as 100/min


class FeishuNotifier(ChannelNotifier):
    name = "feishu"
    max_size = 18_000  # the whole body may be 20 KB: room for the card around the text

    def measure(self, text: str) -> int:
        return len(json.dumps(text, ensure_ascii=False).encode("utf-8"))

    def build(self, task: dict, title: str, text: str, msg_uuid: str | None) -> Outgoing:
        body: dict = {"msg_type": "interactive", "card": {
            "config": {"wide_screen_mode": True},
            "header": {"title": {"tag": "plain_text", "content": title}},
            "elements": [{"tag": "div", "text": {"tag": "lark_md", "content": text}}],
        }}
        secret = (task.get("sign_secret") or "").strip()
        if secret:
            timestamp = int(self.clock().timestamp())
            body = {"timestamp": str(timestamp), "sign": feishu_sign(secret, timestamp), **body}
        return Outgoing("POST", (task.get("web_hook_url") or "").strip(), json=body,
                        secrets=[body["sign"]] if "sign" in body else [])

    def read(self, status: int, body) -> Reply:
        if not isinstance(body, dict):
            return Reply(False, status, message=f"HTTP {status}")
        code = body.get("code", body.get("StatusCode"))
        message = str(body.get("msg") or body.get("StatusMessage") or "")
        if code == 0:
            return Reply(True, status, 0, message)
        if code is None:
            return Reply(False, status, message=f"HTTP {status}")
        throttled = code == THROTTLED
        return Reply(False, status, code, message, throttled=throttled,
                     retry_after=BUSY_WAIT if throttled else None)
