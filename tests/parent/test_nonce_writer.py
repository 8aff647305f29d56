"""Nonces written in groups (parent/nonce_writer.py): one statement for the requests that
wait at the same time, each answered only once its own nonce is committed, and a replay
refused whichever group, worker or parent its copy reached."""

import threading
from datetime import datetime, timezone

from sqlalchemy.exc import OperationalError

from parent import create_app
from parent.extensions import db
from parent.models import UsedNonce
from parent.nonce_writer import NonceWriter, nonce_writer
from tests.conftest import base_config
from tests.support.sql_counting import counted

MOMENT = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)


def _stored(app) -> set[tuple[str, str]]:
    with app.app_context():
        return {(row.node_id, row.nonce) for row in db.session.query(UsedNonce)}


class _HeldFirstWrite:
    """Keeps the writer's first statement waiting, so others gather behind it."""

    def __init__(self, monkeypatch):
        self.entered, self.release = threading.Event(), threading.Event()
        original = NonceWriter._write
        held = self

        def write(writer, rows, connection):
            if not held.entered.is_set():
                held.entered.set()
                assert held.release.wait(10)
            return original(writer, rows, connection)

        monkeypatch.setattr(NonceWriter, "_write", write)


def _in_threads(calls):
    results, errors = [None] * len(calls), []

    def run(index, call):
        try:
            results[index] = call()
        except Exception as exc:  # noqa: BLE001 - what each caller got, to assert on
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    return threads, results, errors


def _wait_until_gathered(writer, count):
    for _ in range(1000):
        with writer._turn:
            group = writer._gathering
            if group is not None and len(group.rows) == count:
                return
        threading.Event().wait(0.005)
    raise AssertionError("the requests did not gather")


def test_requests_that_wait_together_share_one_statement(app, monkeypatch):
    writer = nonce_writer(app)
    held = _HeldFirstWrite(monkeypatch)
    with counted(app) as seen:
        first, first_result, _ = _in_threads([lambda: writer.write("n1", "first", MOMENT)])
        assert held.entered.wait(10)
        threads, results, errors = _in_threads(
            [lambda i=i: writer.write("n1", f"nonce-{i}", MOMENT) for i in range(10)])
        _wait_until_gathered(writer, 10)
        held.release.set()
        for thread in first + threads:
            thread.join(10)
    assert not errors and first_result == [True] and results == [True] * 10
    assert [s for s in seen["statements"] if s.startswith("INSERT")] == ["INSERT used_nonces"] * 2
    assert _stored(app) == {("n1", "first")} | {("n1", f"nonce-{i}") for i in range(10)}


def test_a_copy_in_the_same_group_and_a_copy_already_written_are_refused(app, monkeypatch):
    writer = nonce_writer(app)
    assert writer.write("n1", "old", MOMENT) is True
    held = _HeldFirstWrite(monkeypatch)
    first, _, _ = _in_threads([lambda: writer.write("n1", "lead", MOMENT)])
    assert held.entered.wait(10)
    threads, results, errors = _in_threads([
        lambda: writer.write("n1", "twice", MOMENT), lambda: writer.write("n1", "twice", MOMENT),
        lambda: writer.write("n1", "old", MOMENT), lambda: writer.write("n2", "twice", MOMENT)])
    held.release.set()
    for thread in first + threads:
        thread.join(10)
    assert not errors
    assert sorted(results[:2]) == [False, True], "one copy of the request wins"
    assert results[2:] == [False, True]
    assert _stored(app) == {("n1", "old"), ("n1", "lead"), ("n1", "twice"), ("n2", "twice")}


def test_a_replay_reaching_another_worker_is_refused_there(app, db_url, clock):
    other = create_app(base_config(db_url), clock=clock, environ={})  # a second process
    try:
        assert nonce_writer(app).write("n1", "once", MOMENT) is True
        assert nonce_writer(other).write("n1", "once", MOMENT) is False
        assert nonce_writer(other).write("n1", "twice", MOMENT) is True
        assert nonce_writer(app).write("n1", "twice", MOMENT) is False
    finally:
        with other.app_context():
            db.engine.dispose()


def test_a_failed_statement_fails_every_request_of_its_group_and_not_the_next(app,
                                                                            monkeypatch):
    writer = nonce_writer(app)
    entered, release, failing = threading.Event(), threading.Event(), [True]
    original = NonceWriter._write

    def write(self, rows, connection):
        if not entered.is_set():  # the first group: held while the next one gathers
            entered.set()
            assert release.wait(10)
        elif failing[0]:
            raise OperationalError("INSERT", {}, Exception("disk I/O error"))
        return original(self, rows, connection)

    monkeypatch.setattr(NonceWriter, "_write", write)
    first, first_result, _ = _in_threads([lambda: writer.write("n1", "lead", MOMENT)])
    assert entered.wait(10)
    threads, results, errors = _in_threads(
        [lambda i=i: writer.write("n1", f"lost-{i}", MOMENT) for i in range(3)])
    _wait_until_gathered(writer, 3)
    release.set()
    for thread in first + threads:
        thread.join(10)
    assert first_result == [True]
    assert len(errors) == 3 and all(isinstance(e, OperationalError) for e in errors)
    failing[0] = False
    assert writer.write("n1", "lost-0", MOMENT) is True, "the failed group wrote nothing"
    assert _stored(app) == {("n1", "lead"), ("n1", "lost-0")}


def test_a_signed_request_whose_nonce_loses_the_race_is_refused(client, node, clock,
                                                                monkeypatch):
    from tests.helpers import NodeCaller, assert_error

    caller = NodeCaller(client, node, clock=clock, mode="signed")
    assert caller.get("/whoami").status_code == 200  # online: the next one writes only its nonce
    clock.advance(60)
    original = NonceWriter.write

    def copy_first(self, node_id, nonce, seen_at):
        # Its copy reached another worker, which committed the nonce after this one read
        # that it was new.
        assert original(self, node_id, nonce, seen_at)
        return original(self, node_id, nonce, seen_at)

    monkeypatch.setattr(NonceWriter, "write", copy_first)
    assert_error(caller.get("/whoami"), 401, "replayed_request")


def test_a_nonce_whose_driver_write_fails_is_written_by_core_and_committed(app, db_url,
                                                                          clock):
    """The group's INSERT runs on the driver's cursor (parent/driver_sql.py). If the driver
    raises, Core runs it again, alone: committed at once, not left in a transaction that
    the connection's return would roll back (and a replay let in)."""
    writer = nonce_writer(app)
    with app.app_context():
        statement = writer._driver(1)
    statement.sql = "INSERT INTO no_such_table VALUES (1)"  # what the driver now meets
    assert writer.write("n1", "retried", MOMENT) is True
    other = create_app(base_config(db_url), clock=clock, environ={})  # a second process
    try:
        assert nonce_writer(other).write("n1", "retried", MOMENT) is False
    finally:
        with other.app_context():
            db.engine.dispose()
    assert ("n1", "retried") in _stored(app)


def test_a_group_on_the_drivers_cursor_is_counted_as_one_insert_and_commits_itself(app):
    with counted(app) as seen:
        assert nonce_writer(app).write("n1", "counted", MOMENT) is True
    assert seen["statements"] == ["INSERT used_nonces"]
    assert seen["commits"] == 0  # no transaction was opened: the statement committed itself
    with app.app_context():  # stored as Core stores it: housekeeping prunes by comparing it
        stored = db.session.query(UsedNonce).filter(UsedNonce.nonce == "counted",
                                                    UsedNonce.seen_at == MOMENT).one()
    assert stored.seen_at == MOMENT
