"""Claims never wait at the parent: an empty one is answered at once with the moment to
come back (parent/services/claim_pacing.py, docs/OPERATIONS.md "Waiting claims")."""

from datetime import datetime, timedelta

import pytest

from tests.conftest import create_node_with_credentials
from tests.helpers import NodeCaller
from tests.parent.test_leasing import claim, dispatch, make_feeds, make_task
from tests.parent.test_write_budget import _data, counted

def ten_seconds_before_a_minute(clock) -> datetime:
    """Move the clock to hh:mm:50, so an every-minute task is next due in 10 s."""
    clock.current = clock.current.replace(second=50, microsecond=0) + timedelta(minutes=1)
    return clock.current


@pytest.fixture
def idle(app, admin, clock):
    """One feed and an every-minute task; the minute it was created in is not run."""
    ten_seconds_before_a_minute(clock)
    make_feeds(admin, 1)
    return make_task(admin, cron_exp="* * * * *")


def empty_claim(caller, wait=0):
    response = caller.post("/claim", json={"max": 1, "wait": wait})
    assert response.status_code == 204, response.get_json()
    return int(response.headers["Retry-After"])


def test_an_idle_claim_costs_the_same_statements_whatever_it_asks_to_wait(app, node_caller,
                                                                          idle):
    """No thread is held and no query repeats while a child waits: asking to wait 30 s
    runs exactly the statements of asking not to wait, and is answered at once."""
    empty_claim(node_caller)  # first claims learn the node's sources and the schedule
    with counted(app) as no_wait:
        empty_claim(node_caller, wait=0)
    with counted(app) as long_wait:
        empty_claim(node_caller, wait=30)
    assert _data(long_wait["statements"]) == _data(no_wait["statements"])
    # Nothing to take: it opens no transaction (its nonce is written alone).
    assert long_wait["commits"] == no_wait["commits"] == 0


def test_retry_after_is_just_past_the_next_cron_slot_and_the_run_is_there(app, node_caller,
                                                                          idle, clock):
    slot = clock() + timedelta(seconds=10)
    assert empty_claim(node_caller) == 11  # due at hh:mm+1:00, come back a second after
    clock.advance(11)
    leases = claim(node_caller)
    assert len(leases) == 1 and leases[0]["slot"] == slot.isoformat().replace("+00:00", "Z")


def test_dispatched_work_reaches_an_idle_child_on_its_next_claim(app, admin, node_caller, idle,
                                                                 clock):
    retry = empty_claim(node_caller)
    dispatch(admin, idle)
    clock.advance(retry)
    assert len(claim(node_caller)) == 1


@pytest.mark.parametrize("cascade_settings", [{"claim_max_wait": 20}])
def test_an_idle_fleet_comes_back_at_least_every_claim_max_wait(app, admin, node_caller, clock,
                                                               cascade_settings):
    """Nothing scheduled at all: work dispatched by hand is found within claim_max_wait."""
    ten_seconds_before_a_minute(clock)
    assert empty_claim(node_caller) == 20


def test_retry_after_is_just_past_a_rate_limited_allocations_wait(app, admin, node_caller, idle,
                                                                  clock):
    dispatch(admin, idle)
    lease = claim(node_caller)[0]
    until = (clock() + timedelta(seconds=4)).isoformat().replace("+00:00", "Z")
    node_caller.post(f"/leases/{lease['lease_id']}/fail", json={
        "error": "HTTP 429", "retryable": True, "rate_limited_until": until})
    assert empty_claim(node_caller) == 5
    clock.advance(5)
    assert [l["allocation_id"] for l in claim(node_caller)] == [lease["allocation_id"]]


@pytest.mark.parametrize("cascade_settings", [{"lease_ttl": 6}])
def test_retry_after_is_just_past_another_nodes_lease_expiry(app, admin, client, node_caller,
                                                             idle, clock, cascade_settings):
    other = NodeCaller(app.test_client(), create_node_with_credentials(admin, name="other"),
                       clock=clock)
    dispatch(admin, idle)
    claim(other)
    assert empty_claim(node_caller) == 7
    clock.advance(7)
    assert len(claim(node_caller)) == 1, "the expired lease's work is claimable again"


def test_a_node_with_a_wechat_session_comes_back_sooner(app, node_caller, idle):
    """Admins' WeChat logins and account searches reach a node with its claim answers."""
    node_caller.post("/heartbeat", json={"capabilities": {
        "sources": ["rss", "wechat"], "wechat": {"session_valid": True, "expires_at": None}}})
    assert empty_claim(node_caller) == 3


def test_compat_claim_task_still_answers_without_work(node_caller, idle):
    response = node_caller.post("/claim-task", json={})
    assert response.status_code == 200
    assert response.get_json()["data"] is None


def test_a_parking_worker_reuses_its_answer_until_the_generation_moves(app, admin, client,
                                                                      node_caller, idle, clock):
    """An idle fleet's empty claims ask when work comes next many times a second: a worker
    reads it once per work generation (and second), and a move of the generation, which
    every new or returning pending allocation makes, is answered from the database."""
    client.environ_base.update({"werss.parking": True, "werss.generation": 5})
    assert empty_claim(node_caller) == 11
    with counted(app) as again:
        clock.advance(1)
        assert empty_claim(node_caller) == 10
    assert [s for s in again["statements"] if s == "SELECT allocations"] == [
        "SELECT allocations"], "only the look for work to take"

    dispatch(admin, idle)
    client.environ_base["werss.generation"] = 6  # the worker's watcher saw the dispatch
    lease = claim(node_caller)[0]
    until = (clock() + timedelta(seconds=4)).isoformat().replace("+00:00", "Z")
    node_caller.post(f"/leases/{lease['lease_id']}/fail", json={
        "error": "HTTP 429", "retryable": True, "rate_limited_until": until})
    client.environ_base["werss.generation"] = 7  # and the retry's return to the queue
    assert empty_claim(node_caller) == 5
