"""The SQL budget of a claim, counted in statements and COMMITs (never timed).

A claim first looks whether there is anything to take (a plain read: an empty claim, what an
idle fleet sends, opens no transaction and commits nothing). A claim that finds work then
runs one SELECT of allocations (candidates, the node's held count, the runs' slots and the
change-log cursor together), one guarded UPDATE ... RETURNING for every allocation it takes,
one INSERT of the leases (on PostgreSQL, one statement does both) and one read of their
feeds. A claim with an Idempotency-Key (every
child's) has opened its write transaction before the claim runs, so it skips the look. It looks for
expired leases only when one can have expired, and a task's wire values come from the
process's copy while the change log says they are unchanged.
"""

import pytest

from parent.extensions import db
from shared.envelope import IDEMPOTENCY_HEADER
from parent.models import Allocation
from tests.conftest import create_node_with_credentials
from tests.support.sql_counting import counted
from tests.helpers import NodeCaller

# What the claim itself may run; authentication, the nonce and the idempotency record
# come on top (tests/parent/test_write_budget.py holds those). On PostgreSQL the guarded
# UPDATE and the leases' INSERT are one statement (a data-modifying CTE).
TAKE = {"sqlite": ["UPDATE allocations", "INSERT leases"],
        "postgresql": ["INSERT leases (WITH UPDATE allocations)"]}
WORK_TABLES = {"allocations", "leases", "feeds", "message_tasks", "task_runs", "change_log"}


def claim_statements(app) -> list[str]:
    with app.app_context():
        dialect = db.engine.dialect.name
    return ["SELECT allocations", "SELECT allocations", *TAKE[dialect], "SELECT feeds"]


def work_statements(seen) -> list[str]:
    return [s for s in seen["statements"] if (s.split() + [""])[1] in WORK_TABLES]


def make_work(admin, feeds: int, name: str = "collect") -> str:
    for index in range(feeds):
        response = admin.post("/api/v1/feeds", json={
            "mp_name": f"{name}{index}", "source_type": "rss",
            "source_url": f"http://127.0.0.1:1/{name}{index}.xml"})
        assert response.status_code == 201, response.get_json()
    task = admin.post("/api/v1/message-tasks", json={
        "name": name, "cron_exp": "0 0 1 1 *", "web_hook_url": "https://example.com/hook-1"})
    assert task.status_code == 201, task.get_json()
    task_id = task.get_json()["data"]["id"]
    run = admin.post("/api/v1/cascade/dispatch", json={"task_id": task_id})
    assert run.status_code == 201, run.get_json()
    return task_id


def claim(caller, max_count: int = 1, key: str | None = None) -> list[dict]:
    headers = {IDEMPOTENCY_HEADER: key} if key else None
    response = caller.post("/claim", json={"max": max_count, "wait": 0}, headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]["leases"]


@pytest.mark.parametrize("max_count", [1, 3])
def test_a_claim_runs_one_select_one_update_one_insert_and_its_feeds(app, admin, node_caller,
                                                                     max_count):
    make_work(admin, 8)
    claim(node_caller)  # the first claim of a process looks at expiry, schedule and task
    with counted(app) as seen:
        leases = claim(node_caller, max_count)
    assert len(leases) == max_count
    assert work_statements(seen) == claim_statements(app)
    assert seen["commits"] == 1


def test_a_claim_with_an_idempotency_key_reads_its_candidates_once(app, admin, node_caller,
                                                                   clock):
    make_work(admin, 3)
    claim(node_caller)  # the first claim of a process looks at expiry, schedule and task
    # A child's claim carries a key: its write transaction is open before the claim runs
    # (the key's lock), so looking first would only add a read.
    with counted(app) as seen:
        leases = claim(node_caller, key="claim-1")
    assert len(leases) == 1
    assert work_statements(seen) == claim_statements(app)[1:]
    assert seen["commits"] == 1
    # Its retry is answered from the record; the last allocation is still there to take.
    clock.advance(1)
    assert claim(node_caller, key="claim-1") == leases
    assert len(claim(node_caller, key="claim-2")) == 1
    # With nothing left, a keyed claim is still told so (204), and takes nothing.
    clock.advance(1)
    with counted(app) as seen:
        empty = node_caller.post("/claim", json={"max": 1, "wait": 0},
                                 headers={IDEMPOTENCY_HEADER: "claim-3"})
    assert empty.status_code == 204
    assert work_statements(seen).count("SELECT allocations") == 1
    assert not [s for s in work_statements(seen) if not s.startswith("SELECT")]


def test_each_allocation_of_a_claim_records_the_lease_it_was_given(app, admin, node_caller):
    make_work(admin, 8)
    # The UPDATE that takes several allocations is built once and bound by position: each
    # allocation must name the lease the node was told about, not a neighbour's.
    for count in (3, 2, 3):
        leases = claim(node_caller, count)
        assert len(leases) == count
        with app.app_context():
            for lease in leases:
                allocation = db.session.get(Allocation, lease["allocation_id"])
                assert (allocation.status, allocation.current_lease_id, allocation.attempt) == (
                    "leased", lease["lease_id"], lease["attempt"])
        for lease in leases:
            done = node_caller.post(f"/leases/{lease['lease_id']}/complete", json={"results": []})
            assert done.status_code == 200, done.get_json()


def test_an_empty_claim_reads_once_and_opens_no_transaction(app, admin, node_caller, clock):
    make_work(admin, 1)
    other = NodeCaller(node_caller.client, create_node_with_credentials(admin, name="other"),
                       clock=clock)
    claim(other)  # takes the only allocation
    node_caller.post("/claim", json={"max": 1, "wait": 0})  # the first claim looks around
    with counted(app) as seen:
        for _ in range(3):
            clock.advance(1)
            assert node_caller.post("/claim", json={"max": 1, "wait": 0}).status_code == 204
    assert work_statements(seen) == ["SELECT allocations"] * 3
    # Only the signed requests' nonces were written, each alone: no transaction to commit.
    assert [s for s in seen["statements"] if not s.startswith("SELECT")] == [
        "INSERT used_nonces"] * 3
    assert seen["commits"] == 0


def test_claims_in_a_row_do_not_look_for_expired_leases(app, admin, node_caller, clock):
    make_work(admin, 4)
    claim(node_caller)
    with counted(app) as seen:
        for _ in range(2):
            clock.advance(1)
            claim(node_caller)
    assert work_statements(seen) == claim_statements(app) * 2


def test_an_expired_lease_goes_to_the_next_claimer_without_housekeeping(app, admin, client,
                                                                       node_caller, clock):
    make_work(admin, 1)
    first = claim(node_caller)[0]
    other = NodeCaller(client, create_node_with_credentials(admin, name="other"), clock=clock)
    assert other.post("/claim", json={"max": 1, "wait": 0}).status_code == 204
    clock.advance(601)  # past the lease TTL (600 s)
    taken = claim(other)
    assert [lease["allocation_id"] for lease in taken] == [first["allocation_id"]]
    assert taken[0]["attempt"] == 2
    with app.app_context():
        allocation = db.session.get(Allocation, first["allocation_id"])
        assert (allocation.status, allocation.current_lease_id) == ("leased",
                                                                   taken[0]["lease_id"])


def test_a_task_edited_between_claims_reaches_the_next_lease(app, admin, node_caller, db_url,
                                                             clock):
    from parent import create_app
    from tests.conftest import base_config

    task_id = make_work(admin, 4)
    assert claim(node_caller)[0]["task"]["web_hook_url"] == "https://example.com/hook-1"
    # Another worker (or parent instance) on the same database edits the task.
    other = create_app(base_config(db_url), clock=clock, environ={})
    try:
        from parent.services import message_tasks

        with other.app_context():
            message_tasks.update_task(task_id, {"web_hook_url": "https://example.com/hook-2"})
            db.session.commit()
    finally:
        with other.app_context():
            db.session.remove()
            db.engine.dispose()
    assert claim(node_caller)[0]["task"]["web_hook_url"] == "https://example.com/hook-2"


def test_a_node_at_capacity_gets_nothing_and_leaves_the_work_to_others(admin, client,
                                                                      node_caller, clock):
    make_work(admin, 6)
    held = claim(node_caller, 4)  # the default capacity
    assert node_caller.post("/claim", json={"max": 2, "wait": 0}).status_code == 204
    other = NodeCaller(client, create_node_with_credentials(admin, name="other"), clock=clock)
    rest = claim(other, 4)
    assert len(rest) == 2
    assert {lease["allocation_id"] for lease in held}.isdisjoint(
        lease["allocation_id"] for lease in rest)
