"""SQLite writers of one parent take turns through its lock file (parent/write_queue.py).

How much this shortens node requests' waits behind big imports is measured, not asserted
here: `python -m bench.admin_writes` (bench/README.md). These tests hold the mechanism to
what a user relies on: writers exclude each other, an error never leaves the lock taken,
and a writer that waits too long gets the usual 503.
"""

from __future__ import annotations

import fcntl
import os
import threading

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from parent import write_queue
from parent.extensions import db
from parent.models import Allocation, Feed


pytestmark = pytest.mark.sqlite_only  # the lock file exists only on SQLite


def lock_path(app) -> str:
    with app.app_context():
        return f"{db.engine.url.database}.write-lock"


def test_a_writer_waits_for_the_one_holding_the_lock_then_goes_through(app, admin):
    with app.app_context():
        holder = db.engine.connect()
        transaction = holder.begin()  # a request of another worker, mid-transaction
        holder.execute(text("UPDATE admins SET username = username"))
    answers = []
    writer = threading.Thread(target=lambda: answers.append(admin.post(
        "/api/v1/feeds", json={"mp_name": "waits", "source_type": "rss",
                               "source_url": "https://example.org/waits.xml"}).status_code))
    writer.start()
    writer.join(0.5)
    assert writer.is_alive() and answers == []  # it waits its turn ...
    transaction.commit()
    holder.close()
    writer.join(10)
    assert answers == [201]  # ... and is served once the holder commits
    with app.app_context():
        assert db.session.execute(db.select(Feed.mp_name)).scalars().all() == ["waits"]


def test_a_failed_request_leaves_the_lock_free(app, admin):
    bad = admin.post("/api/v1/feeds", json={"mp_name": "", "source_type": "rss"})
    assert bad.status_code == 422
    fd = os.open(lock_path(app), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if anyone still holds it
    finally:
        os.close(fd)
    assert admin.get("/api/v1/feeds").status_code == 200


def test_a_rolled_back_transaction_lets_the_next_writer_in(tmp_path):
    path = tmp_path / "queue.db"
    engine = create_engine(f"sqlite:///{path}")
    write_queue.install(engine, str(path), timeout=1)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (x INTEGER)"))
    with pytest.raises(ZeroDivisionError):
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO t VALUES (1)"))
            1 / 0  # noqa: B018 - the transaction fails midway
    with engine.begin() as connection:  # would time out if the lock were still held
        connection.execute(text("INSERT INTO t VALUES (2)"))
        assert connection.execute(text("SELECT x FROM t")).scalars().all() == [2]
    engine.dispose()


def test_a_writer_kept_waiting_past_the_timeout_gets_database_unavailable(tmp_path):
    path = tmp_path / "queue.db"
    engine = create_engine(f"sqlite:///{path}")
    write_queue.install(engine, str(path), timeout=0.3)
    other = os.open(f"{path}.write-lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(other, fcntl.LOCK_EX)  # another process's writer, stuck
    try:
        with pytest.raises(OperationalError, match="database is locked"):
            with engine.begin() as connection:
                connection.execute(text("CREATE TABLE t (x INTEGER)"))
    finally:
        fcntl.flock(other, fcntl.LOCK_UN)
        os.close(other)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (x INTEGER)"))
    engine.dispose()


def _hold_the_write_lock(app):
    """Another worker's writer, mid-transaction: it holds the lock file and SQLite's lock."""
    with app.app_context():
        holder = db.engine.connect()
        transaction = holder.begin()
        holder.execute(text("UPDATE admins SET username = username"))
    return holder, transaction


def test_a_request_that_only_reads_does_not_wait_for_a_writer(app, admin, plain_caller):
    admin.post("/api/v1/feeds", json={"mp_name": "seen", "source_type": "rss",
                                      "source_url": "https://example.org/seen.xml"})
    etag = plain_caller.get("/feeds").headers["ETag"]  # a full pull is logged: a write
    plain_caller.get("/feeds", headers={"If-None-Match": etag})  # so is a window's first 304
    plain_caller.post("/heartbeat", json={})  # and the online edge; then they are steady
    holder, transaction = _hold_the_write_lock(app)
    try:
        # Answered while the writer still holds the lock, on the last committed data.
        assert plain_caller.post("/heartbeat", json={}).status_code == 200
        assert plain_caller.get("/feeds", headers={"If-None-Match": etag}).status_code == 304
        listed = admin.get("/api/v1/feeds")
        assert [feed["mp_name"] for feed in listed.get_json()["data"]["items"]] == ["seen"]
    finally:
        transaction.rollback()
        holder.close()


def test_a_request_that_writes_waits_for_the_writer_then_goes_through(app, admin,
                                                                     node_caller):
    node_caller.post("/heartbeat", json={})
    with app.app_context():
        holder = db.engine.connect()
        transaction = holder.begin()
        holder.execute(text("UPDATE nodes SET running = 7"))  # another worker's write
    answers = []
    reporter = threading.Thread(target=lambda: answers.append(node_caller.post(
        "/heartbeat", json={"running": 2}).status_code))
    reporter.start()
    reporter.join(0.5)
    assert reporter.is_alive() and answers == []  # its write waits its turn ...
    transaction.commit()
    holder.close()
    reporter.join(10)
    # ... and is served once the holder commits: its reads ran on their own, so its write
    # opened a fresh transaction instead of upgrading a stale one (SQLITE_BUSY_SNAPSHOT).
    assert answers == [200]
    running = admin.get("/api/v1/cascade/nodes").get_json()["data"]["items"][0]["running"]
    assert running == 2


def test_the_lock_file_is_private(app, admin):
    admin.get("/api/v1/feeds")
    assert os.stat(lock_path(app)).st_mode & 0o777 == 0o600


def test_a_claim_reads_what_it_takes_after_its_turn_so_it_finds_the_work_left(
        app, admin, node_caller):
    from tests.parent.test_claim_budget import make_work

    make_work(admin, 2)  # two pending allocations
    node_caller.post("/heartbeat", json={})  # the online edge is a write; then steady
    with app.app_context():
        first, second = db.session.execute(
            db.select(Allocation.id).order_by(Allocation.priority, Allocation.created_at,
                                              Allocation.id)).scalars().all()
        holder = db.engine.connect()
        transaction = holder.begin()  # another claimer, mid-transaction, takes the first
        holder.execute(text("UPDATE allocations SET status = 'leased' WHERE id = :id"),
                       {"id": first})
    answers = []
    claimer = threading.Thread(target=lambda: answers.append(
        node_caller.post("/claim", json={"max": 1, "wait": 0})))
    claimer.start()
    claimer.join(0.5)
    assert claimer.is_alive()  # it waits before reading the candidates ...
    transaction.commit()
    holder.close()
    claimer.join(10)
    # ... so it reads after the other claim and takes the allocation still pending.
    assert answers[0].status_code == 200, answers[0].status_code
    assert [lease["allocation_id"] for lease in answers[0].get_json()["data"]["leases"]] == \
        [second]
