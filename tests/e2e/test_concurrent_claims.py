"""Many claimers against real gunicorn workers: no allocation leased twice, none lost."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from sqlalchemy import create_engine, text

from tests.support.http_callers import AdminHttp, NodeHttp

pytestmark = pytest.mark.e2e

NODES = 10
THREADS_PER_NODE = 5  # 50 concurrent claimers
FEEDS = 150


def _seed_work(admin: AdminHttp) -> None:
    feeds = [{"mp_name": f"feed {i}", "source_type": "rss",
              "source_url": f"http://127.0.0.1:9/feed-{i}.xml"} for i in range(FEEDS)]
    response = admin.post("/api/v1/feeds/import", json={"feeds": feeds})
    assert response.status_code == 200 and response.json()["data"]["created"] == FEEDS
    task = admin.post("/api/v1/message-tasks", json={"name": "all", "cron_exp": "0 0 1 1 *"})
    assert task.status_code == 201, task.text
    run = admin.post("/api/v1/cascade/dispatch", json={"task_id": task.json()["data"]["id"]})
    assert run.status_code == 201 and len(run.json()["data"]["allocations"]) == FEEDS


def _claimer(node: NodeHttp, claimed: list, errors: list, stop_after_empty: int = 3) -> None:
    empty = 0
    while empty < stop_after_empty:
        response = node.post("/claim", json={"max": 2, "wait": 0})
        if response.status_code == 204:
            empty += 1
            continue
        if response.status_code != 200:
            errors.append((response.status_code, response.text))
            return
        for lease in response.json()["data"]["leases"]:
            claimed.append((lease["allocation_id"], node.creds.node_id))
            feed_id = lease["feeds"][0]["id"]
            done = node.post(f"/leases/{lease['lease_id']}/complete",
                             json={"results": [{"mp_id": feed_id, "success": True}]})
            if done.status_code != 200:
                errors.append((done.status_code, done.text))


def test_fifty_concurrent_claimers_share_work_exactly_once(live_parent, db_url):
    parent = live_parent(workers=4)
    admin = AdminHttp.login(parent.base_url)
    nodes = []
    for index in range(NODES):
        creds = admin.create_node_with_credentials(name=f"claimer-{index}")
        admin.request("PUT", f"/api/v1/cascade/nodes/{creds.node_id}", json={"capacity": 100})
        nodes.append(NodeHttp(parent.base_url, creds))
    _seed_work(admin)

    claimed, errors = [], []
    threads = [threading.Thread(target=_claimer, args=(node, claimed, errors))
               for node in nodes for _ in range(THREADS_PER_NODE)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads), "claimers did not finish"
    assert errors == []

    counts = Counter(allocation_id for allocation_id, _ in claimed)
    assert len(counts) == FEEDS, "every allocation was handed out"
    assert max(counts.values()) == 1, "no allocation was ever leased twice"
    assert len({node_id for _, node_id in claimed}) > 1, "the work was shared"

    engine = create_engine(db_url)
    with engine.connect() as connection:
        statuses = dict(connection.execute(text(
            "SELECT status, count(*) FROM allocations GROUP BY status")).all())
        leases = connection.execute(text(
            "SELECT allocation_id, count(*) FROM leases GROUP BY allocation_id "
            "HAVING count(*) > 1")).all()
    engine.dispose()
    assert statuses == {"completed": FEEDS}
    assert leases == []
    admin.close()
