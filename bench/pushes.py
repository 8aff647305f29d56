"""Push-once soak: N cycles of a growing feed, two real children, random kill -9s.

One RSS feed gains 2 articles per cycle; one webhook task is dispatched each cycle; two
`werss-child run` processes share the work. Before some cycles a child, or the parent,
is killed with SIGKILL at a random moment of the run and started again. After the
cycles, fault-free settle cycles let every open delivery finish. Reported: articles
published, lost (never pushed), stored twice (on the parent), pushed twice (receiver
saw an article more than once), and kills. The cascade's promise: lost is 0 and pushed
twice is at most the number of kills (only the push in flight at a crash repeats).
"""

from __future__ import annotations

import os
import random
import signal
import sys
import time
from pathlib import Path

from sqlalchemy import create_engine, func, select

from .children import ChildAgent, ChildBenchError, WorkParentClient
from .database import BenchDatabase, create_nodes
from .servers import ServerStartError, subject_server

FEED = "soak"
RUN_TIMEOUT = 120.0
SETTLE_CYCLES = 3
PARENT_SETTINGS = {
    "WERSS_CASCADE_LEASE_TTL": "10", "WERSS_CASCADE_MAINTENANCE_INTERVAL": "1",
    "WERSS_CASCADE_RETRY_BACKOFF": "1", "WERSS_CASCADE_DELIVERY_RETRY_BACKOFF": "1",
    "WERSS_CASCADE_MAX_ATTEMPTS": "10",
}


def push_section(args, workdir: Path, secret_key: str) -> dict:
    """Run the soak on a parent and database of its own; return the figures.

    :raises ChildBenchError: a child or run did not come up or finish.
    """
    from deploy.local_services import GrowingFeeds

    cycles = getattr(args, "push_cycles", 20)
    if getattr(args, "quick", False):
        cycles = min(cycles, 6)
    rng = random.Random(getattr(args, "push_seed", None))
    soak_dir = workdir / "pushes"
    soak_dir.mkdir()
    database = BenchDatabase(args.pg, soak_dir)
    services = GrowingFeeds()
    server, children = None, []
    try:
        url, env = database.create_migrated(secret_key, PARENT_SETTINGS)
        fleet = create_nodes(url, secret_key, 2, prefix="bench-push")
        server = subject_server(env, args.workers, args.server_threads, soak_dir / "parent.log")
        server.start()
        admin = WorkParentClient(server.base_url, url, env["WERSS_ADMIN_PASSWORD"])
        task_id = _seed(admin, services)
        children = [ChildAgent(f"push-{i + 1}", server.base_url, creds, soak_dir)
                    for i, creds in enumerate(fleet)]
        deadline = time.monotonic() + 60
        for child in children:
            child.wait_connected(deadline)
        print(f"bench: pushes: {cycles} cycles, 2 children, parent on {server.base_url} "
              f"({database.describe()})", flush=True)
        kills = {"child": 0, "parent": 0}
        started = time.perf_counter()
        for cycle in range(cycles + SETTLE_CYCLES):
            settling = cycle >= cycles
            if not settling:
                services.grow(FEED, 2)
            run_id = _dispatch(admin, task_id)
            if not settling:
                fault = rng.random()
                if fault < 0.35:
                    time.sleep(rng.uniform(0.0, 1.5))
                    index = rng.randrange(len(children))
                    children[index].kill()
                    kills["child"] += 1
                    children[index] = ChildAgent(children[index].name, server.base_url,
                                                 fleet[index], soak_dir)
                elif fault < 0.55:
                    time.sleep(rng.uniform(0.0, 1.5))
                    _kill_parent(server)
                    kills["parent"] += 1
                    time.sleep(rng.uniform(0.2, 1.0))
                    server.start()
            _wait_finished(admin, run_id)
        seconds = time.perf_counter() - started
        _wait_open_deliveries(url, timeout=30)
        return _figures(url, services, kills, cycles, seconds)
    except ServerStartError as exc:
        raise ChildBenchError(f"the parent did not restart: {exc}") from None
    finally:
        for child in children:
            child.kill()
        if server:
            server.stop()
        services.close()
        database.drop()


def _seed(admin: WorkParentClient, services) -> str:
    session = admin.session
    response = session.post(admin.base_url + "/api/v1/feeds/import", json={"feeds": [
        {"mp_name": FEED, "source_type": "rss", "source_url": services.feed_url(FEED)}]},
        timeout=30)
    if response.status_code != 200:
        raise ChildBenchError(f"feed import answered {response.status_code}: {response.text}")
    response = session.post(admin.base_url + "/api/v1/message-tasks", json={
        "name": "soak", "message_type": 1, "web_hook_url": services.hook_url(),
        "cron_exp": "0 0 1 1 *"}, timeout=30)
    if response.status_code != 201:
        raise ChildBenchError(f"task create answered {response.status_code}: {response.text}")
    return response.json()["data"]["id"]


def _dispatch(admin: WorkParentClient, task_id: str) -> str:
    deadline = time.monotonic() + 60
    while True:
        try:
            return admin.dispatch(task_id)[0]
        except Exception:  # noqa: BLE001 - the parent may be restarting
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _wait_finished(admin: WorkParentClient, run_id: str) -> None:
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        completed, dead = admin.finished(run_id)
        if completed + dead >= 1:
            return
        time.sleep(0.2)
    raise ChildBenchError(f"run {run_id} did not finish within {RUN_TIMEOUT:.0f} s")


def _kill_parent(server) -> None:
    """SIGKILL the parent's whole process group (master and workers), as a crash would."""
    try:
        os.killpg(server.process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    server.process.wait(10)
    server.process = None


def _wait_open_deliveries(url: str, timeout: float) -> None:
    from parent.models import Delivery

    engine = create_engine(url)
    table = Delivery.__table__
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with engine.connect() as connection:
                open_ = connection.execute(select(func.count()).select_from(table).where(
                    table.c.status.in_(("pending", "retrying")))).scalar_one()
            if not open_:
                return
            time.sleep(0.5)
    finally:
        engine.dispose()


def _figures(url: str, services, kills: dict, cycles: int, seconds: float) -> dict:
    from parent.models import Article, Delivery

    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            articles = Article.__table__
            rows = connection.execute(select(func.count()).select_from(articles)).scalar_one()
            distinct = connection.execute(select(func.count()).select_from(
                select(articles.c.feed_id, articles.c.article_id).distinct().subquery())
            ).scalar_one()
            deliveries = Delivery.__table__
            by_status = dict(connection.execute(
                select(deliveries.c.status, func.count()).group_by(deliveries.c.status)).all())
    finally:
        engine.dispose()
    tally = services.tally()
    expected = services.article_ids(FEED)
    figures = {
        "cycles": cycles, "articles": len(expected),
        "lost": sum(1 for article_id in expected if article_id not in tally),
        "stored_twice": rows - distinct,
        "pushed_twice": sum(count - 1 for count in tally.values() if count > 1),
        "kills": kills["child"] + kills["parent"], "child_kills": kills["child"],
        "parent_kills": kills["parent"], "pushes": len(services.pushes),
        "deliveries": by_status, "seconds": round(seconds, 1),
    }
    figures["ok"] = figures["lost"] == 0 and figures["stored_twice"] == 0 \
        and figures["pushed_twice"] <= figures["kills"]
    print("bench: pushes: {articles} articles, {lost} lost, {stored_twice} stored twice, "
          "{pushed_twice} pushed twice, {kills} kills ({child_kills} child, {parent_kills} "
          "parent) in {seconds} s: {verdict}".format(
              **figures, verdict="ok" if figures["ok"] else "BROKEN PROMISE"), flush=True)
    return figures


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.pushes [CYCLES]`: the soak alone, on SQLite."""
    import argparse
    import secrets
    import tempfile

    parser = argparse.ArgumentParser(prog="python -m bench.pushes")
    parser.add_argument("cycles", type=int, nargs="?", default=20)
    parser.add_argument("--pg", default=None, metavar="URL")
    parser.add_argument("--seed", type=int, default=None)
    options = parser.parse_args(argv)
    args = argparse.Namespace(pg=options.pg, workers=2, server_threads=8,
                              push_cycles=options.cycles, push_seed=options.seed, quick=False)
    with tempfile.TemporaryDirectory(prefix="werss-pushes-") as workdir:
        figures = push_section(args, Path(workdir), secrets.token_urlsafe(32))
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
