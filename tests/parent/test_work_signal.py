"""The work generation moves exactly when claimable work appears (parent/services/work_signal.py),
and a parking worker's claim answers carry it as X-Work-Token."""

from __future__ import annotations

import pytest

from parent.extensions import db
from parent.services import work_signal
from tests.parent.test_leasing import claim, dispatch, make_feeds, make_task


def generation(app) -> int:
    with app.app_context():
        return work_signal.current()


@pytest.fixture
def task(admin):
    make_feeds(admin, 1)
    return make_task(admin)


def test_a_dispatch_moves_the_generation_and_an_empty_claim_does_not(app, admin, node_caller,
                                                                      task):
    claim(node_caller, expect=204)
    start = generation(app)
    claim(node_caller, expect=204)
    assert generation(app) == start
    dispatch(admin, task)
    assert generation(app) == start + 1
    claim(node_caller)  # taking work makes none appear
    assert generation(app) == start + 1


@pytest.mark.parametrize("body, moves", [
    ({"error": "shutting down", "retryable": True, "release": True}, True),  # handed back
    ({"error": "timeout", "retryable": True}, True),  # retried after its back-off
    ({"error": "limited", "rate_limited_until": "2099-01-01T00:00:00Z"}, True),
    ({"error": "gone", "retryable": False}, False),  # dead: nothing to claim
])
def test_a_failed_lease_moves_the_generation_when_its_work_is_pending_again(
        app, admin, node_caller, task, body, moves):
    dispatch(admin, task)
    lease = claim(node_caller)[0]
    start = generation(app)
    response = node_caller.post(f"/leases/{lease['lease_id']}/fail", json=body)
    assert response.status_code == 200, response.get_json()
    assert generation(app) == start + (1 if moves else 0)


def test_an_expired_lease_requeued_moves_the_generation(app, admin, node_caller, task, clock):
    dispatch(admin, task)
    claim(node_caller)
    start = generation(app)
    clock.advance(601)  # past lease_ttl
    assert len(claim(node_caller)) == 1  # the claim requeued it, and took it again
    assert generation(app) == start + 1


def test_a_node_command_moves_the_generation(app, admin, node):
    start = generation(app)
    response = admin.post(f"/api/v1/cascade/nodes/{node.node_id}/wechat/login")
    assert response.status_code == 202, response.get_json()
    assert generation(app) == start + 1


def test_a_rolled_back_bump_does_not_move_the_generation(app):
    start = generation(app)
    with app.app_context():
        work_signal.bump()
        db.session.rollback()
        db.session.commit()
    assert generation(app) == start


def test_a_parking_workers_claim_answers_carry_the_generation(app, client, admin, node_caller,
                                                               task, clock):
    client.environ_base["werss.parking"] = True
    empty = node_caller.post("/claim", json={"max": 1})
    assert empty.status_code == 204
    retry_after = int(empty.headers["Retry-After"])
    assert empty.headers["X-Work-Token"] == f"{generation(app)}.{clock.timestamp() + retry_after}"

    dispatch(admin, task)
    full = node_caller.post("/claim", json={"max": 1})
    assert full.status_code == 200
    # Read before the lease was taken; due now: claim again at once.
    assert full.headers["X-Work-Token"] == f"{generation(app)}.{clock.timestamp()}"


def test_no_token_without_a_parking_worker_or_on_the_werss_prefix(app, client, node,
                                                                   node_caller, clock):
    from tests.helpers import NodeCaller

    assert "X-Work-Token" not in node_caller.post("/claim", json={"max": 1}).headers
    client.environ_base["werss.parking"] = True
    werss = NodeCaller(client, node, clock=clock, prefix="/api/v1/wx/cascade")
    answer = werss.post("/claim", json={"max": 1})
    assert answer.status_code in (200, 204) and "X-Work-Token" not in answer.headers


def test_a_parking_workers_claim_costs_no_read_for_the_generation_it_is_given(
        app, client, node_caller):
    from tests.parent.test_write_budget import _data, counted

    claim(node_caller, expect=204)  # the first claim learns the node's sources
    with counted(app) as paced:
        claim(node_caller, expect=204)
    client.environ_base["werss.parking"] = True
    with counted(app) as unknown:  # a worker whose watcher has not read it yet
        claim(node_caller, expect=204)
    client.environ_base["werss.generation"] = 41
    with counted(app) as given:
        answer = node_caller.post("/claim", json={"max": 1, "wait": 0})
    assert answer.status_code == 204
    assert sorted(_data(unknown["statements"])) == sorted(
        _data(paced["statements"]) + ["SELECT meta_values"])
    assert sorted(_data(given["statements"])) == sorted(_data(paced["statements"]))
    assert answer.headers["X-Work-Token"].startswith("41.")
    assert given["commits"] == unknown["commits"] == paced["commits"] == 0


def test_bumping_adds_no_listener_while_serving():
    """Adding one while another thread's commit runs the listeners failed that commit."""
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    assert event.contains(Session, "before_commit", work_signal._write_bump)


def test_a_dispatch_commits_once_with_its_bump(app, admin, task):
    from tests.parent.test_write_budget import counted

    with counted(app) as seen:
        dispatch(admin, task)
    assert seen["commits"] == 1
    assert [s for s in seen["statements"] if s.startswith("INSERT meta_values")] == [
        "INSERT meta_values"]


def test_a_wechat_nodes_parked_claim_is_not_due_at_its_short_retry_after(app, client,
                                                                          node_caller, clock):
    """Its Retry-After stays short (commands come with claim answers), but a parked claim
    is released by the command itself: its token is due at the ordinary moment."""
    node_caller.post("/heartbeat", json={"capabilities": {
        "sources": ["rss", "wechat"], "wechat": {"session_valid": True, "expires_at": None}}})
    client.environ_base["werss.parking"] = True
    empty = node_caller.post("/claim", json={"max": 1})
    assert empty.status_code == 204
    assert empty.headers["Retry-After"] == "3"
    assert empty.headers["X-Work-Token"] == f"{generation(app)}.{clock.timestamp() + 30}"
