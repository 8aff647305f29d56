"""Leasing under load: claims and completes from many clients, and claim cost as the queue grows.

Work is seeded the way a dispatch leaves it (a task, a run, one pending allocation per
feed), but bulk-inserted with Core in chunks, so 100,000 pending rows take seconds. After
the load, the database itself is asked whether any allocation was ever leased twice.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from datetime import datetime, timedelta, timezone

from sqlalchemy import event, text

from shared import signing
from shared.envelope import IDEMPOTENCY_HEADER
from shared.paths import CASCADE_PREFIX, CLAIM, LEASE_COMPLETE, WHOAMI

CLAIM_PATH = CASCADE_PREFIX + CLAIM
# What a child sends with no wait: one lease per request, so claims/s = leases/s.
CLAIM_BODY = json.dumps({"max": 1, "wait": 0}).encode()
SEED_CHUNK = 5000
NEVER_DUE = "0 0 1 1 *"  # a cron slot before the task exists: the scheduler leaves it alone


def _signed_headers(creds, method: str, path: str, body: bytes = b"",
                    idempotent: bool = False) -> dict:
    headers = {"Authorization": signing.signed_authorization(
        creds.api_key, creds.api_secret, method, path, "", body)}
    if body:
        headers["Content-Type"] = "application/json"
    if idempotent:  # a child sends one key per logical write
        headers[IDEMPOTENCY_HEADER] = str(uuid.uuid4())
    return headers


def whoami_factory(base_url: str, fleet: list):
    """A cheap signed read: warms connections up without taking any lease."""
    path = CASCADE_PREFIX + WHOAMI

    def make(index: int):
        return "GET", base_url + path, _signed_headers(fleet[index % len(fleet)], "GET", path), None

    return make


class LeaseLedger:
    """Every lease the clients were told of, as (lease id, allocation id, feed id).

    Which node holds each lease is read back from the database afterwards (``nodes``), so
    one ledger serves both drivers: wrk does not say which request an answer belongs to.
    """

    def __init__(self, threads_per_node: int):
        self.threads_per_node = threads_per_node
        self.granted: list[tuple[str, str, str]] = []
        self.nodes: dict[str, int] = {}  # lease id: index of its node in the fleet
        self.malformed = 0
        self._lock = threading.Lock()

    def node_of(self, index: int) -> int:
        """The node a client (Python: thread index; wrk: request index) claims as."""
        return index // self.threads_per_node

    def record(self, _thread_index: int, status: int, content: bytes) -> None:
        """The Python driver's on_response."""
        if status == 200:
            self.record_answer(content)

    def record_answer(self, content: bytes) -> None:
        """One 200 answer to a claim: keep the leases it grants."""
        try:
            leases = json.loads(content)["data"]["leases"]
            entries = [(lease["lease_id"], lease["allocation_id"], lease["feeds"][0]["id"])
                       for lease in leases]
        except (ValueError, KeyError, IndexError, TypeError):
            with self._lock:
                self.malformed += 1
            return
        with self._lock:
            self.granted.extend(entries)

    def duplicates(self) -> int:
        """Allocations the clients saw granted more than once."""
        allocation_ids = [entry[1] for entry in self.granted]
        return len(allocation_ids) - len(set(allocation_ids))


def claim_factory(base_url: str, fleet: list, ledger: LeaseLedger):
    """Client i claims as node i // threads_per_node (10 nodes × 5 threads), modulo the fleet."""
    url = base_url + CLAIM_PATH

    def make(index: int):
        creds = fleet[ledger.node_of(index) % len(fleet)]
        return "POST", url, _signed_headers(creds, "POST", CLAIM_PATH, CLAIM_BODY, True), CLAIM_BODY

    return make


def complete_factory(base_url: str, fleet: list, ledger: LeaseLedger):
    """Each request completes the next granted lease, as the node that holds it."""
    queue = deque(ledger.granted)

    def make(_index: int):
        lease_id, _, feed_id = queue.popleft()  # one ticket per granted lease
        node = ledger.nodes[lease_id]
        path = CASCADE_PREFIX + LEASE_COMPLETE.format(lease_id=lease_id)
        body = json.dumps({"results": [{"mp_id": feed_id, "success": True, "article_count": 0,
                                        "new_count": 0, "pushed_count": 0}]}).encode()
        return ("POST", base_url + path,
                _signed_headers(fleet[node], "POST", path, body, True), body)

    return make


class _ClaimQueryCapture:
    """Keep the candidate SELECT of a claim (with its parameters) to EXPLAIN it."""

    def __init__(self, engine):
        self.engine = engine
        self.statements: list[tuple[str, object]] = []
        event.listen(engine, "before_cursor_execute", self._on_execute)

    def _on_execute(self, conn, cursor, statement, parameters, context, executemany):
        self.statements.append((statement, parameters))

    def close(self):
        event.remove(self.engine, "before_cursor_execute", self._on_execute)


class WorkStore:
    """The bench database seen through the parent's models: seed work, probe, check leases."""

    def __init__(self, database_url: str, secret_key: str):
        from parent import create_app

        self.app = create_app({"db": database_url, "secret_key": secret_key}, environ={})

    def rss_feed_ids(self, limit: int) -> list[str]:
        from parent.extensions import db
        from parent.models import Feed

        with self.app.app_context():
            try:
                return list(db.session.execute(
                    db.select(Feed.id).where(Feed.source_type == "rss").order_by(Feed.id)
                    .limit(limit)).scalars())
            finally:
                db.session.remove()

    def create_run(self, name: str) -> tuple[str, str]:
        """A message task (never due on its own) and one manual run of it: (task id, run id)."""
        from parent.extensions import db
        from parent.models import TaskRun
        from parent.models.base import new_uuid
        from parent.services import message_tasks

        with self.app.app_context():
            try:
                task = message_tasks.create_task({"name": name, "cron_exp": NEVER_DUE})
                run_id = new_uuid()
                db.session.add(TaskRun(id=run_id, task_id=task.id, slot=datetime.now(timezone.utc),
                                       trigger="manual", allocation_count=0,
                                       created_at=datetime.now(timezone.utc)))
                db.session.commit()
                return task.id, run_id
            finally:
                db.session.remove()

    def add_pending(self, task_id: str, run_id: str, feed_ids: list[str], count: int) -> float:
        """Insert ``count`` pending one-feed allocations in chunks; return the seconds it took."""
        from parent.extensions import db
        from parent.models import Allocation
        from parent.models.base import new_uuid

        started = time.perf_counter()
        table = Allocation.__table__
        base = datetime.now(timezone.utc)
        with self.app.app_context():
            try:
                for start in range(0, count, SEED_CHUNK):
                    rows = []
                    for index in range(start, min(count, start + SEED_CHUNK)):
                        moment = base + timedelta(microseconds=index)  # a dispatch's order
                        rows.append({
                            "id": new_uuid(), "run_id": run_id, "task_id": task_id,
                            "feed_ids": [feed_ids[index % len(feed_ids)]], "status": "pending",
                            "priority": 0, "labels": [], "label_key": "", "needs_wechat": False,
                            "attempt": 0, "max_attempts": 3, "created_at": moment,
                            "updated_at": moment,
                        })
                    db.session.execute(table.insert(), rows)
                db.session.commit()
            finally:
                db.session.remove()
        return time.perf_counter() - started

    def pending(self) -> int:
        from parent.extensions import db

        with self.app.app_context():
            try:
                return db.session.execute(text(
                    "SELECT count(*) FROM allocations WHERE status = 'pending'")).scalar_one()
            finally:
                db.session.remove()

    def analyze(self) -> None:
        """Refresh the planner's statistics of the allocations table, as autovacuum would."""
        from parent.extensions import db

        with self.app.app_context():
            with db.engine.connect() as connection:
                connection.exec_driver_sql("ANALYZE allocations")
                connection.commit()

    def autoanalyzed(self) -> str | None:
        """When autovacuum last analyzed the allocations table (PostgreSQL; None elsewhere)."""
        from parent.extensions import db

        with self.app.app_context():
            if db.engine.dialect.name != "postgresql":
                return None
            with db.engine.connect() as connection:
                moment = connection.exec_driver_sql(
                    "SELECT last_autoanalyze FROM pg_stat_user_tables "
                    "WHERE relname = 'allocations'").scalar()
            return moment.isoformat() if moment else None

    def autovacuum(self) -> str | None:
        """The server's autovacuum setting (PostgreSQL; None elsewhere)."""
        from parent.extensions import db

        with self.app.app_context():
            if db.engine.dialect.name != "postgresql":
                return None
            with db.engine.connect() as connection:
                return connection.exec_driver_sql("SHOW autovacuum").scalar()

    def lease_nodes(self, lease_ids: list[str]) -> dict[str, str]:
        """Lease id: the id of the node that holds it."""
        from parent.extensions import db
        from parent.models import Lease

        found: dict[str, str] = {}
        with self.app.app_context():
            try:
                for start in range(0, len(lease_ids), 500):
                    found.update(db.session.execute(
                        db.select(Lease.id, Lease.node_id)
                        .where(Lease.id.in_(lease_ids[start:start + 500]))).tuples().all())
            finally:
                db.session.remove()
        return found

    def check_leases(self, task_id: str) -> dict:
        """Ask the database how many leases each allocation of the task ever had."""
        from parent.extensions import db

        scoped = "FROM leases l JOIN allocations a ON a.id = l.allocation_id WHERE a.task_id = :t"
        with self.app.app_context():
            try:
                leases = db.session.execute(text(f"SELECT count(*) {scoped}"),
                                            {"t": task_id}).scalar_one()
                twice = db.session.execute(text(
                    f"SELECT count(*) FROM (SELECT l.allocation_id {scoped} "
                    "GROUP BY l.allocation_id HAVING count(*) > 1) AS twice"),
                    {"t": task_id}).scalar_one()
                statuses = dict(db.session.execute(text(
                    "SELECT status, count(*) FROM allocations WHERE task_id = :t GROUP BY status"),
                    {"t": task_id}).all())
                return {"leases": leases, "allocations_leased_twice": twice,
                        "allocation_statuses": statuses}
            finally:
                db.session.remove()

    def probe_claim(self, node_id: str) -> dict:
        """Run one claim in-process: the SQL it issues and the plan of its candidate query."""
        from parent.extensions import db
        from parent.models import Node
        from parent.services import leasing

        from .probe import describe_statement

        with self.app.app_context():
            capture = _ClaimQueryCapture(db.engine)
            try:
                node = db.session.get(Node, node_id)
                capture.statements.clear()
                started = time.perf_counter()
                claimed = leasing.claim_once(node, 1)
                db.session.commit()
                elapsed = time.perf_counter() - started
                statements = list(capture.statements)
            finally:
                capture.close()
                db.session.remove()
            candidate = next((s for s in statements
                              if "FROM allocations" in s[0] and "ORDER BY" in s[0]), None)
            plan = []
            if candidate:
                sql, parameters = candidate
                prefix = "EXPLAIN QUERY PLAN " if db.engine.dialect.name == "sqlite" else "EXPLAIN "
                with db.engine.connect() as connection:
                    rows = connection.exec_driver_sql(prefix + sql, parameters).all()
                    connection.rollback()
                plan = [str(row[-1]) for row in rows]
        return {
            "claimed": len(claimed),
            "in_process_ms": round(elapsed * 1000, 2),
            "statements": [describe_statement(sql) for sql, _ in statements],
            "candidate_sql": " ".join(candidate[0].split()) if candidate else None,
            "plan": plan,
        }

    def close(self) -> None:
        from parent.extensions import db

        with self.app.app_context():
            db.session.remove()
            db.engine.dispose()



def profile_claims(database_url: str, secret_key: str, creds, count: int, top: int,
                   dump: str | None = None) -> str:
    """Run ``count`` signed claims (1 lease each) in-process under cProfile; say what each costs.

    Prints SQL statements and COMMITs per claim (by verb and table), microseconds per claim
    and the functions that take the time, like ``python -m bench.profile`` for heartbeats.
    """
    import cProfile
    import io
    import pstats
    from collections import Counter

    from parent import create_app
    from parent.extensions import db

    from .probe import StatementRecorder, describe_statement

    app = create_app({"db": database_url, "secret_key": secret_key}, environ={})
    client = app.test_client()
    commits = {"count": 0}

    def on_commit(_conn):
        commits["count"] += 1

    def claim_once():
        response = client.post(CLAIM_PATH, data=CLAIM_BODY,
                               headers=_signed_headers(creds, "POST", CLAIM_PATH, CLAIM_BODY, True))
        leases = (response.get_json(silent=True) or {}).get("data", {}).get("leases") or []
        if response.status_code != 200 or len(leases) != 1:
            raise RuntimeError(f"claim answered {response.status_code} with {len(leases)} leases")

    with app.app_context():
        engine = db.engine
    recorder = StatementRecorder(engine)
    event.listen(engine, "commit", on_commit)
    waited: Counter = Counter()  # seconds from cursor execute to its return, per statement kind

    def before(conn, cursor, statement, parameters, context, executemany):
        conn.info["bench.started"] = time.perf_counter()

    def after(conn, cursor, statement, parameters, context, executemany):
        if recorder.recording:
            waited[describe_statement(statement)] += (time.perf_counter()
                                                      - conn.info.pop("bench.started"))

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    out = io.StringIO()
    try:
        for _ in range(20):  # warm up: connections, the scheduler's first look
            claim_once()
        started, cpu_started = time.perf_counter(), time.process_time()
        for _ in range(count):
            claim_once()
        plain_us = (time.perf_counter() - started) / count * 1e6
        # This process's CPU (the app's Python, not PostgreSQL's): steadier than wall time
        # on a shared machine.
        cpu_us = (time.process_time() - cpu_started) / count * 1e6
        profiler = cProfile.Profile()
        commits["count"] = 0
        recorder.statements, recorder.recording = [], True
        started = time.perf_counter()
        profiler.enable()
        for _ in range(count):
            claim_once()
        profiler.disable()
        elapsed = time.perf_counter() - started
        recorder.recording = False
        if dump:
            profiler.dump_stats(dump)
        stats = pstats.Stats(profiler, stream=out)
        kinds = Counter(describe_statement(sql) for sql in recorder.statements)
        out.write(f"== claim (max 1): {count} requests, {plain_us:,.0f} µs each "
                  f"({cpu_us:,.0f} µs CPU; {elapsed / count * 1e6:,.0f} profiled), {len(recorder.statements) / count:.2f} SQL and "
                  f"{commits['count'] / count:.2f} COMMIT per claim; "
                  f"{stats.total_calls / count:,.0f} Python function calls per claim (a CPU "
                  "measure a busy machine does not move)\n")
        out.write("  per claim  µs in the driver (profiled)  statement\n")
        for kind, seen in sorted(kinds.items(), key=lambda item: -item[1]):
            out.write(f"  {seen / count:9.2f}  {waited[kind] / count * 1e6:27,.0f}  {kind}\n")
        stats.sort_stats("tottime").print_stats(top)
        stats.sort_stats("cumulative").print_stats(r"/(parent|shared)/", top)
    finally:
        recorder.close()
        event.remove(engine, "commit", on_commit)
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
    return out.getvalue()


def main(argv=None) -> int:
    """`python -m bench.leasing [--pg [URL]]`: where one claim's time goes, in-process."""
    import argparse

    from .database import create_nodes, migrated_database, seed_feeds

    parser = argparse.ArgumentParser(prog="python -m bench.leasing", description=main.__doc__)
    parser.add_argument("--pg", nargs="?", const="postgresql://postgres@127.0.0.1:5432/postgres",
                        default=None, metavar="URL")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--pending", type=int, default=10000,
                        help="pending one-feed allocations in the queue before the claims")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--dump", metavar="FILE", help="also write the cProfile stats here")
    args = parser.parse_args(argv)
    with migrated_database(args.pg) as (_, url, secret_key):
        creds = create_nodes(url, secret_key, 1, prefix="bench-claimer", capacity=1_000_000)[0]
        seed_feeds(url, secret_key, 1000)
        store = WorkStore(url, secret_key)
        try:
            task_id, run_id = store.create_run("bench claim profile")
            store.add_pending(task_id, run_id, store.rss_feed_ids(1000),
                              max(args.pending, 2 * args.requests + 20))
            store.analyze()
        finally:
            store.close()
        print(profile_claims(url, secret_key, creds, args.requests, args.top, args.dump))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
