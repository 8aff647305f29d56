"""ServerChan (Server酱): ``https://sctapi.ftqq.com/<SENDKEY>.send`` with ``title`` and
``desp`` (markdown); SC3 keys use ``https://<uid>.push.ft07.com/send/<key>.send``."""

from __future__ import annotations

from .channel import ChannelNotifier, Outgoing, Reply


class ServerChanNotifier(ChannelNotifier):
    name = "serverchan"
    max_size = 32_000  # desp is at most 32 KB
    title_limit = 32

    def build(self, task: dict, title: str, text: str, msg_uuid: str | None) -> Outgoing:
        return Outgoing("POST", (task.get("web_hook_url") or "").strip(),
                        data={"title": title, "desp": text})

    def read(self, status: int, body) -> Reply:
        if not isinstance(body, dict) or "code" not in body:
            return Reply(False, status, message=f"HTTP {status}")
        code = body.get("code")
        message = str(body.get("message") or body.get("info") or "")
        if code == 0:
            return Reply(True, status, 0, message)
        return Reply(False, status, code, message)
