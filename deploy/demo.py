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
import time
from datetime import datetime, timedelta, timezone

import requests

# Run as `python deploy/demo.py`: this folder is on sys.path, so its sibling module is too.
from local_services import Item, LocalServices, rss_document

RSS_PORT, HOOK_PORT = 8090, 8091
TASK_NAME = "WeRSS demo"


def demo_feed(_name: str) -> bytes:
    """The demo's three articles, published in the hours before this run."""
    now = datetime.now(timezone.utc)
    return rss_document("WeRSS demo feed", f"http://127.0.0.1:{RSS_PORT}/",
                        "served by deploy/demo.py", [
        Item(f"演示文章 {n}: cascade demo", f"http://127.0.0.1:{RSS_PORT}/posts/{n}",
             f"demo-post-{n}", f"Article {n} of the local demo feed.",
             now - timedelta(hours=n))
        for n in (1, 2, 3)])


def show_push(push: dict) -> None:
    print(f"\n[webhook] received {len(push['body'])} bytes:\n{push['body']}\n")


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
    feed_server = LocalServices(port=RSS_PORT, document=demo_feed)
    hook_server = LocalServices(port=HOOK_PORT, on_push=show_push)
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
    feed_server.close()
    hook_server.close()
    if not allocation or allocation["status"] != "completed":
        print("the work was not completed in time: is the child running (make up)? "
              f"allocation: {json.dumps(allocation, ensure_ascii=False)}")
        return 1
    print("allocation completed by node", allocation["leased_to"], "with results:")
    print(json.dumps(allocation["results"], ensure_ascii=False, indent=2))
    articles = api.get(f"{args.parent}/api/v1/articles", params={"feed_id": feed_id}).json()
    print(f"articles stored on the parent: {articles['data']['total']}")
    print(f"subscribe: {args.parent}/feed/{feed_id}.rss")
    print("webhook deliveries this run:", len(hook_server.pushes),
          "(0 when an earlier demo run already pushed these articles)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
