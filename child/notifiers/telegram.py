"""Telegram bot: ``https://api.telegram.org/bot<token>/sendMessage?chat_id=<chat>``."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit, urlunsplit

from .base import NotifyError
from .channel import ChannelNotifier, Outgoing, Reply


class TelegramNotifier(ChannelNotifier):
    name = "telegram"
    max_size = 4096  # characters of text (UTF-16 code units)
    has_title = False

    def measure(self, text: str) -> int:
        return len(text.encode("utf-16-le")) // 2

    def build(self, task: dict, title: str, text: str, msg_uuid: str | None) -> Outgoing:
        parts = urlsplit((task.get("web_hook_url") or "").strip())
        query = dict(parse_qsl(parts.query))
        if not query.get("chat_id"):
            raise NotifyError(f"the Telegram URL of task {task.get('id')} needs ?chat_id=")
        body = {**query, "text": text, "disable_web_page_preview": True}
        path = parts.path if parts.path.endswith("/sendMessage") else \
            parts.path.rstrip("/") + "/sendMessage"
        tokens = [s[3:] for s in parts.path.split("/") if s.startswith("bot")]
        return Outgoing("POST", urlunsplit((parts.scheme, parts.netloc, path, "", "")), json=body,
                        secrets=tokens)

    def read(self, status: int, body) -> Reply:
        if not isinstance(body, dict) or "ok" not in body:
            return Reply(False, status, message=f"HTTP {status}")
        if body.get("ok") is True:
            return Reply(True, status, 0, "ok")
        code = body.get("error_code")
        message = str(body.get("description") or "")
        retry_after = (body.get("parameters") or {}).get("retry_after")
        throttled = code == 429
        return Reply(False, status, code, message, throttled=throttled,
                     retry_after=float(retry_after) if throttled and retry_after else None)
