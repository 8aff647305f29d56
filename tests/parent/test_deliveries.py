"""Push each new article once: delivery plans, reports, retries and the admin's view."""

import pytest

from tests.conftest import create_node_with_credentials
from tests.helpers import NodeCaller, assert_error
from tests.parent.test_leasing import claim_all, dispatch, make_feeds, make_task

pytestmark = pytest.mark.usefixtures("app")
HOOK = "https://hooks.example.com/h/tok3n-s3cret"


@pytest.fixture
def cascade_settings():
    return {"delivery_max_attempts": 3, "delivery_retry_backoff": 60}


@pytest.fixture
def feed(admin):
    return make_feeds(admin, 1)[0]


@pytest.fixture
def task_id(admin, feed):
    return make_task(admin, message_type=1, web_hook_url=HOOK,
                     mps_id=[{"id": feed, "mp_name": "f0"}])


def article(feed_id, ident, publish_time):
    return {"id": ident, "mp_id": feed_id, "title": ident, "url": f"http://x/{ident}",
            "publish_time": publish_time}


def run(admin, caller, task_id):
    dispatch(admin, task_id)
    leases = [l for l in claim_all(caller) if l["task"]["id"] == task_id]
    assert len(leases) == 1
    return leases[0]


def collect(caller, lease, articles):
    response = caller.post("/articles", json={"lease_id": lease["lease_id"],
                                              "articles": articles})
    assert response.status_code == 200, response.get_json()


def plan(caller, lease, ids, expect=200):
    response = caller.post(f"/leases/{lease['lease_id']}/deliveries",
                           json={"feed_id": lease["feeds"][0]["id"], "article_ids": ids})
    assert response.status_code == expect, response.get_json()
    return response.get_json()["data"]


def report(caller, delivery_id, expect=200, **body):
    response = caller.post(f"/deliveries/{delivery_id}/report", json={"status": "sent", **body})
    assert response.status_code == expect, response.get_json()
    return response.get_json()["data"] if expect == 200 else response


def complete(caller, lease):
    assert caller.post(f"/leases/{lease['lease_id']}/complete",
                       json={"results": []}).status_code == 200


@pytest.fixture
def other(admin, client, clock):
    return NodeCaller(client, create_node_with_credentials(admin, name="other"), clock=clock)


def test_first_run_pushes_only_articles_published_after_the_feed_joined(
        admin, node_caller, clock, feed, task_id):
    lease = run(admin, node_caller, task_id)
    joined = clock.timestamp()
    collect(node_caller, lease, [article(feed, "old", joined - 3600),
                                 article(feed, "new", joined + 60)])
    data = plan(node_caller, lease, ["new", "old", "never-uploaded"])
    assert data["first_run"] is True
    assert [(d["article_ids"], [a["title"] for a in d["articles"]]) for d in data["deliveries"]] \
        == [(["new"], ["new"])]


def test_push_newest_adds_that_many_older_articles_on_the_first_run_only(
        admin, node_caller, other, clock, feed):
    task_id = make_task(admin, push_newest=2, web_hook_url=HOOK,
                        mps_id=[{"id": feed, "mp_name": "f0"}])
    lease = run(admin, node_caller, task_id)
    now = clock.timestamp()
    collect(node_caller, lease, [article(feed, f"old-{n}", now - n * 3600) for n in (1, 2, 3)])
    assert [d["article_ids"] for d in plan(node_caller, lease, ["old-1", "old-2", "old-3"])
            ["deliveries"]] == [["old-1", "old-2"]]
    report(node_caller, plan(node_caller, lease, [])["deliveries"][0]["delivery_id"])
    complete(node_caller, lease)
    lease = run(admin, other, task_id)
    assert plan(other, lease, ["old-1", "old-2", "old-3"]) == {"deliveries": [],
                                                               "first_run": False}


def test_a_sent_article_is_never_planned_again_whichever_child_runs(
        admin, node_caller, other, clock, feed, task_id):
    lease = run(admin, node_caller, task_id)
    fresh = [article(feed, f"a{n}", clock.timestamp() + n) for n in (1, 2)]
    collect(node_caller, lease, fresh)
    delivery = plan(node_caller, lease, ["a1", "a2"])["deliveries"][0]
    # Asked again by the same lease (a retry with a new key): the same delivery.
    assert plan(node_caller, lease, ["a1", "a2"])["deliveries"][0]["delivery_id"] \
        == delivery["delivery_id"]
    assert report(node_caller, delivery["delivery_id"])["status"] == "sent"
    complete(node_caller, lease)

    lease = run(admin, other, task_id)
    collect(other, lease, fresh + [article(feed, "a3", clock.timestamp() + 3)])
    assert [d["article_ids"] for d in plan(other, lease, ["a1", "a2", "a3"])["deliveries"]] \
        == [["a3"]]


def test_a_delivery_left_by_a_dead_child_is_taken_over_with_the_same_id(
        admin, node_caller, other, clock, feed, task_id):
    lease = run(admin, node_caller, task_id)
    collect(node_caller, lease, [article(feed, "a1", clock.timestamp() + 1)])
    first = plan(node_caller, lease, ["a1"])["deliveries"][0]
    clock.advance(601)  # the child died before reporting; its lease expires
    leases = [l for l in claim_all(other)]
    assert leases, "the expired allocation went to the other node"
    collect(other, leases[0], [article(feed, "a1", clock.timestamp() - 600),
                               article(feed, "a2", clock.timestamp() + 1)])
    data = plan(other, leases[0], ["a1", "a2"])
    assert [(d["delivery_id"], d["article_ids"]) for d in data["deliveries"]] == [
        (first["delivery_id"], ["a1"]), (data["deliveries"][1]["delivery_id"], ["a2"])]
    # The dead child's late failure report cannot undo the take-over.
    report(node_caller, first["delivery_id"], expect=409, status="failed")


def test_two_tasks_on_one_feed_each_push_their_own_articles(admin, node_caller, clock, feed,
                                                           task_id):
    second = make_task(admin, name="second", web_hook_url=HOOK + "-2",
                       mps_id=[{"id": feed, "mp_name": "f0"}])
    for tid in (task_id, second):
        lease = run(admin, node_caller, tid)
        collect(node_caller, lease, [article(feed, "a1", clock.timestamp() + 1)])
        delivery = plan(node_caller, lease, ["a1"])["deliveries"][0]
        assert delivery["article_ids"] == ["a1"]
        report(node_caller, delivery["delivery_id"])
        complete(node_caller, lease)


def test_failed_pushes_retry_with_backoff_then_fail_visibly(admin, client, node_caller, clock,
                                                          feed, task_id):
    lease = run(admin, node_caller, task_id)
    collect(node_caller, lease, [article(feed, "a1", clock.timestamp() + 1)])
    delivery_id = plan(node_caller, lease, ["a1"])["deliveries"][0]["delivery_id"]
    state = report(node_caller, delivery_id, status="failed", attempts=1, vendor_code="130101",
                   vendor_message="send too fast")
    assert state["status"] == "retrying" and state["attempts"] == 1
    # Not due yet: the same lease sees it, but a later run's plan waits for its backoff.
    complete(node_caller, lease)
    lease = run(admin, node_caller, task_id)
    assert plan(node_caller, lease, ["a1"])["deliveries"] == []
    clock.advance(61)
    again = plan(node_caller, lease, ["a1"])["deliveries"]
    assert [d["delivery_id"] for d in again] == [delivery_id]
    state = report(node_caller, delivery_id, status="failed", attempts=2, vendor_code="130101")
    assert state["status"] == "failed" and state["next_attempt_at"] is None

    listing = admin.get("/api/v1/deliveries", query_string={"status": "failed"}).get_json()
    item, = listing["data"]["items"]
    assert (item["id"], item["attempts"], item["vendor_code"], item["channel"]) == (
        delivery_id, 3, "130101", "webhook")
    assert "s3cret" not in item["destination"] and item["destination"].startswith(
        "https://hooks.example.com/")
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'werss_deliveries{status="failed"} 1.0' in metrics

    retried = admin.post(f"/api/v1/deliveries/{delivery_id}/retry").get_json()["data"]
    assert (retried["status"], retried["attempts"]) == ("retrying", 0)
    complete(node_caller, lease)
    lease = run(admin, node_caller, task_id)
    assert [d["delivery_id"] for d in plan(node_caller, lease, [])["deliveries"]] == [delivery_id]
    assert report(node_caller, delivery_id)["status"] == "sent"
    assert_error(admin.post(f"/api/v1/deliveries/{delivery_id}/retry"), 409, "conflict")


def test_non_retryable_failure_fails_at_once(admin, node_caller, clock, feed, task_id):
    lease = run(admin, node_caller, task_id)
    collect(node_caller, lease, [article(feed, "a1", clock.timestamp() + 1)])
    delivery_id = plan(node_caller, lease, ["a1"])["deliveries"][0]["delivery_id"]
    assert report(node_caller, delivery_id, status="failed", retryable=False,
                  vendor_code="310000")["status"] == "failed"


def test_deliveries_list_filters_and_pages(admin, node_caller, clock, feed, task_id):
    lease = run(admin, node_caller, task_id)
    collect(node_caller, lease, [article(feed, "a1", clock.timestamp() + 1)])
    plan(node_caller, lease, ["a1"])
    for query in ({"task_id": task_id}, {"feed_id": feed}, {"status": "pending"},
                  {"limit": 1, "offset": 0}, {"page": 1, "page_size": 1}):
        data = admin.get("/api/v1/deliveries", query_string=query).get_json()["data"]
        assert data["total"] == 1 and len(data["items"]) == 1, query
    assert admin.get("/api/v1/deliveries", query_string={"status": "sent"}).get_json()[
        "data"]["total"] == 0
    assert_error(admin.get("/api/v1/deliveries", query_string={"status": "lost"}), 422,
                 "validation_failed")
    assert_error(admin.post("/api/v1/deliveries/nope/retry"), 404, "not_found")


def test_plans_are_fenced_to_the_lease(admin, node_caller, other, feed, task_id):
    lease = run(admin, node_caller, task_id)
    response = node_caller.post(f"/leases/{lease['lease_id']}/deliveries",
                                json={"feed_id": "elsewhere", "article_ids": []})
    assert_error(response, 422, "validation_failed")
    response = other.post(f"/leases/{lease['lease_id']}/deliveries",
                          json={"feed_id": feed, "article_ids": []})
    assert_error(response, 403, "forbidden")
    assert_error(other.post("/deliveries/nope/report", json={"status": "sent"}), 404,
                 "not_found")
    assert_error(node_caller.post("/deliveries/nope/report", json={"status": "maybe"}), 422,
                 "validation_failed")


def test_a_task_older_than_the_upgrade_does_not_repush_its_history(app, admin, node_caller,
                                                                   clock, feed, db_backend):
    """Children used to push on their own: what they pushed before the upgrade is unknown."""
    from parent.extensions import db
    from parent.models import MetaValue

    task_id = make_task(admin, web_hook_url=HOOK)  # every feed: joined when both existed
    upgraded = clock.timestamp() + 100
    with app.app_context():
        marker = db.session.get(MetaValue, "deliveries.started_at")
        if db_backend == "sqlite":  # (PostgreSQL tests start from truncated tables)
            assert marker is not None, "migration 0006 records when pushed state began"
        marker = marker or MetaValue(key="deliveries.started_at", value="")
        marker.value = clock.advance(100).isoformat()
        db.session.add(marker)
        db.session.commit()
    lease = run(admin, node_caller, task_id)
    collect(node_caller, lease, [article(feed, "before", upgraded - 50),
                                 article(feed, "after", upgraded + 50)])
    assert [d["article_ids"] for d in plan(node_caller, lease, ["before", "after"])
            ["deliveries"]] == [["after"]]


def test_a_collect_only_task_makes_no_deliveries(admin, node_caller, clock, feed):
    task_id = make_task(admin, mps_id=[{"id": feed, "mp_name": "f0"}])  # no webhook URL
    lease = run(admin, node_caller, task_id)
    collect(node_caller, lease, [article(feed, "a1", clock.timestamp() + 1)])
    assert plan(node_caller, lease, ["a1"])["deliveries"] == []
    assert admin.get("/api/v1/deliveries").get_json()["data"]["total"] == 0
