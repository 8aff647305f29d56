"""The outbox against the real parent app in this process: stored first, sent until it lands."""

from __future__ import annotations

import pytest

from child.cache import LocalCache
from child.client import ParentClient, new_idempotency_key
from child.config import load_config
from child.outbox import Outbox
from tests.support.in_process_parent import InProcessParent, parent_session



@pytest.fixture
def parent(app):
    return InProcessParent(app)


@pytest.fixture
def client(parent, node, clock, tmp_path):
    config = load_config(environ={
        "CASCADE_PARENT_URL": "http://parent.invalid", "CASCADE_API_KEY": node.api_key,
        "CASCADE_API_SECRET": node.api_secret, "CASCADE_DATA_DIR": str(tmp_path)})
    return ParentClient(config, session=parent_session(parent), clock=clock.timestamp,
                        sleep=lambda seconds: None)


@pytest.fixture
def cache(tmp_path):
    local = LocalCache(tmp_path)
    yield local
    local.close()


@pytest.fixture
def outbox(cache, client):
    return Outbox(cache, client)


@pytest.fixture
def lease(admin, client) -> dict:
    """One lease of a one-feed task, claimed by the node."""
    created = admin.post("/api/v1/feeds/import", json={"feeds": [
        {"mp_name": "news", "source_type": "rss", "source_url": "http://feeds.invalid/n.xml"}]})
    assert created.status_code == 200, created.get_json()
    task = admin.post("/api/v1/message-tasks", json={
        "name": "push", "message_type": 1, "web_hook_url": "http://hooks.invalid/h",
        "cron_exp": "0 0 1 1 *"})
    assert task.status_code == 201, task.get_json()
    dispatched = admin.post("/api/v1/cascade/dispatch",
                            json={"task_id": task.get_json()["data"]["id"]})
    assert dispatched.status_code == 201, dispatched.get_json()
    [claimed] = client.claim(1, 0, new_idempotency_key())
    return claimed


def _allocation(admin) -> dict:
    [item] = admin.get("/api/v1/cascade/allocations").get_json()["data"]["items"]
    return item


def _results(lease: dict) -> list[dict]:
    feed = lease["feeds"][0]
    return [{"mp_id": feed["id"], "mp_name": feed["mp_name"], "article_count": 0,
             "new_count": 0, "pushed_count": 0, "success": True, "error": None, "refused": []}]


def test_a_lease_handed_back_goes_to_another_claim_unspent(outbox, admin, lease):
    outbox.fail(lease["lease_id"], "child shutting down", release=True)

    assert outbox.drain() == 1
    allocation = _allocation(admin)
    assert (allocation["status"], allocation["leased_to"]) == ("pending", None)
    assert (lease["attempt"], allocation["attempt"]) == (1, 0), "the attempt is given back"
    assert allocation["last_error"] == "child shutting down"


def test_a_completion_waits_while_the_parent_is_down_then_lands_once(outbox, parent, admin,
                                                                      lease):
    outbox.complete(lease["lease_id"], _results(lease))
    parent.down = True
    assert outbox.drain() == 0
    assert outbox.depth() == 1

    parent.down = False
    assert outbox.drain() == 1
    assert outbox.depth() == 0
    assert _allocation(admin)["status"] == "completed"
    sent = [call for call in parent.calls if call[1].endswith("/complete")]
    assert [status for _, _, status in sent] == [200]


def test_a_refused_entry_is_set_aside_and_what_follows_still_lands(outbox, cache, admin,
                                                                   lease):
    outbox.fail("no-such-lease", "stale", release=True)
    outbox.complete(lease["lease_id"], _results(lease))

    assert outbox.drain() == 2
    assert cache.outbox_depth() == {"rejected": 1}
    assert _allocation(admin)["status"] == "completed"


def test_articles_of_a_lease_lost_before_upload_are_stored_without_it(outbox, cache, admin,
                                                                      lease):
    outbox.complete(lease["lease_id"], _results(lease))
    outbox.drain()
    article = {"id": "https://news.invalid/1", "mp_id": lease["feeds"][0]["id"],
               "title": "post 1", "url": "https://news.invalid/1", "pic_url": "",
               "description": "", "publish_time": 1764300001}
    outbox.add("articles", "POST", "/articles",
               {"lease_id": lease["lease_id"], "articles": [article]}, new_idempotency_key())

    outbox.drain()
    outbox.drain()

    assert outbox.depth() == 0
    assert admin.get("/api/v1/articles").get_json()["data"]["total"] == 1
