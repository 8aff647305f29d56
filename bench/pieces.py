"""`python -m bench.pieces`: what the pieces of a node request cost, each on its own, in-process.

`bench.profile` says where a whole request's time goes under cProfile, which inflates
Python calls about twofold. This measures the candidate pieces without a profiler, one
thread, minimum and median of R rounds of N calls each, so a change to one of them can be
weighed before it is made:

- the request's session alone: connection checkout, transaction bookkeeping, close and
  return, no statement (every request pays it);
- the node by its API key: through the ORM as authentication reads it, with ``load_only``
  of the columns authentication needs, in Core (a row, no ORM object), and the same SQL
  on the driver's cursor (no SQLAlchemy);
- a lone nonce INSERT that commits itself, through the session as a signed request writes
  it and through ``exec_driver_sql`` (no compilation or bind processing);
- decoding and validating a heartbeat body: the bench's own and a child's (with
  capabilities).

Each figure includes the session piece where the piece needs a session, so compare a row
with "session only", not with zero. SQLite by default (a temp file); ``--pg URL`` runs on a
throwaway PostgreSQL database.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
import uuid
from collections.abc import Callable, Iterator

from .database import create_nodes, migrated_database
from .probe import HEARTBEAT_BODY

# What werss-child sends once it reports its sources and a WeChat login (child/agent.py).
CHILD_HEARTBEAT_BODY = json.dumps({
    "version": "0.3.0", "hostname": "edge-child-0001.example", "capacity": 4, "running": 0,
    "capabilities": {"sources": ["rss", "wechat"], "wechat": {
        "session_valid": True, "expires_at": "2026-12-08T10:00:00Z", "account": None}},
}).encode()


@contextlib.contextmanager
def cases(app, api_key: str) -> Iterator[dict[str, Callable[[], object]]]:
    """The pieces, by name, for the node with ``api_key`` (a driver connection held meanwhile)."""
    from sqlalchemy import bindparam, insert, select
    from sqlalchemy.orm import load_only

    from parent import write_queue
    from parent.clock import now
    from parent.extensions import db
    from parent.models import Node, UsedNonce
    from shared.schemas import HeartbeatSchema

    nodes, nonces = Node.__table__, UsedNonce.__table__
    by_key = Node.api_key == bindparam("api_key")
    orm = select(Node).where(by_key)
    auth_columns = [Node.id, Node.secret_ciphertext, Node.is_active, Node.deleted_at,
                    Node.route_family, Node.presence, Node.last_heartbeat_at]
    lean = select(Node).options(load_only(*auth_columns)).where(by_key)
    core = select(nodes).where(nodes.c.api_key == bindparam("api_key"))
    params = {"api_key": api_key}
    alone = {write_queue.ALONE: True}
    insert_nonce = insert(nonces)
    with app.app_context():
        dialect = db.engine.dialect
        raw = db.engine.raw_connection()
    mark = "?" if dialect.name == "sqlite" else "%s"
    raw_sql = f"SELECT * FROM nodes WHERE api_key = {mark}"
    insert_sql = f"INSERT INTO used_nonces (node_id, nonce, seen_at) VALUES ({mark}, {mark}, {mark})"
    seen_at = nonces.c.seen_at.type.bind_processor(dialect) or (lambda value: value)
    schema = HeartbeatSchema()

    def in_session(work: Callable[[], object]) -> Callable[[], object]:
        def run():
            with app.app_context():
                db.session.connection()
                work()
                db.session.remove()
        return run

    def driver_read():
        cursor = raw.cursor()
        cursor.execute(raw_sql, (api_key,))
        cursor.fetchone()
        cursor.close()

    def nonce_row():
        return {"node_id": "bench-node", "nonce": uuid.uuid4().hex, "seen_at": now()}

    def nonce_driver():
        row = nonce_row()
        db.session.connection().exec_driver_sql(
            insert_sql, (row["node_id"], row["nonce"], seen_at(row["seen_at"])),
            execution_options=alone)

    try:
        yield {
            "session only": in_session(lambda: None),
            "node: ORM, every column": in_session(
                lambda: db.session.execute(orm, params).scalar_one()),
            "node: ORM, load_only 7 columns": in_session(
                lambda: db.session.execute(lean, params).scalar_one()),
            "node: Core row": in_session(lambda: db.session.execute(core, params).one()),
            "node: driver cursor, no session": driver_read,
            "session + nonce row built (no INSERT)": in_session(nonce_row),
            "nonce INSERT alone, session.execute": in_session(
                lambda: db.session.execute(insert_nonce, nonce_row(), execution_options=alone)),
            "nonce INSERT alone, exec_driver_sql": in_session(nonce_driver),
            "heartbeat body: bench's (4 fields)": lambda: schema.load(json.loads(HEARTBEAT_BODY)),
            "heartbeat body: a child's": lambda: schema.load(json.loads(CHILD_HEARTBEAT_BODY)),
        }
    finally:
        raw.close()


def measure(named: dict[str, Callable[[], object]], count: int, rounds: int,
            warmup: int = 200) -> dict[str, tuple[float, float]]:
    """name -> (minimum, median) µs per call over ``rounds`` rounds of ``count`` calls."""
    for case in named.values():
        for _ in range(warmup):
            case()
    samples: dict[str, list[float]] = {name: [] for name in named}
    for _ in range(rounds):  # interleaved, so a busy moment hits every case alike
        for name, case in named.items():
            started = time.perf_counter()
            for _ in range(count):
                case()
            samples[name].append((time.perf_counter() - started) / count * 1e6)
    return {name: (min(values), statistics.median(values)) for name, values in samples.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pieces", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pg", nargs="?", const="postgresql://postgres@127.0.0.1:5432/postgres",
                        default=None, metavar="URL")
    parser.add_argument("--count", type=int, default=3000, help="calls per round [3000]")
    parser.add_argument("--rounds", type=int, default=5, help="rounds [5]")
    args = parser.parse_args(argv)
    with migrated_database(args.pg) as (database, url, secret_key):
        creds = create_nodes(url, secret_key, 1)[0]
        from parent import create_app

        app = create_app({"db": url, "secret_key": secret_key}, environ={})
        with cases(app, creds.api_key) as pieces:
            results = measure(pieces, args.count, args.rounds)
        print(f"{database.describe()}: minimum and median µs per call, "
              f"{args.rounds} rounds of {args.count}")
        width = max(len(name) for name in results)
        for name, (low, middle) in results.items():
            print(f"  {name:<{width}}  {low:8.1f}  {middle:8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
