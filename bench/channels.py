"""The shared push limit: 4 real children, 200 new articles in 40 feeds, one DingTalk robot.

The robot is the signing, rate-limiting fake of tests/support/fake_vendors.py with
DingTalk's 20 messages per minute. The parent runs with its default channel_limits (no
configuration), so this measures what a user gets. Reported: messages per minute over the
run as a ratio of the limit (goal ≥ 0.95, never above 1), the most messages the robot saw
in any 60 s, throttling answers, and whether every article arrived.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path

from deploy.local_services import LocalServices, sample_feed

from .children import (
    GRACEFUL_STOP_TIMEOUT, READY_TIMEOUT, ChildAgent, ChildBenchError, WorkParentClient,
    stop_children,
)
from .database import BenchDatabase, create_nodes
from .servers import subject_server

CHILDREN = 4
FEEDS = 40
ARTICLES_PER_FEED = 5
LIMIT, WINDOW = 20, 60.0  # DingTalk's robot limit, the parent's default for dingtalk
SECRET = "SECbench0123456789abcdef0123456789"
GOAL = 0.95


def _seed(database_url: str, secret_key: str, feeds_url: str, hook_url: str) -> str:
    from parent import create_app
    from parent.extensions import db
    from parent.models import Feed
    from parent.models.replication import ENTITY_FEED
    from parent.services import message_tasks, replication

    app = create_app({"db": database_url, "secret_key": secret_key}, environ={})
    moment = datetime.now(timezone.utc)
    rows = [{"id": f"RSS_push_{i:03d}", "faker_id": None, "mp_name": f"push{i:03d}",
             "source_type": "rss", "source_url": f"{feeds_url}/rss/push{i:03d}.xml",
             "mp_cover": "", "mp_intro": "", "status": 1, "sync_time": 0, "update_time": 0,
             "labels": [], "created_at": moment, "updated_at": moment} for i in range(FEEDS)]
    with app.app_context():
        try:
            db.session.execute(db.insert(Feed), rows)
            replication.record_upserts(ENTITY_FEED, [row["id"] for row in rows])
            task = message_tasks.create_task({
                "name": "bench dingtalk", "message_type": 0, "channel": "dingtalk",
                "web_hook_url": hook_url, "sign_secret": SECRET, "cron_exp": "0 0 1 1 *",
                # The feeds' articles predate the task: push them on this first run.
                "push_newest": ARTICLES_PER_FEED})
            db.session.commit()
            return task.id
        finally:
            db.session.remove()
            db.engine.dispose()


def channel_section(args, workdir: Path, secret_key: str) -> dict:
    """Run the push scenario once; return its figures.

    :raises BenchSetupError | ServerStartError: the database or parent did not come up.
    :raises ChildBenchError: a child did not start, or the pushes did not finish in time.
    """
    from tests.support.fake_vendors import FakeVendors

    here = workdir / "channels"
    here.mkdir()
    database = BenchDatabase(args.pg, here)
    feeds = LocalServices(document=lambda name: sample_feed(name, ARTICLES_PER_FEED))
    server = None
    started: list[ChildAgent] = []
    try:
        with FakeVendors() as fake:
            robot = fake.add("dingtalk", "bench-robot-0123456789", secret=SECRET, limit=LIMIT,
                             window=WINDOW)
            url, env = database.create_migrated(secret_key)
            task_id = _seed(url, secret_key, feeds.base_url, fake.url(robot))
            fleet = create_nodes(url, secret_key, CHILDREN, prefix="bench-pusher")
            server = subject_server(env, args.workers, args.server_threads, here / "parent.log")
            server.start()
            print(f"bench: channels: parent on {server.base_url}, {CHILDREN} children, "
                  f"{FEEDS * ARTICLES_PER_FEED} articles in {FEEDS} feeds to one robot "
                  f"limited to {LIMIT}/{WINDOW:.0f}s", flush=True)
            started = [ChildAgent(f"pusher-{i}", server.base_url, creds, here)
                       for i, creds in enumerate(fleet)]
            deadline = time.monotonic() + READY_TIMEOUT
            for child in started:
                child.wait_connected(deadline)
            admin = WorkParentClient(server.base_url, url, env["WERSS_ADMIN_PASSWORD"])
            try:
                dispatched = time.monotonic()
                admin.dispatch(task_id)
                # Each feed is one message; at the limit they take FEEDS / LIMIT minutes.
                timeout = FEEDS / LIMIT * WINDOW * 1.5 + 60
                while len(robot.accepted) < FEEDS:
                    if time.monotonic() - dispatched > timeout:
                        raise ChildBenchError(
                            f"only {len(robot.accepted)} of {FEEDS} messages arrived within "
                            f"{timeout:.0f} s:\n{started[0].log_tail()}")
                    time.sleep(0.2)
            finally:
                admin.close()
            return _figures(robot, dispatched)
    finally:
        stop_children(started, GRACEFUL_STOP_TIMEOUT)
        if server:
            server.stop()
        feeds.close()
        database.drop()


def _figures(robot, dispatched: float) -> dict:
    arrivals = sorted(r.at for r in robot.accepted)
    texts = [r.body["markdown"]["text"] for r in robot.accepted]
    delivered = sum(f"push{i:03d} post {n}]" in text for text in texts
                    for i in range(FEEDS) for n in range(1, ARTICLES_PER_FEED + 1))
    span = arrivals[-1] - arrivals[0]
    # Messages after the first over the time they took: the sustained rate.
    per_minute = (len(arrivals) - 1) / span * 60 if span > 0 else float("inf")
    ratio = per_minute / LIMIT
    figures = {
        "children": CHILDREN, "feeds": FEEDS, "limit": LIMIT, "window_s": WINDOW,
        "messages": len(arrivals), "articles_expected": FEEDS * ARTICLES_PER_FEED,
        "articles_delivered": delivered, "first_after_s": round(arrivals[0] - dispatched, 1),
        "span_s": round(span, 1), "per_minute": round(per_minute, 2),
        "ratio_of_limit": round(ratio, 3), "goal": GOAL,
        "max_in_any_window": robot.max_in_window(WINDOW), "throttled": len(robot.refused),
    }
    figures["ok"] = (GOAL <= ratio <= 1.0 and figures["max_in_any_window"] <= LIMIT
                     and delivered == FEEDS * ARTICLES_PER_FEED and not robot.refused)
    return figures


def render(figures: dict) -> str:
    if "error" in figures:
        return f"channels: {figures['error'].splitlines()[0]}"
    return (f"channels: {figures['messages']} messages ({figures['articles_delivered']}/"
            f"{figures['articles_expected']} articles) from {figures['children']} children to "
            f"one robot in {figures['span_s']} s: {figures['per_minute']}/min = "
            f"{figures['ratio_of_limit']:.3f} of the {figures['limit']}/min limit (goal ≥ "
            f"{figures['goal']}, never above 1); most in any {figures['window_s']:.0f} s: "
            f"{figures['max_in_any_window']}; throttled: {figures['throttled']} — "
            f"{'ok' if figures['ok'] else 'FAILED'}")
