"""Presence from each node's own cadence: any node request is a sign of life, and a WeRSS
child on its defaults (one heartbeat inside each 300 s sync) never flaps offline."""

from datetime import timedelta

import pytest

from parent.extensions import db
from parent.services.maintenance import run_maintenance
from tests.helpers import NodeCaller, NodeCredentials


def _sweep(app):
    with app.app_context():
        run_maintenance()
        db.session.remove()


def _status(admin, node):
    return admin.get(f"/api/v1/cascade/nodes/{node.node_id}").get_json()["data"]["status"]


def _edges(admin, node):
    items = [item for operation in ("node_online", "node_offline")
             for item in admin.get(f"/api/v1/cascade/sync-logs?node_id={node.node_id}"
                                   f"&operation={operation}&limit=200").get_json()["data"]["items"]]
    return [(i["operation"], i["finished_at"]) for i in sorted(items, key=lambda i: i["finished_at"])]


def _werss_sync(caller):
    """What a WeRSS 1.4.9 child sends each sync_interval: heartbeat, feeds, tasks."""
    caller.post("/heartbeat", json={"callback_url": ""})
    caller.get("/feeds")
    caller.get("/message-tasks")


def test_a_werss_child_on_its_defaults_stays_online_for_hours(app, admin, client, node, clock):
    werss = NodeCaller(client, node, mode="plain", prefix="/api/v1/wx/cascade")
    for _ in range(120):  # ten hours of 300 s syncs, with housekeeping just before each one
        _werss_sync(werss)
        clock.advance(299)
        _sweep(app)
        assert _status(admin, node) == "online"
        clock.advance(1)
    assert [op for op, _ in _edges(admin, node)] == ["node_online"]


def test_a_stopped_werss_child_goes_offline_after_its_earned_threshold(app, admin, client,
                                                                       node, clock):
    werss = NodeCaller(client, node, mode="plain", prefix="/api/v1/wx/cascade")
    _werss_sync(werss)
    clock.advance(300)
    _werss_sync(werss)
    last = clock()
    answer = werss.post("/heartbeat", json={}).get_json()["data"]
    assert answer["offline_after"] == 750  # 2.5 x its 300 s cadence
    clock.advance(749)
    _sweep(app)
    assert _status(admin, node) == "online"
    clock.advance(2)
    _sweep(app)
    assert _status(admin, node) == "offline"
    op, finished = _edges(admin, node)[-1]
    assert op == "node_offline"
    assert finished.startswith((last + timedelta(seconds=750)).strftime("%Y-%m-%dT%H:%M:%S"))


@pytest.mark.parametrize("route", ["/feeds", "/message-tasks", "/whoami"])
def test_any_node_request_is_a_sign_of_life(app, admin, plain_caller, node, clock, route):
    assert plain_caller.get(route).status_code == 200
    assert _status(admin, node) == "online"
    for _ in range(5):
        clock.advance(170)
        plain_caller.get(route)
        _sweep(app)
    assert _status(admin, node) == "online"
    assert [op for op, _ in _edges(admin, node)] == ["node_online"]


def test_our_child_keeps_the_configured_threshold(app, admin, plain_caller, node, clock):
    for _ in range(3):
        plain_caller.post("/heartbeat", json={})
        clock.advance(60)
    answer = plain_caller.post("/heartbeat", json={}).get_json()["data"]
    assert answer["offline_after"] == 180
    clock.advance(181)
    _sweep(app)
    assert _status(admin, node) == "offline"


def test_an_outage_does_not_teach_a_long_threshold_at_once(app, admin, plain_caller, clock):
    for _ in range(3):
        plain_caller.post("/heartbeat", json={})
        clock.advance(60)
    clock.advance(3600)  # down for an hour, then back
    answer = plain_caller.post("/heartbeat", json={}).get_json()["data"]
    assert answer["offline_after"] <= 2.5 * 120


def test_a_failed_authentication_is_no_sign_of_life(admin, client, node):
    wrong = NodeCaller(client, NodeCredentials(node.node_id, node.api_key, "CS" + "x" * 32),
                       mode="plain")
    assert wrong.post("/heartbeat", json={}).status_code == 401
    assert _status(admin, node) == "offline"
