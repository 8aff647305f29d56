"""Two `werss-parent serve` instances on one PostgreSQL, children split and switching between
them: replays refused across instances, presence shared, housekeeping and cron runs done
once, and no allocation leased twice under 50 claimers."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from sqlalchemy import create_engine, text

from tests.e2e.test_concurrent_claims import FEEDS, NODES, THREADS_PER_NODE, _seed_work
from tests.helpers import assert_error
from tests.support.http_callers import AdminHttp, NodeHttp

pytestmark = pytest.mark.e2e

FAST = {"WERSS_CASCADE_MAINTENANCE_INTERVAL": "1", "WERSS_CASCADE_HEARTBEAT_INTERVAL": "1",
        "WERSS_CASCADE_PRESENCE_FLUSH_INTERVAL": "1",
        "WERSS_CASCADE_MIN_CRON_INTERVAL": "1"}  # a task due every 2 s


@pytest.fixture
def two_parents(live_parent, db_backend):
    if db_backend != "postgresql":
        pytest.skip("several parent instances share one PostgreSQL; SQLite serves one host")
    return live_parent(workers=2, extra_env=FAST), live_parent(workers=2, extra_env=FAST)


def _query(db_url, sql, **params):
    engine = create_engine(db_url)
    try:
        with engine.connect() as connection:
            return connection.execute(text(sql), params).all()
    finally:
        engine.dispose()


def _wait(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    return predicate()


def test_replays_presence_housekeeping_and_cron_across_two_instances(two_parents, db_url):
    a, b = two_parents
    admin_a, admin_b = AdminHttp.login(a.base_url), AdminHttp.login(b.base_url)
    creds = admin_a.create_node_with_credentials("roaming")
    on_a = NodeHttp(a.base_url, creds)

    # A request accepted by one instance is a replay at the other.
    prepared = on_a.prepare("POST", "/heartbeat", json={})
    assert on_a.send(prepared).status_code == 200
    assert_error(_resend(prepared, b.base_url, a.base_url), 401, "replayed_request")

    # Presence recorded by A is what B shows; the offline edge is logged once.
    node = admin_b.get(f"/api/v1/cascade/nodes/{creds.node_id}").json()["data"]
    assert node["status"] == "online"
    offline = _wait(lambda: _query(
        db_url, "SELECT count(*) FROM sync_logs WHERE node_id = :n AND operation = 'node_offline'",
        n=creds.node_id)[0][0])
    time.sleep(2.5)  # more sweeps by all four workers
    assert offline == 1 and _query(
        db_url, "SELECT count(*) FROM sync_logs WHERE node_id = :n AND operation = 'node_offline'",
        n=creds.node_id)[0][0] == 1
    assert admin_a.get(f"/api/v1/cascade/nodes/{creds.node_id}").json()["data"]["status"] == \
        "offline"

    # A task due every 2 s: each slot gets one run with one allocation per feed.
    feed = admin_b.post("/api/v1/feeds", json={"mp_name": "f", "source_type": "rss",
                                               "source_url": "http://127.0.0.1:9/f.xml"})
    assert feed.status_code == 201, feed.text
    task = admin_a.post("/api/v1/message-tasks", json={
        "name": "often", "cron_exp": "*/2 * * * * *", "web_hook_url": "http://127.0.0.1:9/h"})
    assert task.status_code == 201, task.text
    task_id = task.json()["data"]["id"]
    runs = _wait(lambda: len(_query(db_url, "SELECT id FROM task_runs WHERE task_id = :t",
                                    t=task_id)) >= 3)
    assert runs, "cron slots were materialised"
    admin_a.request("PUT", f"/api/v1/message-tasks/{task_id}", json={"status": 0})
    per_slot = _query(db_url, "SELECT slot, count(*) FROM task_runs WHERE task_id = :t "
                              "GROUP BY slot HAVING count(*) > 1", t=task_id)
    per_run = _query(db_url, "SELECT run_id, count(*) FROM allocations WHERE task_id = :t "
                             "GROUP BY run_id HAVING count(*) > 1", t=task_id)
    assert per_slot == [] and per_run == []
    admin_a.close()
    admin_b.close()


def _resend(prepared, to_base: str, from_base: str):
    """The exact same signed request (same nonce), sent to the other instance."""
    copy = prepared.copy()
    copy.url = prepared.url.replace(from_base, to_base, 1)
    return NodeHttp.send(copy)


def test_fifty_claimers_split_across_two_instances_lease_each_allocation_once(two_parents,
                                                                             db_url):
    a, b = two_parents
    admin = AdminHttp.login(a.base_url)
    bases = [a.base_url, b.base_url]
    claimers = []
    for index in range(NODES):
        creds = admin.create_node_with_credentials(name=f"claimer-{index}")
        admin.request("PUT", f"/api/v1/cascade/nodes/{creds.node_id}", json={"capacity": 100})
        claimers.append(creds)
    _seed_work(admin)
    claimed, errors = [], []

    def claim_loop(creds, start: int):
        # Each claimer alternates instances, as a child behind a balancer would.
        turn, empty = start, 0
        while empty < 3:
            node = NodeHttp(bases[turn % 2], creds)
            turn += 1
            response = node.post("/claim", json={"max": 2, "wait": 0})
            if response.status_code == 204:
                empty += 1
                continue
            if response.status_code != 200:
                errors.append((response.status_code, response.text))
                return
            for lease in response.json()["data"]["leases"]:
                claimed.append(lease["allocation_id"])
                other = NodeHttp(bases[turn % 2], creds)
                done = other.post(f"/leases/{lease['lease_id']}/complete",
                                  json={"results": [{"mp_id": lease["feeds"][0]["id"],
                                                     "success": True}]})
                if done.status_code != 200:
                    errors.append((done.status_code, done.text))

    threads = [threading.Thread(target=claim_loop, args=(creds, t))
               for creds in claimers for t in range(THREADS_PER_NODE)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    counts = Counter(claimed)
    assert len(counts) == FEEDS and max(counts.values()) == 1
    assert _query(db_url, "SELECT allocation_id FROM leases GROUP BY allocation_id "
                          "HAVING count(*) > 1") == []
    assert dict(_query(db_url, "SELECT status, count(*) FROM allocations GROUP BY status")) == \
        {"completed": FEEDS}
    admin.close()
