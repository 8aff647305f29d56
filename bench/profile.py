"""`python -m bench.profile`: where one heartbeat's and one 304 pull's time goes, in-process.

Runs N requests of each kind through the real app (Flask's test client, no HTTP, a temp
SQLite database or ``--pg URL``) under cProfile and prints, per kind: SQL statements and
COMMITs per request, microseconds per request, and the functions that take the most time
(own time, then cumulative time of the parent's own code). A wrong secret is measured
beside the right one: it must cost no more. COMMITs are those that end a database
transaction (a request that only read has none). The figures say what to
change; the load sections say how much it mattered.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time

from sqlalchemy import event

from shared import signing
from shared.paths import CASCADE_PREFIX, FEEDS, HEARTBEAT

from .database import create_nodes, migrated_database, seed_feeds
from .probe import HEARTBEAT_BODY


WRONG_SECRET = "CS" + "x" * 32


def _cases(client, creds, etag):
    """name -> (request, the status it must get)."""
    heartbeat, feeds = CASCADE_PREFIX + HEARTBEAT, CASCADE_PREFIX + FEEDS
    plain = signing.plain_authorization(creds.api_key, creds.api_secret)
    wrong_plain = signing.plain_authorization(creds.api_key, WRONG_SECRET)
    json_type = {"Content-Type": "application/json"}

    def signed(method, path, body=b"", secret=creds.api_secret):
        return signing.signed_authorization(creds.api_key, secret, method, path, "", body)
    return {
        "heartbeat (signed)": (lambda: client.post(heartbeat, data=HEARTBEAT_BODY, headers={
            "Authorization": signed("POST", heartbeat, HEARTBEAT_BODY), **json_type}), 200),
        "heartbeat (plain)": (lambda: client.post(heartbeat, data=HEARTBEAT_BODY, headers={
            "Authorization": plain, **json_type}), 200),
        "heartbeat (signed, wrong secret)": (lambda: client.post(
            heartbeat, data=HEARTBEAT_BODY, headers={"Authorization": signed(
                "POST", heartbeat, HEARTBEAT_BODY, WRONG_SECRET), **json_type}), 401),
        "heartbeat (plain, wrong secret)": (lambda: client.post(
            heartbeat, data=HEARTBEAT_BODY, headers={"Authorization": wrong_plain,
                                                     **json_type}), 401),
        "feeds pull 304 (signed)": (lambda: client.get(feeds, headers={
            "Authorization": signed("GET", feeds), "If-None-Match": etag}), 304),
    }


def profile(database_url: str, secret_key: str, creds, count: int, top: int) -> str:
    from parent import create_app
    from parent.extensions import db
    from parent.write_queue import ends_a_transaction

    app = create_app({"db": database_url, "secret_key": secret_key}, environ={})
    client = app.test_client()
    counts = {"sql": 0, "commit": 0}
    with app.app_context():
        engine = db.engine

    def on_execute(*_args):
        counts["sql"] += 1

    def on_commit(conn):
        # A COMMIT that ends a transaction in the database: a request that only read never
        # began one (parent/write_queue.py), and its commit() is a no-op.
        if ends_a_transaction(conn):
            counts["commit"] += 1

    event.listen(engine, "before_cursor_execute", on_execute)
    event.listen(engine, "commit", on_commit)
    out = io.StringIO()
    try:
        etag = client.get(CASCADE_PREFIX + FEEDS, headers={"Authorization": signing.
                          plain_authorization(creds.api_key, creds.api_secret)}).headers["ETag"]
        for name, (call, status) in _cases(client, creds, etag).items():
            for _ in range(20):  # warm up: the first heartbeat records the online edge
                answer = call()
            if answer.status_code != status:
                raise RuntimeError(f"{name}: HTTP {answer.status_code}, expected {status}")
            started = time.perf_counter()
            for _ in range(count):
                call()
            plain_elapsed = time.perf_counter() - started
            counts.update(sql=0, commit=0)
            profiler = cProfile.Profile()
            started = time.perf_counter()
            profiler.enable()
            for _ in range(count):
                call()
            profiler.disable()
            elapsed = time.perf_counter() - started
            out.write(f"\n== {name}: {count} requests, {plain_elapsed / count * 1e6:,.0f} µs "
                      f"each ({elapsed / count * 1e6:,.0f} profiled), "
                      f"{counts['sql'] / count:.2f} SQL and "
                      f"{counts['commit'] / count:.2f} COMMIT per request\n")
            stats = pstats.Stats(profiler, stream=out)
            stats.sort_stats("tottime").print_stats(top)
            stats.sort_stats("cumulative").print_stats(r"/(parent|shared)/", top)
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
        event.remove(engine, "commit", on_commit)
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
    return out.getvalue()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--pg", nargs="?", const="postgresql://postgres@127.0.0.1:5432/postgres",
                        default=None, metavar="URL")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args(argv)
    with migrated_database(args.pg) as (_, url, secret_key):
        creds = create_nodes(url, secret_key, 1)[0]
        seed_feeds(url, secret_key, 1000)
        print(profile(url, secret_key, creds, args.requests, args.top))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
