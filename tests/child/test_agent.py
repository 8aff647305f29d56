"""The agent against the real parent app in this process, through its collector and notifier seams."""

from __future__ import annotations

import pytest

from child.agent import FatalError
from child.collectors.base import CollectedArticle, CollectError
from shared import sources

FEED_URL = "http://feeds.invalid/news.xml"
HOOK_URL = "http://hooks.invalid/hook"


class FakeCollector:
    """Collects the articles a test sets, or raises what it sets."""

    def __init__(self):
        self.articles: list[CollectedArticle] = []
        self.error: Exception | None = None
        self.collected: list[str] = []

    def collect(self, feed: dict) -> list[CollectedArticle]:
        self.collected.append(feed["id"])
        if self.error:
            raise self.error
        return [CollectedArticle.fitted(**{**vars(a), "mp_id": feed["id"]})
                for a in self.articles]


class FakeNotifier:
    def __init__(self):
        self.pushes: list[tuple[str, list[str]]] = []

    def push(self, task, feed, articles, *, delivery_id=None):
        self.pushes.append((delivery_id, [a.id for a in articles]))
        return len(articles)


@pytest.fixture
def collector():
    fake = FakeCollector()
    fake.articles = [CollectedArticle.fitted(
        id=f"https://news.invalid/{n}", mp_id="", title=f"post {n}",
        url=f"https://news.invalid/{n}", publish_time=1764300000 + n) for n in (1, 2)]
    return fake


@pytest.fixture
def notifier():
    return FakeNotifier()


def _dispatched_task(admin) -> str:
    created = admin.post("/api/v1/feeds/import", json={"feeds": [
        {"mp_name": "news", "source_type": "rss", "source_url": FEED_URL}]})
    assert created.status_code == 200, created.get_json()
    task = admin.post("/api/v1/message-tasks", json={
        "name": "push", "message_type": 1, "web_hook_url": HOOK_URL, "cron_exp": "0 0 1 1 *",
        "push_newest": 10})
    assert task.status_code == 201, task.get_json()
    response = admin.post("/api/v1/cascade/dispatch", json={"task_id": task.get_json()["data"]["id"]})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["data"]["run_id"]


def _allocation(admin, run_id: str) -> dict:
    items = admin.get("/api/v1/cascade/allocations",
                      query_string={"run_id": run_id}).get_json()["data"]["items"]
    assert len(items) == 1
    return items[0]


def test_one_cycle_collects_pushes_and_completes_the_lease_on_the_parent(
        make_agent, admin, node, collector, notifier):
    run_id = _dispatched_task(admin)
    agent = make_agent(collector_factory=lambda source_type: collector,
                       notifier_factory=lambda task: notifier)

    summary = agent.run_once()

    assert (summary["leases"], summary["cached_feeds"], summary["outbox"]) == (1, 1, 0)
    allocation = _allocation(admin, run_id)
    assert (allocation["status"], allocation["leased_to"]) == ("completed", node.node_id)
    [result] = allocation["results"]
    assert (result["article_count"], result["new_count"], result["pushed_count"],
            result["success"]) == (2, 2, 2, True)
    [(delivery_id, pushed)] = notifier.pushes
    assert delivery_id and sorted(pushed) == [a.id for a in collector.articles]
    stored = admin.get("/api/v1/articles").get_json()["data"]
    assert stored["total"] == 2


def test_a_second_cycle_pushes_nothing_already_pushed(make_agent, admin, collector,
                                                      notifier):
    _dispatched_task(admin)
    agent = make_agent(collector_factory=lambda source_type: collector,
                       notifier_factory=lambda task: notifier)
    agent.run_once()
    task_id = admin.get("/api/v1/message-tasks").get_json()["data"]["items"][0]["id"]
    run_id = admin.post("/api/v1/cascade/dispatch",
                        json={"task_id": task_id}).get_json()["data"]["run_id"]

    agent.run_once()

    assert len(notifier.pushes) == 1
    assert _allocation(admin, run_id)["results"][0]["pushed_count"] == 0


def test_a_collector_that_cannot_go_on_fails_the_lease_for_a_retry(make_agent, admin,
                                                                   collector, notifier):
    run_id = _dispatched_task(admin)
    collector.error = CollectError("the source is broken for now", action="fail")
    agent = make_agent(collector_factory=lambda source_type: collector,
                       notifier_factory=lambda task: notifier)

    assert agent.run_once()["outbox"] == 0

    allocation = _allocation(admin, run_id)
    assert allocation["status"] != "completed" and allocation["status"] != "leased"
    assert "the source is broken for now" in (allocation["last_error"] or "")
    assert notifier.pushes == []


def test_the_heartbeat_announces_every_registered_collector(make_agent, admin, node,
                                                            monkeypatch):
    monkeypatch.setitem(sources.REGISTRY, "atom", sources.Source("child.collectors.rss:build"))
    make_agent().heartbeat()

    shown = admin.get(f"/api/v1/cascade/nodes/{node.node_id}").get_json()["data"]
    assert sorted(shown["capabilities"]["sources"]) == ["atom", "rss", "wechat"]


def test_a_disabled_node_stops_the_agent_with_a_clear_message(make_agent, admin, node):
    admin.put(f"/api/v1/cascade/nodes/{node.node_id}", json={"is_active": False})
    agent = make_agent()

    with pytest.raises(FatalError, match="disabled"):
        agent.run()
    assert agent.stop_event.is_set()


def test_the_status_shows_the_last_contact_and_an_empty_outbox(make_agent, clock):
    agent = make_agent()
    before = agent.status()
    agent.sync_once()
    after = agent.status()

    assert before.last_contact_at is None
    assert after.last_contact_at == clock.timestamp()
    assert (after.leases_held, after.outbox_depth, after.draining) == (0, 0, False)
