"""A channel and a collector that exist only in tests, to show each needs nothing but its
module and its registry line (docs/DEVELOPING.md): ``example`` pushes a JSON POST and
collects a JSON list of articles."""

from __future__ import annotations

from child.collectors.base import CollectedArticle, CollectError
from child.notifiers.channel import ChannelNotifier, Outgoing, Reply


class ExampleNotifier(ChannelNotifier):
    name = "example"
    max_size = 2000

    def build(self, task: dict, title: str, text: str, msg_uuid: str | None) -> Outgoing:
        return Outgoing("POST", (task.get("web_hook_url") or "").strip(),
                        json={"title": title, "text": text})

    def read(self, status: int, body) -> Reply:
        ok = 200 <= status < 300 and isinstance(body, dict) and body.get("ok") is True
        return Reply(ok, status, message="" if ok else f"HTTP {status}")


class ExampleCollector:
    source_type = "example"

    def __init__(self, session, timeout: float):
        self.session = session
        self.timeout = timeout

    def collect(self, feed: dict) -> list[CollectedArticle]:
        response = self.session.get(feed["source_url"], timeout=self.timeout)
        if response.status_code != 200:
            raise CollectError(f"HTTP {response.status_code}")
        return [CollectedArticle.fitted(mp_id=feed["id"], **item) for item in response.json()]


def build(cache, session, timeout, **_context):
    return ExampleCollector(session, timeout)
