"""Section `wechat`: WeChat feeds per hour that N real children collect at the fake's limit.

Each child is logged in through the parent's login routes to the fake mp.weixin.qq.com
(tests/support/fake_wechat.py), which answers 200013 past ``rate`` list calls per minute
per session. A run dispatches more WeChat feeds than the children can collect in the
window and counts the feeds with stored articles at its end. The window is whole minutes:
the fake counts over a sliding minute, so in W seconds no login can make more than
rate x W / 60 calls. The figure is the ratio of feeds per hour to the limit (N x rate x 60
per hour): 1.0 means the cascade collects as fast as WeChat allows, with every hand-off on
frequency control included.
"""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import create_engine, func, select

from .children import ChildAgent, ChildBenchError, WorkParentClient
from .database import BenchDatabase, create_nodes, parent_env, run_parent_cli
from .servers import subject_server

LOGIN_TIMEOUT = 60.0


def _login(admin: WorkParentClient, fake, node_id: str) -> None:
    base = admin.base_url + f"/api/v1/cascade/nodes/{node_id}/wechat"
    response = admin.session.post(base + "/login", timeout=30)
    if response.status_code != 202:
        raise ChildBenchError(f"wechat login answered {response.status_code}: "
                              f"{response.text[:200]}")
    deadline = time.monotonic() + LOGIN_TIMEOUT
    confirmed = False
    while time.monotonic() < deadline:
        state = admin.session.get(base, timeout=30).json()["data"]
        if state["state"] == "valid":
            return
        if state["qr_ready"] and not confirmed:
            fake.confirm()
            confirmed = True
        time.sleep(0.2)
    raise ChildBenchError(f"node {node_id} did not log in to the fake WeChat in time")


def _collected(engine, feed_ids: list[str]) -> int:
    from parent.models import Article

    table = Article.__table__
    with engine.connect() as connection:
        return connection.execute(
            select(func.count(func.distinct(table.c.feed_id)))
            .where(table.c.feed_id.in_(feed_ids))).scalar_one()


def _rate_limited_leases(engine) -> int:
    from parent.models import Lease

    table = Lease.__table__
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(table)
                                  .where(table.c.status == "rate_limited")).scalar_one()


def wechat_section(args, workdir: Path, secret_key: str) -> dict:
    """Run the WeChat throughput measurement on a fresh database and parent."""
    from tests.support.fake_wechat import FakeWechat

    here = workdir / "wechat"
    here.mkdir()
    database = BenchDatabase(args.pg, here)
    fake = FakeWechat().start()
    fake.rate_limit_per_minute = args.wechat_rate
    server, children, admin, engine = None, [], None, None
    try:
        url = database.create()
        env = parent_env(url, secret_key)
        run_parent_cli(["db", "upgrade"], env)
        fleet = create_nodes(url, secret_key, args.wechat_children, prefix="bench-wechat")
        server = subject_server(env, args.workers, args.server_threads, here / "parent.log")
        server.start()
        limit_per_hour = args.wechat_children * args.wechat_rate * 60
        window = max(60, round(args.wechat_window / 60) * 60)
        feeds = max(20, int(limit_per_hour * window / 3600 * 2))
        print(f"bench: wechat: {args.wechat_children} children, fake limit {args.wechat_rate} "
              f"calls/min per login, {feeds} feeds, {window} s window", flush=True)
        children = [ChildAgent(f"wechat-{n}", server.base_url, creds, here, extra_env={
            "CASCADE_WECHAT_BASE_URL": fake.base_url, "CASCADE_WECHAT_PAGE_PAUSE": "0",
            "CASCADE_WECHAT_ACCOUNT_PAUSE": "0", "CASCADE_WECHAT_ARTICLE_PAUSE": "0",
            # The fake counts calls over a sliding minute: a minute's rest clears it.
            "CASCADE_WECHAT_COOLDOWN": "60", "CASCADE_CLAIM_WAIT": "5",
        }) for n, creds in enumerate(fleet)]
        deadline = time.monotonic() + 60
        for child in children:
            child.wait_connected(deadline)
        admin = WorkParentClient(server.base_url, url, env["WERSS_ADMIN_PASSWORD"])
        for creds in fleet:
            _login(admin, fake, creds.node_id)
        feed_ids = []
        for n in range(feeds):
            fakeid = f"bench{n:05d}"
            fake.add_account(fakeid, f"bench {n}", articles=1)
            response = admin.session.post(admin.base_url + "/api/v1/feeds", timeout=30, json={
                "mp_name": f"bench {n}", "faker_id": fakeid})
            if response.status_code != 201:
                raise ChildBenchError(f"feed create answered {response.status_code}")
            feed_ids.append(response.json()["data"]["id"])
        task = admin.session.post(admin.base_url + "/api/v1/message-tasks", timeout=30, json={
            "name": "bench wechat", "message_type": 1, "cron_exp": "0 0 1 1 *",
            "web_hook_url": fake.base_url + "/hook"}).json()["data"]
        engine = create_engine(url)
        started = time.monotonic()
        admin.dispatch(task["id"])
        time.sleep(max(0.0, started + window - time.monotonic()))
        collected = _collected(engine, feed_ids)
        elapsed = time.monotonic() - started
        per_hour = collected * 3600 / window
        return {
            "children": args.wechat_children,
            "rate_limit_per_minute": args.wechat_rate,
            "window_s": window,
            "measured_after_s": round(elapsed, 1),
            "feeds_dispatched": feeds,
            "feeds_collected": collected,
            "feeds_per_hour": round(per_hour),
            "limit_feeds_per_hour": limit_per_hour,
            "ratio_to_limit": round(per_hour / limit_per_hour, 3),
            "freq_control_answers": len(fake.freq_controlled),
            "rate_limited_hand_backs": _rate_limited_leases(engine),
        }
    finally:
        for child in children:
            child.request_stop()
        for child in children:
            if child.wait_stopped(30) is None:
                child.kill()
        if admin:
            admin.close()
        if engine:
            engine.dispose()
        if server:
            server.stop()
        fake.stop()
        database.drop()


def render_wechat(section: dict) -> list[str]:
    if "error" in section:
        return [f"wechat: {section['error']}"]
    return [
        "",
        f"WeChat: {section['children']} children at the fake's limit of "
        f"{section['rate_limit_per_minute']} list calls/min per login",
        f"  {section['feeds_collected']} of {section['feeds_dispatched']} feeds in "
        f"{section['window_s']:.0f} s = {section['feeds_per_hour']} feeds/hour; limit "
        f"{section['limit_feeds_per_hour']}/hour; ratio {section['ratio_to_limit']:.2f}",
        f"  200013 answers: {section['freq_control_answers']}; rate-limited hand-backs: "
        f"{section['rate_limited_hand_backs']}",
    ]
