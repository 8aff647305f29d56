"""A growing RSS source and a webhook receiver that counts every article it is sent.

Used by the push-once end-to-end tests and the ``pushes`` soak in bench/: the source gains
articles when told to, the receiver records each push's X-WeRSS-Delivery-Id and article ids
so a test can count repeats and losses.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DELIVERY_ID_HEADER = "X-WeRSS-Delivery-Id"


def article_id(feed: str, number: int) -> str:
    """The id a child derives for the source's article ``number`` (its absolute guid)."""
    return f"http://example.invalid/{feed}/{number}"


class PushOnceServices:
    """GET /rss/<name>.xml: the feed's articles so far; POST /hook/<name>: record a push."""

    def __init__(self, visible: int = 20):
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self.base_time = int(time.time()) + 120  # published after any task made now
        self.visible = visible  # a feed shows its newest N items, as real feeds do
        self.pushes: list[dict] = []
        self.hook_delay = 0.0  # seconds the next push waits before it is answered
        self.received = threading.Event()  # set by every push, as soon as it is recorded
        services = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                name = self.path.rsplit("/", 1)[-1].removesuffix(".xml")
                body = services.document(name)
                self.send_response(200)
                self.send_header("Content-Type", "application/rss+xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    ids = [a["id"] for a in json.loads(raw)["articles"]]
                except (ValueError, KeyError, TypeError):
                    ids = []
                with services.lock:
                    services.pushes.append({"path": self.path, "ids": ids,
                                            "delivery_id": self.headers.get(DELIVERY_ID_HEADER)})
                    delay, services.hook_delay = services.hook_delay, 0.0
                services.received.set()
                if delay:
                    time.sleep(delay)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def feed_url(self, name: str) -> str:
        return f"{self.base_url}/rss/{name}.xml"

    def hook_url(self, name: str = "hook") -> str:
        return f"{self.base_url}/hook/{name}"

    def grow(self, name: str, count: int) -> None:
        with self.lock:
            self.counts[name] = self.counts.get(name, 0) + count

    def article_ids(self, name: str) -> list[str]:
        return [article_id(name, n) for n in range(1, self.counts.get(name, 0) + 1)]

    def document(self, name: str) -> bytes:
        with self.lock:
            total = self.counts.get(name, 0)
        items = "".join(
            f"<item><title>{name} post {n}</title><link>http://example.invalid/{name}/{n}</link>"
            f"<guid>{article_id(name, n)}</guid><description>body {n}</description>"
            f"<pubDate>{formatdate(self.base_time + n, usegmt=True)}</pubDate></item>"
            for n in range(total, max(0, total - self.visible), -1))
        return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
                f"<title>{name}</title><link>http://example.invalid/{name}</link>"
                f"<description>{name}</description>{items}</channel></rss>").encode()

    def tally(self, hook: str | None = None) -> Counter:
        """How often each article id reached the receiver (all hooks, or one)."""
        with self.lock:
            pushes = [p for p in self.pushes if hook is None or p["path"] == f"/hook/{hook}"]
        return Counter(article_id for push in pushes for article_id in push["ids"])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
