"""Presence: online after a heartbeat, offline after offline_after, each change logged."""

import pytest

from datetime import timedelta

from parent.extensions import db
from parent.services.maintenance import run_maintenance
from tests.helpers import NodeCaller


def _status(admin, node):
    return admin.get(f"/api/v1/cascade/nodes/{node.node_id}").get_json()["data"]["status"]


def _events(admin, node):
    items = admin.get(f"/api/v1/cascade/sync-logs?node_id={node.node_id}").get_json()["data"]["items"]
    return [(i["operation"], i["finished_at"]) for i in reversed(items)
            if i["operation"] in ("node_online", "node_offline")]


def _sweep(app):
    with app.app_context():
        report = run_maintenance()
        db.session.remove()
    return report


def test_node_goes_offline_after_three_missed_intervals(app, admin, plain_caller, node, clock):
    assert _status(admin, node) == "offline"
    plain_caller.post("/heartbeat", json={})
    assert _status(admin, node) == "online"
    clock.advance(180)
    assert _status(admin, node) == "online"
    clock.advance(1)
    assert _status(admin, node) == "offline"


def test_each_transition_is_logged_once_with_its_real_time(app, admin, plain_caller, node, clock):
    plain_caller.post("/heartbeat", json={})
    went_online = clock()
    clock.advance(60)
    plain_caller.post("/heartbeat", json={})
    last_beat = clock()
    clock.advance(500)
    assert _sweep(app)["presence"] == 1
    assert _sweep(app)["presence"] == 0, "a second sweep must not log the change again"
    events = _events(admin, node)
    assert [e[0] for e in events] == ["node_online", "node_offline"]
    assert events[0][1].startswith(went_online.strftime("%Y-%m-%dT%H:%M:%S"))
    # Offline since the moment the last heartbeat expired, not since the sweep ran.
    expired_at = last_beat + timedelta(seconds=180)
    assert events[1][1].startswith(expired_at.strftime("%Y-%m-%dT%H:%M:%S"))
    plain_caller.post("/heartbeat", json={})
    assert [e[0] for e in _events(admin, node)] == ["node_online", "node_offline", "node_online"]


def test_missed_sweep_is_caught_up_by_the_next_heartbeat(admin, plain_caller, node, clock):
    plain_caller.post("/heartbeat", json={})
    clock.advance(1000)  # no maintenance ran meanwhile
    plain_caller.post("/heartbeat", json={})
    assert [e[0] for e in _events(admin, node)] == ["node_online", "node_offline", "node_online"]


def test_steady_heartbeats_log_nothing_new(admin, plain_caller, node, clock):
    for _ in range(5):
        plain_caller.post("/heartbeat", json={})
        clock.advance(60)
    assert [e[0] for e in _events(admin, node)] == ["node_online"]


def test_offline_after_follows_the_heartbeat_interval(app, admin, client, clock):
    from tests.conftest import create_node_with_credentials

    app.config["WERSS_SETTINGS"] = type(app.config["WERSS_SETTINGS"])(
        **{**app.config["WERSS_SETTINGS"].__dict__,
           "cascade": type(app.config["WERSS_SETTINGS"].cascade)(heartbeat_interval=10)})
    node = create_node_with_credentials(admin, name="fast")
    NodeCaller(client, node, mode="plain").post("/heartbeat", json={})
    clock.advance(31)
    assert _status(admin, node) == "offline"


def test_sync_logs_are_pruned_after_retention(app, client, admin, plain_caller, node, clock):
    from tests.helpers import ADMIN_PASSWORD, ADMIN_USERNAME

    plain_caller.get("/feeds")
    clock.advance(31 * 86400)
    plain_caller.get("/message-tasks")
    # The pull, and the presence edges it caused (online, then offline 180 s later).
    assert _sweep(app)["sync_logs"] == 3
    admin.headers["Authorization"] = "Bearer " + client.post("/api/v1/auth/login", json={
        "username": ADMIN_USERNAME, "password": ADMIN_PASSWORD}).get_json()["data"]["access_token"]
    ops = [i["operation"] for i in admin.get("/api/v1/cascade/sync-logs").get_json()["data"]["items"]]
    assert "sync_feeds" not in ops and "sync_tasks" in ops


def test_two_workers_flushing_crossed_nodes_at_once_do_not_deadlock(
        db_backend, db_url, app, admin, clock):
    """Each worker keeps one node's sign of life and the other's unchanged pull. A flush
    writes both kinds; were they two passes over node rows, each worker's first pass would
    hold the row the other's second pass waits for (PostgreSQL: `deadlock detected`)."""
    if db_backend != "postgresql":
        pytest.skip("SQLite has one writer at a time: no row locks to cross")
    import threading

    from sqlalchemy import event

    from parent import create_app
    from parent.services import presence, unchanged_pulls
    from parent.models.sync_log import OP_SYNC_FEEDS
    from tests.conftest import base_config, create_node_with_credentials

    first, second = (create_node_with_credentials(admin, name).node_id for name in ("a", "b"))
    other = create_app(base_config(db_url), clock=clock, environ={})
    moment = clock()
    sign = presence.SignOfLife(moment, moment + timedelta(seconds=180), 60)
    for worker, signed, pulled in ((app, first, second), (other, second, first)):
        with worker.app_context():
            presence.buffer().put(signed, sign)
            unchanged_pulls.note_unchanged_pull(pulled, OP_SYNC_FEEDS, moment, moment)
    # Both finish their first UPDATE of nodes before either goes on (unless one is held
    # by the other's lock, which is the point: then it waits for the barrier in vain).
    barrier = threading.Barrier(2)
    firsts = set()

    def meet(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("UPDATE nodes") and threading.get_ident() not in firsts:
            firsts.add(threading.get_ident())
            try:
                barrier.wait(timeout=3)
            except threading.BrokenBarrierError:
                pass

    failures = []

    def flush(worker):
        try:
            with worker.app_context():
                presence.flush_presence()
                db.session.commit()
        except Exception as exc:  # noqa: BLE001 - the test reports it
            failures.append(exc)

    engines = []
    for worker in (app, other):
        with worker.app_context():
            engines.append(db.engine)
            event.listen(db.engine, "before_cursor_execute", meet)
    threads = [threading.Thread(target=flush, args=(worker,)) for worker in (app, other)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", meet)
        with other.app_context():
            db.engine.dispose()
    assert failures == []
    nodes = {n["id"]: n for n in admin.get("/api/v1/cascade/nodes").get_json()["data"]["items"]}
    assert all(nodes[node_id]["last_sync_at"] and nodes[node_id]["last_heartbeat_at"]
               for node_id in (first, second))
