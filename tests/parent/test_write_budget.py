"""The write budget of the hot node requests, counted in SQL statements and COMMITs.

A steady heartbeat or unchanged (304) pull must not write per request: presence is kept
in memory and written in one batched UPDATE, unchanged pulls are logged once per window
and that row is kept for the same batched write, and the only write left is the nonce a signed request must consume (replays are refused
across workers and instances by the database's primary key). On SQLite a request that
writes nothing opens no transaction at all, so it never waits for the write lock
(parent/write_queue.py) and, on PostgreSQL, costs no BEGIN and COMMIT: it ends with no COMMIT.
A signed one reads whether its nonce was seen with its node, and writes the nonce last, as
one statement that commits itself: no transaction either (no BEGIN, no COMMIT).
"""

import pytest

from parent.extensions import db
from shared.timeutil import parse_iso
from parent.services import presence
from tests.conftest import create_node_with_credentials
from tests.support.sql_counting import counted
from tests.helpers import NodeCaller, NodeCredentials

BODY = {"version": "0.3.0", "hostname": "edge-1", "capacity": 4, "running": 0}


@pytest.fixture
def cascade_settings():
    return {"presence_flush_interval": 3600}  # no time-based flush inside a test


def _data(statements):
    """Statements that touch tables (not BEGIN / SAVEPOINT / pool pings)."""
    return [s for s in statements if s.split()[0] in ("SELECT", "INSERT", "UPDATE", "DELETE")
            and s != "SELECT"]


def _writes(statements):
    return [s for s in _data(statements) if not s.startswith("SELECT")]


def _reads_to_authenticate(app, mode):
    """The node by its key, and in the same read whether a signed request's nonce was seen
    (the INSERT waits for the commit: SQLite's write lock is held only for that)."""
    return ["SELECT nodes"]


@pytest.mark.parametrize("mode", ["plain", "signed"])
def test_a_steady_heartbeat_writes_nothing_but_the_nonce(app, client, node, clock, mode):
    caller = NodeCaller(client, node, clock=clock, mode=mode)
    assert caller.post("/heartbeat", json=BODY).status_code == 200  # the online edge
    clock.advance(60)
    with counted(app) as seen:
        response = caller.post("/heartbeat", json=BODY)
    assert response.status_code == 200
    assert _writes(seen["statements"]) == ([] if mode == "plain" else ["INSERT used_nonces"])
    assert _data(seen["statements"]) == _reads_to_authenticate(app, mode) + \
        _writes(seen["statements"])
    assert seen["commits"] == 0  # the nonce commits itself: no transaction to end


def test_a_heartbeat_that_reports_a_change_writes_one_update(app, client, node, clock):
    caller = NodeCaller(client, node, clock=clock, mode="plain")
    caller.post("/heartbeat", json=BODY)
    with counted(app) as seen:
        caller.post("/heartbeat", json={**BODY, "running": 3})
    assert _writes(seen["statements"]) == ["UPDATE nodes"]
    assert seen["commits"] == 1


@pytest.mark.parametrize("mode", ["plain", "signed"])
def test_an_unchanged_pull_reads_the_cursor_and_writes_only_the_nonce(app, client, node, clock,
                                                                     mode):
    """One read (the node, whether its nonce was seen, the cursor); its log row is kept for
    presence's batched flush, so even the first 304 of a window writes nothing else."""
    caller = NodeCaller(client, node, clock=clock, mode=mode)
    etag = caller.get("/feeds").headers["ETag"]
    clock.advance(60)  # the first unchanged pull of its window
    with counted(app) as seen:
        response = caller.get("/feeds", headers={"If-None-Match": etag})
    assert response.status_code == 304
    assert _writes(seen["statements"]) == ([] if mode == "plain" else ["INSERT used_nonces"])
    assert _data(seen["statements"]) == ["SELECT nodes"] + _writes(seen["statements"])
    if mode == "signed":  # the one write comes last: SQLite's lock is held briefly
        assert _data(seen["statements"])[-1] == "INSERT used_nonces"
    assert seen["commits"] == 0  # the nonce commits itself: no transaction to end


def test_unchanged_pulls_are_logged_once_per_window(admin, plain_caller, clock):
    etag = plain_caller.get("/feeds").headers["ETag"]
    for _ in range(5):
        plain_caller.get("/feeds", headers={"If-None-Match": etag})
        clock.advance(10)
    clock.advance(60)
    plain_caller.get("/feeds", headers={"If-None-Match": etag})
    items = admin.get("/api/v1/cascade/sync-logs?operation=sync_feeds").get_json()["data"]["items"]
    assert [item["status"] for item in reversed(items)] == ["success", "not_modified",
                                                            "not_modified"]


def test_signs_of_life_reach_the_database_in_one_batched_update(app, client, admin, clock):
    callers = [NodeCaller(client, create_node_with_credentials(admin, f"n{i}"), mode="plain")
               for i in range(3)]
    for caller in callers:
        caller.post("/heartbeat", json=BODY)
    clock.advance(30)
    for caller in callers:
        caller.post("/heartbeat", json=BODY)
    with app.app_context():
        with counted(app) as seen:
            assert presence.flush_presence() == 3
            db.session.commit()
        db.session.remove()
    assert _writes(seen["statements"]) == ["UPDATE nodes"]  # one executemany
    seen_at = {parse_iso(n["last_heartbeat_at"]) for n in
               admin.get("/api/v1/cascade/nodes").get_json()["data"]["items"]}
    assert seen_at == {clock()}


@pytest.mark.parametrize("mode", ["plain", "signed"])
@pytest.mark.parametrize("what", ["wrong secret", "unknown key"])
def test_a_wrong_secret_costs_no_more_reads_than_a_right_one_and_writes_nothing(
        app, client, node, clock, mode, what):
    right = NodeCaller(client, node, clock=clock, mode=mode)
    api_key = node.api_key if what == "wrong secret" else "CN" + "y" * 32
    wrong = NodeCaller(client, NodeCredentials(node.node_id, api_key, "CS" + "x" * 32),
                       clock=clock, mode=mode)
    right.post("/heartbeat", json=BODY)
    with counted(app) as good:
        assert right.post("/heartbeat", json=BODY).status_code == 200
    with counted(app) as bad:
        assert wrong.post("/heartbeat", json=BODY).status_code == 401
    assert [s for s in _data(bad["statements"]) if s.startswith("SELECT")] == ["SELECT nodes"]
    assert [s for s in _data(good["statements"]) if s.startswith("SELECT")] == \
        _reads_to_authenticate(app, mode)
    assert _writes(bad["statements"]) == [] and bad["commits"] == 0
