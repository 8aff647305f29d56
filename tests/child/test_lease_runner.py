"""The lease's execute path: upload, ask the parent what to push, push, report."""

from __future__ import annotations

import time

import pytest
from marshmallow import ValidationError

from child import errors
from child.agent import Agent
from child.cache import LocalCache
from child.client import Response
from child.collectors.base import CollectedArticle
from child.config import load_config
from child.lease_runner import LeaseWork, repair_url
from child.notifiers.base import NotifyError
from shared.lease_schemas import ArticleSchema

KEY, SECRET = "CN" + "a" * 32, "CS" + "b" * 32
FEED = {"id": "feed-1", "mp_name": "f", "source_type": "rss",
        "source_url": "http://127.0.0.1:1/f.xml"}
TASK = {"id": "task-1", "name": "t", "message_type": 1, "web_hook_url": "http://127.0.0.1:1/h"}


class FakeParent:
    """Answers uploads as the parent's schema judges each article; plans as told."""

    def __init__(self, plan=None):
        self.writes: list[tuple[str, dict]] = []
        self.plan = plan
        self.plan_calls = 0

    def send_write(self, method, route, body, key, retry=None):
        self.writes.append((route, body))
        if route != "/articles":
            return Response(200, {}, {}, None)
        refused = []
        for index, article in enumerate(body["articles"]):
            try:
                ArticleSchema().load(article)
            except ValidationError as exc:
                refused.append({"index": index, "id": article["id"], "errors": exc.messages})
        return Response(200, {"received": len(body["articles"]),
                              "new": len(body["articles"]) - len(refused),
                              "refused": refused}, {}, None)

    def plan_deliveries(self, lease_id, feed_id, article_ids, key, retry=None):
        self.plan_calls += 1
        if isinstance(self.plan, Exception):
            raise self.plan
        return self.plan or {"first_run": False, "deliveries": [
            {"delivery_id": "d-1", "article_ids": list(article_ids), "attempts": 0,
             "articles": []}]}

    def routes(self, prefix):
        return [body for route, body in self.writes if route.startswith(prefix)]


class FakeNotifier:
    def __init__(self, failures=()):
        self.failures = list(failures)
        self.pushes = []

    def push(self, task, feed, articles, *, delivery_id=None):
        self.pushes.append((delivery_id, [a.id for a in articles]))
        if self.failures:
            raise self.failures.pop(0)
        return len(articles)


def article(ident, url):
    return CollectedArticle.fitted(id=ident, mp_id="feed-1", title=ident, url=url,
                                   publish_time=1764300000)


@pytest.fixture
def make_agent(tmp_path):
    made = []

    def make(parent, notifier, articles, sleep=lambda seconds: None):
        config = load_config(environ={"CASCADE_PARENT_URL": "http://127.0.0.1:1",
                                      "CASCADE_API_KEY": KEY, "CASCADE_API_SECRET": SECRET,
                                      "CASCADE_DATA_DIR": str(tmp_path)})

        class Collector:
            def collect(self, feed):
                return articles

        agent = Agent(config, client=parent, cache=LocalCache(tmp_path),
                      collector_factory=lambda source_type: Collector(),
                      notifier_factory=lambda task: notifier, sleep=sleep)
        made.append(agent)
        return agent

    yield make
    for agent in made:
        agent.close()


def work(ttl=600.0):
    lease = {"lease_id": "lease-1", "allocation_id": "a-1", "task": TASK, "feeds": [FEED],
             "expires_at": "2099-01-01T00:00:00Z"}
    return LeaseWork(lease, time.time(), time.time() + ttl)


def results(parent):
    body, = parent.routes("/leases/lease-1/complete")
    return body["results"]


@pytest.mark.parametrize("raw, repaired", [
    ("http://example.com/x y", "http://example.com/x%20y"),
    ("https://例子.测试/文章?q=一 二#段", "https://xn--fsqu00a.xn--0zwm56d/%E6%96%87%E7%AB%A0"
                                         "?q=%E4%B8%80%20%E4%BA%8C#%E6%AE%B5"),
    ("https://mp.weixin.qq.com/s?__biz=MzA&mid=1#rd",
     "https://mp.weixin.qq.com/s?__biz=MzA&mid=1#rd"),
    ("http://example.com/already%20encoded", "http://example.com/already%20encoded"),
])
def test_links_are_mended_where_percent_encoding_can(raw, repaired):
    assert repair_url(raw) == repaired


def test_a_bad_link_is_mended_or_named_and_the_rest_is_stored_and_pushed(make_agent):
    """Issue 8.1: one bad link made the whole batch fail, silently, yet counted as pushed."""
    parent, notifier = FakeParent(), FakeNotifier()
    agent = make_agent(parent, notifier, [
        article("good", "https://example.com/a"),
        article("spaced", "http://example.com/x y"),
        article("hopeless", "http://exa mple.com/x y")])
    agent.execute(work())
    uploaded, = parent.routes("/articles")
    assert [a["url"] for a in uploaded["articles"]] == [
        "https://example.com/a", "http://example.com/x%20y", "http://exa%20mple.com/x%20y"]
    result, = results(parent)
    assert (result["article_count"], result["new_count"], result["success"]) == (3, 2, True)
    assert [item["id"] for item in result["refused"]] == ["hopeless"]
    assert result["refused"][0]["reason"].startswith("url:")


def test_a_push_is_retried_within_the_run_then_reported_sent(make_agent):
    parent = FakeParent()
    notifier = FakeNotifier([NotifyError("busy", retryable=True, retry_after=2)])
    sleeps = []
    agent = make_agent(parent, notifier, [article("a1", "https://example.com/1")],
                       sleep=sleeps.append)
    agent.execute(work())
    assert notifier.pushes == [("d-1", ["a1"]), ("d-1", ["a1"])]
    assert sleeps == [2]
    assert parent.routes("/deliveries/d-1/report") == [{"status": "sent", "attempts": 2}]
    assert results(parent)[0]["pushed_count"] == 1


def test_a_refused_push_is_reported_failed_once_with_the_vendor_code(make_agent):
    parent = FakeParent()
    notifier = FakeNotifier([NotifyError("sign not match", vendor_code="310000")])
    agent = make_agent(parent, notifier, [article("a1", "https://example.com/1")])
    agent.execute(work())
    report, = parent.routes("/deliveries/d-1/report")
    assert (report["status"], report["attempts"], report["retryable"],
            report["vendor_code"]) == ("failed", 1, False, "310000")
    result, = results(parent)
    assert not result["success"] and "sign not match" in result["error"]


def test_a_delivery_another_child_left_is_pushed_from_the_parents_copy(make_agent):
    left = {"delivery_id": "d-old", "article_ids": ["gone"], "attempts": 1, "articles": [
        {"id": "gone", "mp_id": "feed-1", "title": "t", "url": "https://example.com/g",
         "pic_url": "", "description": "", "publish_time": 1}]}
    parent = FakeParent(plan={"first_run": False, "deliveries": [left]})
    notifier = FakeNotifier()
    agent = make_agent(parent, notifier, [])
    agent.execute(work())
    assert notifier.pushes == [("d-old", ["gone"])]


def test_nothing_is_pushed_when_the_parent_cannot_say_what_is_new(make_agent):
    parent = FakeParent(plan=errors.ParentUnavailableError("down"))
    notifier = FakeNotifier()
    agent = make_agent(parent, notifier, [article("a1", "https://example.com/1")])
    agent.cache.set_validators(f"task:{TASK['id']} {FEED['source_url']}", '"etag"', None)
    agent.execute(work(ttl=0.5))
    assert notifier.pushes == []
    result, = results(parent)
    assert not result["success"] and "push deferred" in result["error"]
    assert agent.cache.validators(f"task:{TASK['id']} {FEED['source_url']}") == (None, None)
