"""`make demo`: watch one task flow through the system `make up` started.

A local RSS feed (served here) -> the local child collects it -> a local webhook (served
here) receives the rendered message -> the parent shows the articles and the results.
Admin password: --password, else WERSS_ADMIN_PASSWORD, else asked for in a terminal.
Every run dispatches the same task, "WeRSS demo": the child pushes each article once per
task, so a second run collects the three articles again and pushes nothing.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

RSS_PORT, HOOK_PORT = 8090, 8091
TASK_NAME = "WeRSS demo"
received: list[dict] = []


def rss_document() -> bytes:
    now = datetime.now(timezone.utc)
    items = "".join(
        f"<item><title>演示文章 {n}: cascade demo</title>"
        f"<link>http://127.0.0.1:{RSS_PORT}/posts/{n}</link><guid>demo-post-{n}</guid>"
        f"<description>Article {n} of the local demo feed.</description>"
        f"<pubDate>{format_datetime(now - timedelta(hours=n))}</pubDate></item>"
        for n in (1, 2, 3))
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
            f"<title>WeRSS demo feed</title><link>http://127.0.0.1:{RSS_PORT}/</link>"
            f"<description>served by deploy/demo.py</description>{items}</channel></rss>"
            ).encode("utf-8")


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        body = rss_document()
        self.send_response(200)
        self.send_header("Content-Type", "application/rss+xml; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        payload = self.rfile.read(length).decode("utf-8", "replace")
        received.append({"path": self.path, "body": payload})
        print(f"\n[webhook] received {len(payload)} bytes:\n{payload}\n")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


def serve(port: int) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


TEMPLATE = ("{{ feed.mp_name }}: {{ articles|length }} new\n"
            "{% for a in articles %}- {{ a.title }} {{ a.url }}\n{% endfor %}")


def set_ports(feed_port: int, hook_port: int) -> None:
    global RSS_PORT, HOOK_PORT
    RSS_PORT, HOOK_PORT = feed_port, hook_port


def demo_task(api: requests.Session, parent: str, feed_id: str) -> dict:
    """The demo's one task: found by name, created by the first run."""
    listed = api.get(f"{parent}/api/v1/message-tasks", params={"page_size": 200}).json()
    for task in listed["data"]["items"]:
        if task["name"] == TASK_NAME:
            return task
    return api.post(f"{parent}/api/v1/message-tasks", json={
        "name": TASK_NAME, "message_type": 1,
        "web_hook_url": f"http://127.0.0.1:{HOOK_PORT}/hook", "message_template": TEMPLATE,
        "mps_id": [{"id": feed_id, "mp_name": "WeRSS demo feed"}], "cron_exp": "0 0 1 1 *",
        # A task pushes only articles published after a feed joins it, unless told to
        # start with the newest N: the demo's three articles are older than its task.
        "push_newest": 3,
    }).json()["data"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parent", default=f"http://127.0.0.1:{os.environ.get('PORT', '8001')}")
    parser.add_argument("--password", default=os.environ.get("WERSS_ADMIN_PASSWORD"))
    parser.add_argument("--timeout", type=float, default=90)
    parser.add_argument("--feed-port", type=int, default=RSS_PORT)
    parser.add_argument("--hook-port", type=int, default=HOOK_PORT)
    args = parser.parse_args()
    set_ports(args.feed_port, args.hook_port)
    password = args.password
    if not password:
        if not sys.stdin.isatty():
            print("make demo: no admin password: set WERSS_ADMIN_PASSWORD (or pass "
                  "--password), or run it in a terminal to be asked", file=sys.stderr)
            return 2
        password = getpass.getpass("admin password: ")
    api = requests.Session()
    try:
        login = api.post(f"{args.parent}/api/v1/auth/login",
                         json={"username": "admin", "password": password}, timeout=10)
    except requests.ConnectionError:
        print(f"cannot reach {args.parent}: start the system with `make up` first")
        return 1
    if login.status_code != 200:
        print(f"login failed: {login.json().get('message')}")
        return 1
    api.headers["Authorization"] = "Bearer " + login.json()["data"]["access_token"]
    servers = [serve(RSS_PORT), serve(HOOK_PORT)]
    print(f"serving a demo RSS feed on :{RSS_PORT} and a webhook receiver on :{HOOK_PORT}")

    feed_url = f"http://127.0.0.1:{RSS_PORT}/demo.xml"
    imported = api.post(f"{args.parent}/api/v1/feeds/import", json={"feeds": [
        {"mp_name": "WeRSS demo feed", "source_type": "rss", "source_url": feed_url}]}).json()
    feed_id = (imported["data"]["created_ids"] or [None])[0] or next(
        f["id"] for f in api.get(f"{args.parent}/api/v1/feeds?page_size=200").json()["data"]["items"]
        if f["source_url"] == feed_url)
    task = demo_task(api, args.parent, feed_id)
    run = api.post(f"{args.parent}/api/v1/cascade/dispatch", json={"task_id": task["id"]}).json()
    print(f"task {task['id']} dispatched: run {run['data']['run_id']}; waiting for the child...")

    deadline = time.monotonic() + args.timeout
    allocation = None
    while time.monotonic() < deadline:
        items = api.get(f"{args.parent}/api/v1/cascade/allocations",
                        params={"run_id": run["data"]["run_id"]}).json()["data"]["items"]
        allocation = items[0] if items else None
        if allocation and allocation["status"] in ("completed", "dead"):
            break
        time.sleep(1)
    for server in servers:
        server.shutdown()
    if not allocation or allocation["status"] != "completed":
        print("the work was not completed in time: is the child running (make up)? "
              f"allocation: {json.dumps(allocation, ensure_ascii=False)}")
        return 1
    print("allocation completed by node", allocation["leased_to"], "with results:")
    print(json.dumps(allocation["results"], ensure_ascii=False, indent=2))
    articles = api.get(f"{args.parent}/api/v1/articles", params={"feed_id": feed_id}).json()
    print(f"articles stored on the parent: {articles['data']['total']}")
    print(f"subscribe: {args.parent}/feed/{feed_id}.rss")
    print("webhook deliveries this run:", len(received),
          "(0 when an earlier demo run already pushed these articles)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
