"""Bark (iOS push): ``https://api.day.app/<device key>``; query parameters of the URL
(``group``, ``sound``, ``icon``, ``level``...) are passed on with every push."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit, urlunsplit

from .channel import ChannelNotifier, Outgoing, Reply


class BarkNotifier(ChannelNotifier):
    name = "bark"
    max_size = 3000  # an APNs payload is at most 4 KB

    def build(self, task: dict, title: str, text: str, msg_uuid: str | None) -> Outgoing:
        parts = urlsplit((task.get("web_hook_url") or "").strip())
        segments = [s for s in parts.path.split("/") if s]
        body = dict(parse_qsl(parts.query))
        prefix = ""
        if segments and segments[-1] != "push":
            body["device_key"] = segments[-1]
            prefix = "/".join(segments[:-1])
        elif segments:
            prefix = "/".join(segments[:-1])
        body.update(title=title, body=text)
        path = f"/{prefix}/push" if prefix else "/push"
        return Outgoing("POST", urlunsplit((parts.scheme, parts.netloc, path, "", "")), json=body)

    def read(self, status: int, body) -> Reply:
        if not isinstance(body, dict) or "code" not in body:
            return Reply(False, status, message=f"HTTP {status}")
        code = body.get("code")
        message = str(body.get("message") or "")
        if code == 200 and 200 <= status < 300:
            return Reply(True, status, code, message)
        return Reply(False, status, code, message)
