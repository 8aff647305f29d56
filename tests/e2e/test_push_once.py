"""Each new article is pushed once across the cascade, whichever child runs the work (issue 9)."""

from __future__ import annotations

import os
import signal

import pytest

from deploy.local_services import GrowingFeeds, article_id
from tests.support.http_callers import AdminHttp
from tests.support.processes import wait_for

pytestmark = pytest.mark.e2e

FAST_PARENT = {"WERSS_CASCADE_LEASE_TTL": "10", "WERSS_CASCADE_MAINTENANCE_INTERVAL": "1",
               "WERSS_CASCADE_HEARTBEAT_INTERVAL": "2", "WERSS_CASCADE_RETRY_BACKOFF": "1"}


def _setup(admin: AdminHttp, feeds: GrowingFeeds, name: str = "news") -> str:
    created = admin.post("/api/v1/feeds/import", json={"feeds": [
        {"mp_name": name, "source_type": "rss", "source_url": feeds.feed_url(name)}]})
    assert created.status_code == 200, created.text
    task = admin.post("/api/v1/message-tasks", json={
        "name": "push", "message_type": 1, "web_hook_url": feeds.hook_url(),
        "cron_exp": "0 0 1 1 *"})
    assert task.status_code == 201, task.text
    return task.json()["data"]["id"]


def _cycle(admin: AdminHttp, task_id: str) -> dict:
    """Dispatch the task now and wait until its run completed; return the allocation."""
    response = admin.post("/api/v1/cascade/dispatch", json={"task_id": task_id})
    assert response.status_code == 201, response.text
    return _completed(admin, response.json()["data"]["run_id"])


def _completed(admin: AdminHttp, run_id: str) -> dict:
    def completed():
        items = admin.get("/api/v1/cascade/allocations",
                          params={"run_id": run_id}).json()["data"]["items"]
        return items[0] if items and items[0]["status"] == "completed" else None

    return wait_for(completed, timeout=60, interval=0.2, what="the run to complete")


def test_two_children_push_each_new_article_once(live_parent, feeds, children):
    parent = live_parent(extra_env=FAST_PARENT)
    admin = AdminHttp.login(parent.base_url)
    task_id = _setup(admin, feeds)
    for name in ("east", "west"):
        children(parent.base_url, admin.create_node_with_credentials(name), name=name)

    runners, cycles = set(), 0
    # At least 12 cycles, and on until both children have run some: which child claims a
    # run is up to the scheduler, and the property needs runs on both.
    while cycles < 12 or (len(runners) < 2 and cycles < 40):
        feeds.grow("news", 2)
        runners.add(_cycle(admin, task_id)["leased_to"])
        cycles += 1

    tally = feeds.tally()
    expected = feeds.article_ids("news")
    assert len(expected) == 2 * cycles
    repeats = sum(count - 1 for count in tally.values())
    lost = [article_id for article_id in expected if article_id not in tally]
    assert (repeats, lost) == (0, []), feeds.pushes
    assert len(runners) == 2, "both children ran some of the cycles"
    delivery_ids = [push["delivery_id"] for push in feeds.pushes]
    assert all(delivery_ids) and len(set(delivery_ids)) == len(delivery_ids)
    sent = admin.get("/api/v1/deliveries", params={"task_id": task_id, "status": "sent",
                                                   "page_size": 200}).json()["data"]
    assert sent["total"] == len(feeds.pushes)
    sent_ids = sorted(article for d in sent["items"] for article in d["article_ids"])
    assert sent_ids == sorted(expected)


def test_a_push_cut_short_by_kill_9_is_repeated_once_with_the_same_delivery_id(
        live_parent, feeds, children):
    parent = live_parent(extra_env=FAST_PARENT)
    admin = AdminHttp.login(parent.base_url)
    task_id = _setup(admin, feeds)
    creds = admin.create_node_with_credentials("crashy")
    child = children(parent.base_url, creds, name="crashy")
    feeds.grow("news", 2)
    feeds.hook_delay = 30  # the receiver has the message; the child never hears back
    response = admin.post("/api/v1/cascade/dispatch", json={"task_id": task_id})
    assert response.status_code == 201, response.text
    assert feeds.received.wait(60), "the push reached the receiver"
    os.killpg(child.process.pid, signal.SIGKILL)
    child.process.wait()

    children(parent.base_url, creds, name="crashy")  # same data directory
    _completed(admin, response.json()["data"]["run_id"])
    first, again = feeds.pushes
    assert first["delivery_id"] == again["delivery_id"] and first["ids"] == again["ids"]
    _cycle(admin, task_id)  # later runs push nothing more
    assert len(feeds.pushes) == 2
    delivery = admin.get("/api/v1/deliveries", params={"task_id": task_id}).json()["data"]
    assert [(d["id"], d["status"]) for d in delivery["items"]] == [(first["delivery_id"], "sent")]


def test_a_child_joining_a_feed_with_history_pushes_nothing_old(live_parent, feeds,
                                                              children):
    parent = live_parent(extra_env=FAST_PARENT)
    admin = AdminHttp.login(parent.base_url)
    task_id = _setup(admin, feeds)
    first = [children(parent.base_url, admin.create_node_with_credentials(name), name=name)
             for name in ("east", "west")]
    for _ in range(3):
        feeds.grow("news", 2)
        _cycle(admin, task_id)
    assert len(feeds.tally()) == 6
    for child in first:
        child.stop()

    feeds.pushes.clear()
    newcomer = admin.create_node_with_credentials("newcomer")
    children(parent.base_url, newcomer, name="newcomer")
    allocation = _cycle(admin, task_id)
    assert allocation["leased_to"] == newcomer.node_id
    assert feeds.pushes == [], "the feed's history stays out of the chat group"
    assert allocation["results"][0]["article_count"] == 6

    feeds.grow("news", 2)
    _cycle(admin, task_id)
    assert sorted(feeds.tally()) == [article_id("news", 7), article_id("news", 8)]
