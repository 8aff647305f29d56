"""A local RSS source and webhook receiver: what `make demo`, bench/ and the tests feed a child.

One HTTP server on one port: ``GET …/<name>.xml`` answers an RSS 2.0 document for the
feed ``<name>``, any ``POST`` is recorded as a push (path, body, the article ids of a
JSON webhook body, the ``X-WeRSS-Delivery-Id`` header) and answered 200. It needs only
the standard library, so `python deploy/demo.py`, `python -m bench` and pytest can all
import it from the repository.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from xml.sax.saxutils import escape

DELIVERY_ID_HEADER = "X-WeRSS-Delivery-Id"
SAMPLE_ITEMS = 3
_SAMPLE_MOMENT = datetime(2026, 11, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Item:
    title: str
    link: str
    guid: str
    description: str
    published: datetime


def rss_document(title: str, link: str, description: str, items: list[Item]) -> bytes:
    """An RSS 2.0 document with these items, in the order given."""
    body = "".join(
        f"<item><title>{escape(item.title)}</title><link>{escape(item.link)}</link>"
        f"<guid>{escape(item.guid)}</guid><description>{escape(item.description)}</description>"
        f"<pubDate>{format_datetime(item.published)}</pubDate></item>"
        for item in items)
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
            f"<title>{escape(title)}</title><link>{escape(link)}</link>"
            f"<description>{escape(description)}</description>{body}</channel></rss>"
            ).encode("utf-8")


def sample_feed(name: str, count: int = SAMPLE_ITEMS) -> bytes:
    """The feed ``name``: posts 1..count, an hour apart, all published on 2026-11-01 or before."""
    return rss_document(name, f"http://example.invalid/{name}", name, [
        Item(f"{name} post {n}", f"http://example.invalid/{name}/{n}", f"{name}-{n}",
             f"body {n}", _SAMPLE_MOMENT - timedelta(hours=n))
        for n in range(1, count + 1)])


class LocalServices:
    """One threaded HTTP server: feeds on GET, a webhook receiver on POST.

    ``document(name)`` makes the body of ``GET …/<name>.xml``; ``delays[path]`` holds the
    first GET of ``path`` that many seconds; ``hook_delay`` holds the next push's answer;
    ``on_push(push)`` hears each push as it is recorded.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0,
                 document: Callable[[str], bytes] = sample_feed,
                 on_push: Callable[[dict], None] | None = None):
        self.document = document
        self.on_push = on_push
        self.lock = threading.Lock()
        self.hits: dict[str, int] = {}
        self.delays: dict[str, float] = {}
        self.pushes: list[dict] = []
        self.hook_delay = 0.0
        self.received = threading.Event()  # set by every push, as soon as it is recorded
        self.server = ThreadingHTTPServer((host, port), self._handler_class())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, name="local-services",
                         daemon=True).start()

    def feed_url(self, name: str) -> str:
        return f"{self.base_url}/rss/{name}.xml"

    def hook_url(self, name: str | None = None) -> str:
        return f"{self.base_url}/hook" + (f"/{name}" if name else "")

    @property
    def fetches(self) -> int:
        with self.lock:
            return sum(self.hits.values())

    def tally(self, hook: str | None = None) -> Counter:
        """How often each article id reached the receiver (every hook, or ``hook_url(hook)``)."""
        with self.lock:
            pushes = [p for p in self.pushes if hook is None or p["path"] == f"/hook/{hook}"]
        return Counter(article_id for push in pushes for article_id in push["ids"])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler_class(self):
        services = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                with services.lock:
                    services.hits[self.path] = services.hits.get(self.path, 0) + 1
                    delay = services.delays.pop(self.path, 0)
                if delay:
                    time.sleep(delay)
                body = services.document(self.path.rsplit("/", 1)[-1].removesuffix(".xml"))
                self.send_response(200)
                self.send_header("Content-Type", "application/rss+xml; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                push = {"path": self.path, "body": raw.decode("utf-8", "replace"),
                        "ids": _article_ids(raw),
                        "delivery_id": self.headers.get(DELIVERY_ID_HEADER)}
                with services.lock:
                    services.pushes.append(push)
                    delay, services.hook_delay = services.hook_delay, 0.0
                services.received.set()
                if services.on_push:
                    services.on_push(push)
                if delay:
                    time.sleep(delay)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        return Handler


class GrowingFeeds(LocalServices):
    """Feeds that gain articles when told (``grow``), newest first, ``visible`` at most.

    Each article is published after the moment this was made, so a task created now
    pushes all of them; its id is its absolute guid (``article_id``).
    """

    def __init__(self, visible: int = 20, **kwargs):
        self.counts: dict[str, int] = {}
        self.base_time = datetime.fromtimestamp(int(time.time()) + 120, timezone.utc)
        self.visible = visible  # a feed shows its newest N items, as real feeds do
        super().__init__(document=self._growing_document, **kwargs)

    def grow(self, name: str, count: int) -> None:
        with self.lock:
            self.counts[name] = self.counts.get(name, 0) + count

    def article_ids(self, name: str) -> list[str]:
        return [article_id(name, n) for n in range(1, self.counts.get(name, 0) + 1)]

    def _growing_document(self, name: str) -> bytes:
        with self.lock:
            total = self.counts.get(name, 0)
        return rss_document(name, f"http://example.invalid/{name}", name, [
            Item(f"{name} post {n}", f"http://example.invalid/{name}/{n}", article_id(name, n),
                 f"body {n}", self.base_time + timedelta(seconds=n))
            for n in range(total, max(0, total - self.visible), -1)])


def article_id(feed: str, number: int) -> str:
    """The id a child derives for a GrowingFeeds article (its absolute guid)."""
    return f"http://example.invalid/{feed}/{number}"


def _article_ids(raw: bytes) -> list[str]:
    try:
        return [article["id"] for article in json.loads(raw)["articles"]]
    except (ValueError, KeyError, TypeError):
        return []
