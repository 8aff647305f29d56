"""Work distribution: scheduling runs, claiming, the lease state machine, routing, ingest."""

from datetime import datetime, timedelta, timezone

import pytest

from parent.extensions import db
from parent.models import Allocation, TaskRun
from parent.services import scheduling
from parent.services.maintenance import run_maintenance
from tests.conftest import create_node_with_credentials
from tests.helpers import NodeCaller, assert_error


def make_feeds(admin, count, prefix="f", **fields):
    ids = []
    for index in range(count):
        response = admin.post("/api/v1/feeds", json={
            "mp_name": f"{prefix}{index}", "source_type": "rss",
            "source_url": f"http://127.0.0.1:1/{prefix}{index}.xml", **fields})
        assert response.status_code == 201, response.get_json()
        ids.append(response.get_json()["data"]["id"])
    return ids


def make_task(admin, **fields):
    body = {"name": "collect", "cron_exp": "*/5 * * * *", **fields}
    response = admin.post("/api/v1/message-tasks", json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["data"]["id"]


def dispatch(admin, task_id):
    response = admin.post("/api/v1/cascade/dispatch", json={"task_id": task_id})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["data"]


def claim(caller, max_count=1, expect=200):
    response = caller.post("/claim", json={"max": max_count, "wait": 0})
    assert response.status_code == expect, response.get_json()
    return response.get_json()["data"]["leases"] if expect == 200 else []


def allocation_rows(app):
    with app.app_context():
        rows = db.session.execute(db.select(Allocation)).scalars().all()
        return {row.id: (row.status, row.attempt, row.leased_to) for row in rows}


@pytest.fixture
def work(admin):
    feeds = make_feeds(admin, 3)
    task_id = make_task(admin)
    return {"feeds": feeds, "task_id": task_id}


def test_dispatch_splits_a_run_into_allocations(app, admin, work):
    data = dispatch(admin, work["task_id"])
    assert data["run_id"] and len(data["allocations"]) == 3


@pytest.mark.parametrize("cascade_settings", [{"feeds_per_allocation": 2}])
def test_feeds_per_allocation_is_configurable(admin, work, cascade_settings):
    assert len(dispatch(admin, work["task_id"])["allocations"]) == 2


def test_task_with_named_feeds_covers_only_those(admin, work):
    task_id = make_task(admin, name="two", mps_id=[{"id": work["feeds"][0], "mp_name": "x"}])
    assert len(dispatch(admin, task_id)["allocations"]) == 1


def test_claim_returns_the_contract_lease_shape(admin, node_caller, work, clock):
    dispatch(admin, work["task_id"])
    lease = claim(node_caller)[0]
    assert set(lease) >= {"lease_id", "allocation_id", "attempt", "expires_at", "slot", "task", "feeds"}
    assert lease["attempt"] == 1 and lease["expires_at"].endswith("Z")
    assert set(lease["task"]) >= {"id", "name", "message_type", "message_template", "web_hook_url",
                                  "headers", "cookies", "cron_exp"}
    assert len(lease["feeds"]) == 1 and lease["feeds"][0]["id"] in work["feeds"]


def test_nothing_to_claim_is_204(node_caller):
    response = node_caller.post("/claim", json={"max": 1, "wait": 0})
    assert response.status_code == 204 and response.data == b""


def test_capacity_caps_held_leases(admin, client, clock, work):
    creds = create_node_with_credentials(admin, name="small", capacity=2)
    caller = NodeCaller(client, creds, clock=clock)
    dispatch(admin, work["task_id"])
    assert len(claim(caller, 5)) == 2
    claim(caller, 1, expect=204)


def test_least_recently_collected_feeds_go_first(app, admin, node_caller, work, clock):
    dispatch(admin, work["task_id"])
    order = []
    for _ in range(3):
        lease = claim(node_caller)[0]
        order.append(lease["feeds"][0]["id"])
        node_caller.post(f"/leases/{lease['lease_id']}/complete",
                         json={"results": [{"mp_id": order[-1], "success": True}]})
        clock.advance(10)
    # Now the first-collected feed is the freshest: a new run starts with the others.
    dispatch(admin, work["task_id"])
    lease = claim(node_caller)[0]
    next_order = [lease["feeds"][0]["id"]]
    node_caller.post(f"/leases/{lease['lease_id']}/complete", json={"results": []})
    for _ in range(2):
        lease = claim(node_caller)[0]
        next_order.append(lease["feeds"][0]["id"])
        node_caller.post(f"/leases/{lease['lease_id']}/complete", json={"results": []})
    assert next_order == order, "same order: least recently collected first"


def test_complete_updates_feed_freshness(app, admin, node_caller, work, clock):
    dispatch(admin, work["task_id"])
    lease = claim(node_caller)[0]
    feed_id = lease["feeds"][0]["id"]
    response = node_caller.post(f"/leases/{lease['lease_id']}/complete", json={"results": [
        {"mp_id": feed_id, "mp_name": "x", "article_count": 3, "new_count": 2, "pushed_count": 2,
         "success": True, "error": None}]})
    assert response.get_json()["data"] == {"allocation_id": lease["allocation_id"],
                                           "status": "completed"}
    feed = admin.get(f"/api/v1/feeds/{feed_id}").get_json()["data"]
    assert feed["sync_time"] == clock.timestamp()


class TestLeaseStateMachine:
    """Every legal and illegal transition of a lease."""

    @pytest.fixture
    def lease(self, admin, node_caller, work):
        dispatch(admin, work["task_id"])
        return claim(node_caller)[0]

    def test_renew_extends_expiry(self, node_caller, lease, clock):
        clock.advance(500)
        data = node_caller.post(f"/leases/{lease['lease_id']}/renew").get_json()["data"]
        assert data["lease_id"] == lease["lease_id"]
        assert data["expires_at"] > lease["expires_at"]
        clock.advance(500)  # past the original expiry, inside the renewed one
        assert node_caller.post(f"/leases/{lease['lease_id']}/renew").status_code == 200

    @pytest.mark.parametrize("first,then", [
        ("complete", "complete"), ("complete", "fail"), ("complete", "renew"),
        ("fail", "complete"), ("fail", "renew"), ("fail", "fail"),
    ])
    def test_ended_lease_is_lost(self, node_caller, lease, first, then):
        body = {"results": []} if first == "complete" else {"error": "x", "retryable": True}
        assert node_caller.post(f"/leases/{lease['lease_id']}/{first}", json=body).status_code == 200
        assert_error(node_caller.post(f"/leases/{lease['lease_id']}/{then}", json={}), 409,
                     "lease_lost")

    @pytest.mark.parametrize("action", ["renew", "complete", "fail"])
    def test_expired_lease_is_lost(self, node_caller, lease, clock, action):
        clock.advance(601)
        assert_error(node_caller.post(f"/leases/{lease['lease_id']}/{action}", json={}), 409,
                     "lease_lost")

    def test_expired_lease_requeues_with_next_attempt_then_dies(self, app, admin, node_caller,
                                                                lease, clock):
        allocation_id = lease["allocation_id"]
        for attempt in (2, 3):
            clock.advance(601)
            with app.app_context():
                run_maintenance()
            assert allocation_rows(app)[allocation_id][0] == "pending"
            again = [l for l in claim(node_caller, 5) if l["allocation_id"] == allocation_id]
            assert again and again[0]["attempt"] == attempt
        clock.advance(601)
        with app.app_context():
            run_maintenance()
        assert allocation_rows(app)[allocation_id][0] == "dead"
        dead = admin.get("/api/v1/cascade/allocations?status=dead").get_json()["data"]["items"]
        assert [a["id"] for a in dead] == [allocation_id]

    def test_fencing_refuses_results_of_a_stale_lease(self, admin, client, node_caller, lease,
                                                      clock, work):
        other = NodeCaller(client, create_node_with_credentials(admin, name="other"), clock=clock)
        clock.advance(601)
        taken = [l for l in claim(other, 5) if l["allocation_id"] == lease["allocation_id"]]
        assert taken, "the expired allocation went to the other node"
        stale = node_caller.post(f"/leases/{lease['lease_id']}/complete", json={"results": []})
        assert_error(stale, 409, "lease_lost")
        feed_id = lease["feeds"][0]["id"]
        fresh = other.post("/articles", json={"lease_id": taken[0]["lease_id"], "articles": [
            {"id": "a1", "mp_id": feed_id, "title": "new holder", "url": "http://x/a1"}]})
        assert fresh.status_code == 200
        # What the stale lease collected is kept (lose no article) but cannot change what
        # the live lease's node wrote.
        late = node_caller.post("/articles", json={"lease_id": lease["lease_id"], "articles": [
            {"id": "a1", "mp_id": feed_id, "title": "stale", "url": "http://x/a1"},
            {"id": "a2", "mp_id": feed_id, "title": "only here", "url": "http://x/a2"}]})
        assert late.status_code == 200 and late.get_json()["data"]["new"] == 1
        titles = {a["id"]: a["title"] for a in admin.get(
            f"/api/v1/articles?feed_id={feed_id}").get_json()["data"]["items"]}
        assert titles == {"a1": "new holder", "a2": "only here"}
        ok = other.post(f"/leases/{taken[0]['lease_id']}/complete", json={"results": []})
        assert ok.status_code == 200

    def test_another_nodes_lease_is_forbidden(self, admin, client, lease, clock):
        other = NodeCaller(client, create_node_with_credentials(admin, name="other"), clock=clock)
        for action in ("renew", "complete", "fail"):
            assert_error(other.post(f"/leases/{lease['lease_id']}/{action}", json={}), 403,
                         "forbidden")

    def test_unknown_lease_is_404(self, node_caller):
        assert_error(node_caller.post("/leases/nope/renew"), 404, "not_found")

    def test_retryable_failure_backs_off_then_retries(self, app, node_caller, lease, clock):
        data = node_caller.post(f"/leases/{lease['lease_id']}/fail",
                                json={"error": "timeout", "retryable": True}).get_json()["data"]
        assert data["status"] == "pending"
        assert not [l for l in claim_all(node_caller) if l["allocation_id"] == lease["allocation_id"]]
        clock.advance(61)
        again = [l for l in claim_all(node_caller) if l["allocation_id"] == lease["allocation_id"]]
        assert again and again[0]["attempt"] == 2

    def test_permanent_failure_is_dead(self, app, node_caller, lease):
        data = node_caller.post(f"/leases/{lease['lease_id']}/fail",
                                json={"error": "gone", "retryable": False}).get_json()["data"]
        assert data["status"] == "dead"
        assert allocation_rows(app)[lease["allocation_id"]][0] == "dead"


def claim_all(caller):
    response = caller.post("/claim", json={"max": 10, "wait": 0})
    return response.get_json()["data"]["leases"] if response.status_code == 200 else []


def _wechat_node(admin, client, clock, name, valid=True, labels=None):
    creds = create_node_with_credentials(admin, name=name, labels=labels or [])
    caller = NodeCaller(client, creds, clock=clock)
    caller.post("/heartbeat", json={"capabilities": {
        "sources": ["rss", "wechat"], "wechat": {"session_valid": valid, "expires_at": None}}})
    return caller


def test_wechat_work_goes_only_to_nodes_with_a_valid_session(admin, client, clock):
    admin.post("/api/v1/feeds", json={"mp_name": "wx", "faker_id": "MzA5MTIzNDU2Nw=="})
    task_id = make_task(admin)
    dispatch(admin, task_id)
    without = _wechat_node(admin, client, clock, "no-session", valid=False)
    with_session = _wechat_node(admin, client, clock, "session")
    assert claim_all(without) == []
    assert len(claim_all(with_session)) == 1


def test_rate_limited_node_hands_work_on_without_spending_an_attempt(app, admin, client, clock):
    admin.post("/api/v1/feeds", json={"mp_name": "wx", "faker_id": "MzA5MTIzNDU2Nw=="})
    dispatch(admin, make_task(admin))
    first = _wechat_node(admin, client, clock, "first")
    second = _wechat_node(admin, client, clock, "second")
    lease = claim_all(first)[0]
    until = (clock() + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    data = first.post(f"/leases/{lease['lease_id']}/fail", json={
        "error": "频繁", "retryable": True, "rate_limited_until": until}).get_json()["data"]
    assert data["status"] == "pending"
    assert claim_all(first) == [], "the rate-limited node gets no WeChat work"
    handed_on = claim_all(second)
    assert handed_on and handed_on[0]["attempt"] == 1, "rate limiting is not a failed attempt"


def test_labels_pin_work_to_matching_nodes(admin, client, clock):
    make_feeds(admin, 1, prefix="east", labels=["cn-east"])
    dispatch(admin, make_task(admin))
    plain = NodeCaller(client, create_node_with_credentials(admin, name="plain"), clock=clock)
    east = NodeCaller(client, create_node_with_credentials(
        admin, name="east", labels=["cn-east", "gpu"]), clock=clock)
    assert claim_all(plain) == []
    assert len(claim_all(east)) == 1


def test_task_labels_are_required_too(admin, client, clock):
    make_feeds(admin, 1)
    dispatch(admin, make_task(admin, labels=["eu"]))
    assert claim_all(NodeCaller(client, create_node_with_credentials(
        admin, name="asia", labels=["asia"]), clock=clock)) == []
    assert len(claim_all(NodeCaller(client, create_node_with_credentials(
        admin, name="eu", labels=["eu"]), clock=clock))) == 1


def test_deleting_a_node_releases_its_leases(app, admin, node, node_caller, work):
    dispatch(admin, work["task_id"])
    lease = claim(node_caller)[0]
    admin.delete(f"/api/v1/cascade/nodes/{node.node_id}")
    status, attempt, leased_to = allocation_rows(app)[lease["allocation_id"]]
    assert (status, attempt, leased_to) == ("pending", 0, None)


class TestScheduling:
    def test_one_run_per_slot_however_often_it_is_asked(self, app, admin, work, clock):
        clock.advance(600)
        with app.app_context():
            first = scheduling.schedule_due_runs()
            second = scheduling.schedule_due_runs()
            db.session.commit()
            runs = db.session.execute(db.select(TaskRun)).scalars().all()
        assert first == 3 and second == 0 and len(runs) == 1

    def test_missed_slots_run_once(self, app, admin, work, clock):
        clock.advance(3 * 3600)  # 36 slots of */5 passed while "down"
        with app.app_context():
            scheduling.schedule_due_runs()
            db.session.commit()
            assert db.session.query(TaskRun).count() == 1

    def test_pending_work_is_not_piled_up_by_later_slots(self, app, admin, work, clock):
        with app.app_context():
            for _ in range(4):
                clock.advance(300)
                scheduling.schedule_due_runs()
            db.session.commit()
            assert db.session.query(TaskRun).count() == 4
            assert db.session.query(Allocation).count() == 3

    def test_disabled_tasks_are_not_scheduled(self, app, admin, work, clock):
        admin.put(f"/api/v1/message-tasks/{work['task_id']}", json={"status": 0})
        clock.advance(600)
        with app.app_context():
            assert scheduling.schedule_due_runs() == 0

    @pytest.mark.parametrize("cron,moment,expected", [
        ("*/5 * * * *", "2026-01-01T10:02:30", "2026-01-01T10:00:00"),
        ("*/5 * * * *", "2026-01-01T10:05:00", "2026-01-01T10:05:00"),
        ("0 8 * * *", "2026-01-01T09:00:00", "2026-01-01T08:00:00"),
        ("30 */10 * * * *", "2026-01-01T10:15:00", "2026-01-01T10:10:30"),
    ])
    def test_latest_slot(self, cron, moment, expected):
        at = datetime.fromisoformat(moment).replace(tzinfo=timezone.utc)
        assert scheduling.latest_slot(cron, at).isoformat() == expected + "+00:00"

    def test_slots_follow_the_configured_time_zone(self):
        at = datetime(2026, 1, 1, 1, 0, tzinfo=timezone.utc)  # 09:00 in Shanghai
        slot = scheduling.latest_slot("0 8 * * *", at, "Asia/Shanghai")
        assert slot == datetime(2026, 1, 1, 0, 0, tzinfo=timezone.utc)


class TestArticles:
    ARTICLE = {"id": "biz-1", "title": "Hello", "url": "https://mp.weixin.qq.com/s/abc",
               "pic_url": "", "description": "d", "publish_time": 1764300000}

    @pytest.fixture(autouse=True)
    def leased(self, admin, node_caller, work):
        """Uploads are accepted for feeds the node holds a lease on: hold them all."""
        dispatch(admin, work["task_id"])
        return claim_all(node_caller)

    def test_same_batch_twice_stores_one_copy(self, admin, node_caller, work):
        batch = {"articles": [dict(self.ARTICLE, mp_id=work["feeds"][0]),
                              dict(self.ARTICLE, id="biz-2", mp_id=work["feeds"][0])]}
        first = node_caller.post("/articles", json=batch).get_json()["data"]
        second = node_caller.post("/articles", json=batch).get_json()["data"]
        assert first == {"received": 2, "new": 2, "refused": []}
        assert second == {"received": 2, "new": 0, "refused": []}
        listing = admin.get(f"/api/v1/articles?feed_id={work['feeds'][0]}").get_json()["data"]
        assert listing["total"] == 2

    def test_same_article_from_two_children_is_one_article(self, admin, client, clock,
                                                           node_caller, work, leased):
        other = NodeCaller(client, create_node_with_credentials(admin, name="other"), clock=clock)
        batch = {"articles": [dict(self.ARTICLE, mp_id=work["feeds"][0])]}
        assert node_caller.post("/articles", json=batch).get_json()["data"]["new"] == 1
        # The other child collects the feed on the next run, under its own lease.
        for lease in leased:
            node_caller.post(f"/leases/{lease['lease_id']}/complete", json={"results": []})
        dispatch(admin, work["task_id"])
        claim_all(other)
        assert other.post("/articles", json=batch).get_json()["data"]["new"] == 0

    def test_idempotency_key_with_another_body_is_refused(self, node_caller, work):
        headers = {"Idempotency-Key": "batch-1"}
        batch = {"articles": [dict(self.ARTICLE, mp_id=work["feeds"][0])]}
        assert node_caller.post("/articles", json=batch, headers=headers).status_code == 200
        replay = node_caller.post("/articles", json=batch, headers=headers)
        assert replay.headers["Idempotent-Replayed"] == "true"
        changed = {"articles": [dict(self.ARTICLE, id="other", mp_id=work["feeds"][0])]}
        assert_error(node_caller.post("/articles", json=changed, headers=headers), 422,
                     "idempotency_key_reused")

    def test_unknown_feed_is_refused_alone(self, admin, node_caller, work):
        batch = {"articles": [dict(self.ARTICLE, mp_id=work["feeds"][0]),
                              dict(self.ARTICLE, id="x", mp_id="nope")]}
        data = node_caller.post("/articles", json=batch).get_json()["data"]
        assert data["new"] == 1
        assert [(r["index"], r["id"], r["errors"]) for r in data["refused"]] == [
            (1, "x", {"mp_id": ["Unknown feed 'nope'."]})]
        assert admin.get("/api/v1/articles").get_json()["data"]["total"] == 1

    def test_one_bad_link_does_not_lose_the_batch(self, admin, node_caller, work, leased):
        """Issue 8.1: a link the schema refuses used to make the whole batch 422."""
        feed_id = leased[0]["feeds"][0]["id"]
        batch = {"lease_id": leased[0]["lease_id"], "articles": [
            dict(self.ARTICLE, id="good-1", mp_id=feed_id),
            dict(self.ARTICLE, id="bad", mp_id=feed_id, url="http://exa mple.com/x y"),
            dict(self.ARTICLE, id="good-2", mp_id=feed_id)]}
        response = node_caller.post("/articles", json=batch)
        assert response.status_code == 200, response.get_json()
        data = response.get_json()["data"]
        assert data["received"] == 3 and data["new"] == 2
        assert [(r["index"], r["id"], list(r["errors"])) for r in data["refused"]] == [
            (1, "bad", ["url"])]
        stored = admin.get(f"/api/v1/articles?feed_id={feed_id}").get_json()["data"]["items"]
        assert sorted(a["id"] for a in stored) == ["good-1", "good-2"]

    def test_a_batch_with_no_good_article_is_422_and_stores_nothing(self, admin, node_caller,
                                                                    work):
        batch = {"articles": [dict(self.ARTICLE, mp_id=work["feeds"][0], url="not a url"),
                              "not an object"]}
        body = assert_error(node_caller.post("/articles", json=batch), 422, "validation_failed")
        assert set(body["details"]["articles"]) == {"0", "1"}
        assert admin.get("/api/v1/articles").get_json()["data"]["total"] == 0

    def test_a_node_without_a_lease_cannot_plant_articles(self, admin, client, clock, work):
        """Issue 8.2: a node with no lease uploaded into any feed, and the copy stayed."""
        planter = NodeCaller(client, create_node_with_credentials(admin, name="planter"),
                             clock=clock)
        batch = {"articles": [dict(self.ARTICLE, mp_id=work["feeds"][0], title="planted")]}
        body = assert_error(planter.post("/articles", json=batch), 403, "forbidden")
        assert "0" in body["details"]["articles"]
        assert admin.get("/api/v1/articles").get_json()["data"]["total"] == 0

    def test_the_collecting_nodes_version_replaces_an_earlier_foreign_copy(
            self, admin, client, clock, node_caller, work, leased):
        """Issue 8.2: an earlier write by another node no longer shadows the collector's."""
        feed_id = work["feeds"][0]
        node_caller.post("/articles", json={"articles": [
            dict(self.ARTICLE, mp_id=feed_id, title="first copy", url="http://evil.example/x")]})
        for lease in leased:
            node_caller.post(f"/leases/{lease['lease_id']}/complete", json={"results": []})
        collector = NodeCaller(client, create_node_with_credentials(admin, name="collector"),
                               clock=clock)
        dispatch(admin, work["task_id"])
        mine = [l for l in claim_all(collector) if l["feeds"][0]["id"] == feed_id][0]
        data = collector.post("/articles", json={"lease_id": mine["lease_id"], "articles": [
            dict(self.ARTICLE, mp_id=feed_id)]}).get_json()["data"]
        assert data["new"] == 0
        stored = admin.get(f"/api/v1/articles?feed_id={feed_id}").get_json()["data"]["items"]
        assert [(a["title"], a["url"]) for a in stored] == [
            (self.ARTICLE["title"], self.ARTICLE["url"])]

    def test_batches_over_500_are_refused(self, node_caller, work):
        batch = {"articles": [dict(self.ARTICLE, id=f"a{i}", mp_id=work["feeds"][0])
                              for i in range(501)]}
        assert_error(node_caller.post("/articles", json=batch), 422, "validation_failed")


def test_disabling_a_node_releases_its_leases(app, admin, node, node_caller, work):
    dispatch(admin, work["task_id"])
    lease = claim(node_caller)[0]
    admin.put(f"/api/v1/cascade/nodes/{node.node_id}", json={"is_active": False})
    assert allocation_rows(app)[lease["allocation_id"]][0] == "pending"


def test_reported_capacity_caps_claims_below_the_admin_capacity(admin, node_caller, work):
    dispatch(admin, work["task_id"])
    node_caller.post("/heartbeat", json={"capacity": 1})
    assert len(claim_all(node_caller)) == 1


def test_finished_work_is_pruned_after_retention_but_articles_stay(app, admin, node_caller,
                                                                   work, clock):
    dispatch(admin, work["task_id"])
    for lease in claim_all(node_caller):
        feed_id = lease["feeds"][0]["id"]
        node_caller.post("/articles", json={"lease_id": lease["lease_id"], "articles": [
            {"id": f"a-{feed_id}", "mp_id": feed_id, "title": "t", "url": "http://x/a"}]})
        node_caller.post(f"/leases/{lease['lease_id']}/complete", json={"results": []})
    admin.put(f"/api/v1/message-tasks/{work['task_id']}", json={"status": 0})  # no new runs
    clock.advance(31 * 86400)
    with app.app_context():
        report = run_maintenance()
        assert report["finished_work"] == 3
        assert db.session.query(Allocation).count() == 0
        # The task's latest run stays: it marks the last slot that ran.
        assert db.session.query(TaskRun).count() == 1
        from parent.models import Article
        assert db.session.query(Article).count() == 3


def test_releasing_a_lease_hands_work_back_without_spending_an_attempt(app, admin, node_caller,
                                                                       work):
    dispatch(admin, work["task_id"])
    lease = claim(node_caller)[0]
    data = node_caller.post(f"/leases/{lease['lease_id']}/fail", json={
        "error": "child shutting down", "retryable": True, "release": True}).get_json()["data"]
    assert data["status"] == "pending"
    again = [l for l in claim_all(node_caller) if l["allocation_id"] == lease["allocation_id"]]
    assert again and again[0]["attempt"] == 1


def test_collection_bookkeeping_does_not_invalidate_what_nodes_cached(admin, node_caller, work,
                                                                      clock):
    first = node_caller.get("/feeds")
    dispatch(admin, work["task_id"])
    lease = claim(node_caller)[0]
    clock.advance(30)
    node_caller.post(f"/leases/{lease['lease_id']}/complete", json={"results": [
        {"mp_id": lease["feeds"][0]["id"], "success": True}]})
    again = node_caller.get("/feeds", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304, "node-visible feed fields did not change"
    admin_view = admin.get(f"/api/v1/feeds/{lease['feeds'][0]['id']}").get_json()["data"]
    assert admin_view["sync_time"] == clock.timestamp()
    assert admin_view["updated_at"] == lease["feeds"][0]["updated_at"]


@pytest.mark.parametrize("how", ["disable", "delete"])
def test_work_of_a_disabled_or_deleted_task_is_no_longer_handed_out(app, admin, node_caller,
                                                                    work, how):
    dispatch(admin, work["task_id"])
    held = claim(node_caller)[0]
    if how == "disable":
        admin.put(f"/api/v1/message-tasks/{work['task_id']}", json={"status": 0})
    else:
        admin.delete(f"/api/v1/message-tasks/{work['task_id']}")
    assert claim_all(node_caller) == []
    statuses = sorted(status for status, _, _ in allocation_rows(app).values())
    assert statuses == ["dead", "dead", "leased"]
    done = node_caller.post(f"/leases/{held['lease_id']}/complete", json={"results": []})
    assert done.status_code == 200, "a lease already in hand may still finish"


def test_a_rate_limited_rss_source_delays_the_work_not_the_node(admin, node_caller, work, clock):
    dispatch(admin, work["task_id"])
    lease = claim(node_caller)[0]
    until = (clock() + timedelta(seconds=120)).isoformat().replace("+00:00", "Z")
    node_caller.post(f"/leases/{lease['lease_id']}/fail", json={
        "error": "HTTP 429", "retryable": True, "rate_limited_until": until})
    others = claim_all(node_caller)
    assert lease["allocation_id"] not in [l["allocation_id"] for l in others]
    assert len(others) == 2, "the node still takes other work"
    clock.advance(121)
    again = claim_all(node_caller)
    assert [l["allocation_id"] for l in again] == [lease["allocation_id"]]
    assert again[0]["attempt"] == 1


def test_a_monthly_tasks_last_run_survives_retention(app, admin, work, clock):
    """31 days after its 1 January run, a monthly task must not run 1 January again."""
    admin.put(f"/api/v1/message-tasks/{work['task_id']}", json={"status": 0})
    task_id = make_task(admin, name="monthly", cron_exp="0 0 1 * *",
                        mps_id=[{"id": "no-such-feed", "mp_name": "gone"}])

    def runs():
        return db.session.execute(
            db.select(TaskRun.id, TaskRun.slot).where(TaskRun.task_id == task_id)).all()

    clock.current = datetime(2027, 1, 1, 0, 0, 30, tzinfo=timezone.utc)
    with app.app_context():
        run_maintenance()
        first = runs()
    clock.current = datetime(2027, 1, 31, 12, 0, tzinfo=timezone.utc)
    with app.app_context():
        run_maintenance()  # retention (30 days) has passed for the 1 January run
        run_maintenance()
        assert runs() == first, "the 1 January slot was neither forgotten nor run again"
    assert first[0][1] == datetime(2027, 1, 1, tzinfo=timezone.utc)


def test_claims_read_the_queue_in_index_order(app, admin, work):
    """The claim reads pending work in index order (flat cost as the queue grows), never
    sorting every pending row. On PostgreSQL that takes fresh statistics, which
    housekeeping refreshes after a big dispatch even with autovacuum off."""
    import time

    from sqlalchemy import text as sql

    from parent.models.base import new_uuid

    query = ("SELECT id FROM allocations WHERE status = 'pending' AND label_key = '' "
             "ORDER BY priority, created_at, id LIMIT 5")
    with app.app_context():
        db.session.execute(db.insert(Allocation), [
            {"id": new_uuid(), "run_id": "r", "task_id": work["task_id"], "feed_ids": [],
             "status": "pending", "priority": i % 100, "labels": [], "label_key": "",
             "needs_wechat": False, "attempt": 0, "max_attempts": 3}
            for i in range(3000)])
        db.session.commit()
        if db.engine.dialect.name == "postgresql":
            # The statistics collector updates its counters asynchronously.
            for _ in range(50):
                if run_maintenance().get("statistics"):
                    break
                time.sleep(0.2)
            plan = "\n".join(row[0] for row in db.session.execute(
                sql(f"EXPLAIN {query} FOR UPDATE SKIP LOCKED")))
            assert "Index Scan using ix_allocations_pending_order" in plan, plan
        else:
            plan = "\n".join(str(row[-1]) for row in db.session.execute(
                sql(f"EXPLAIN QUERY PLAN {query}")))
            assert "ix_allocations_pending_order" in plan and "TEMP B-TREE" not in plan, plan


def _twice_at_once(app, node, clock, first_inside, path: str, body: dict, key: str) -> list:
    """POST the same keyed request twice: the second once the first is inside its work
    (``first_inside`` set). Returns (status, body) of each, in the order they answered."""
    import threading

    answers = []

    def send():
        caller = NodeCaller(app.test_client(), node, clock=clock)
        response = caller.post(path, json=body, headers={"Idempotency-Key": key})
        answers.append((response.status_code, response.get_json()))

    first = threading.Thread(target=send)
    first.start()
    first_inside.wait(10)
    second = threading.Thread(target=send)
    second.start()
    first.join(20)
    second.join(20)
    return answers


def test_a_retry_arriving_while_the_original_runs_gets_the_same_answer(app, admin, node, clock,
                                                                        monkeypatch):
    """The same Idempotency-Key twice at once: one completion, two identical answers."""
    import threading

    from parent.services import leasing

    feed = make_feeds(admin, 1)[0]
    dispatch(admin, make_task(admin, cron_exp="0 0 1 1 *"))
    lease = claim(NodeCaller(app.test_client(), node, clock=clock))[0]
    original = leasing._record_feed_results
    first_inside = threading.Event()

    def slow(*args, **kwargs):
        original(*args, **kwargs)
        first_inside.set()
        threading.Event().wait(1.0)  # hold the first request inside its transaction

    monkeypatch.setattr(leasing, "_record_feed_results", slow)
    answers = _twice_at_once(app, node, clock, first_inside,
                             f"/leases/{lease['lease_id']}/complete",
                             {"results": [{"mp_id": feed}]}, "same-key")
    assert [status for status, _ in answers] == [200, 200], answers
    assert answers[0][1] == answers[1][1]


def test_a_claim_retried_while_the_original_runs_takes_nothing_more(app, admin, node, clock,
                                                                    monkeypatch):
    """The same claim's key twice at once: one lease granted, two identical answers."""
    import threading

    from parent.services import leasing

    make_feeds(admin, 3)
    dispatch(admin, make_task(admin, cron_exp="0 0 1 1 *"))
    original = leasing.lease_payloads
    first_inside = threading.Event()

    def slow(*args, **kwargs):
        payloads = original(*args, **kwargs)
        if not first_inside.is_set():
            first_inside.set()
            threading.Event().wait(1.0)  # hold the first claim inside its transaction
        return payloads

    monkeypatch.setattr(leasing, "lease_payloads", slow)
    answers = _twice_at_once(app, node, clock, first_inside, "/claim",
                             {"max": 1, "wait": 0}, "claim-once")
    assert [status for status, _ in answers] == [200, 200], answers
    assert answers[0][1] == answers[1][1]
    leased = [row for row in allocation_rows(app).values() if row[0] == "leased"]
    assert len(leased) == 1, leased


def test_a_pending_tasks_preview_does_not_lose_a_due_run(app, admin, node_caller, clock):
    make_feeds(admin, 1)
    make_task(admin, cron_exp="* * * * *")
    clock.advance(61)
    app.extensions.pop("werss.schedule_check", None)
    preview = node_caller.get("/pending-tasks")
    assert preview.status_code == 200
    assert node_caller.post("/claim", json={"max": 1, "wait": 0}).status_code == 200


def test_a_node_cannot_park_work_beyond_the_rate_limit_maximum(app, admin, node_caller, work, clock):
    """Issue 8 item 3: rate_limited_until in year 2200 kept the allocation pending until then."""
    dispatch(admin, work["task_id"])
    lease = claim(node_caller)[0]
    node_caller.post(f"/leases/{lease['lease_id']}/fail", json={
        "error": "HTTP 429", "retryable": True, "rate_limited_until": "2200-01-01T00:00:00Z"})
    clock.advance(86400 - 60)
    assert lease["allocation_id"] not in [l["allocation_id"] for l in claim_all(node_caller)]
    clock.advance(120)
    again = claim_all(node_caller)
    assert lease["allocation_id"] in [l["allocation_id"] for l in again]


def test_refused_articles_show_in_the_lease_results(admin, node_caller, work):
    dispatch(admin, work["task_id"])
    lease = claim(node_caller)[0]
    feed_id = lease["feeds"][0]["id"]
    refused = [{"id": "bad", "reason": "url: Not a valid URL."}]
    response = node_caller.post(f"/leases/{lease['lease_id']}/complete", json={"results": [
        {"mp_id": feed_id, "article_count": 2, "new_count": 1, "refused": refused}]})
    assert response.status_code == 200, response.get_json()
    shown = admin.get("/api/v1/cascade/allocations", query_string={"status": "completed"})
    result, = shown.get_json()["data"]["items"][0]["results"]
    assert result["refused"] == refused


def test_a_generic_plan_of_the_claim_read_can_walk_the_pending_index(db_backend, app):
    """psycopg prepares a statement run often; PostgreSQL may then reuse one generic plan.

    With the status bound as a parameter, that plan could not use the partial index of
    pending rows (it would read and sort every pending allocation: a claim took 26 ms
    instead of 8 with 10,000 pending when it was forced), so PostgreSQL planned every
    claim afresh instead (~0.5 ms of its CPU each). Sorts and table scans are priced out
    here, so the plan shows whether the index is usable at all, whatever the tables hold.
    (SQLite re-plans a statement whose bound value decides a partial index's use.)
    """
    if db_backend != "postgresql":
        pytest.skip("generic plans of prepared statements are PostgreSQL's")
    from sqlalchemy.dialects.postgresql import psycopg

    from parent.services import leasing

    statement = leasing._candidates_statement(False, False, False, lock=True)
    compiled = statement.compile(dialect=psycopg.dialect(paramstyle="numeric_dollar"))
    with app.app_context():
        connection = db.session.connection()
        for setting in ("plan_cache_mode = force_generic_plan", "enable_sort = off",
                        "enable_seqscan = off"):
            connection.exec_driver_sql(f"SET LOCAL {setting}")
        connection.exec_driver_sql(f"PREPARE claim_read AS {compiled}")
        try:
            nulls = ", ".join("NULL" for _ in compiled.positiontup or [])
            plan = "\n".join(row[0] for row in connection.exec_driver_sql(
                f"EXPLAIN EXECUTE claim_read({nulls})"))
        finally:
            connection.exec_driver_sql("DEALLOCATE claim_read")
            db.session.rollback()
    assert "Index Scan using ix_allocations_pending_order on allocations " in plan, plan
    assert "Sort" not in plan, plan


def test_a_claim_counts_only_its_own_nodes_leases(db_backend, app, admin, work):
    """A claim counts what its node holds (capacity). It must read the node's own leased
    rows, not every lease in the fleet: planned on statistics taken while nothing was
    leased (a new database, a bench start), PostgreSQL used to count them through the
    leased-expiry index, reading all 2,000 other nodes' leases on every claim."""
    import json
    import re

    from sqlalchemy import event, text as sql

    from parent.models.base import new_uuid
    from parent.services import leasing

    ours, others = new_uuid(), [new_uuid() for _ in range(50)]
    with app.app_context():
        ids = [new_uuid() for _ in range(2004)]
        db.session.execute(db.insert(Allocation), [
            {"id": allocation_id, "run_id": "r", "task_id": work["task_id"], "feed_ids": [],
             "status": "pending", "priority": 0, "labels": [], "label_key": "",
             "needs_wechat": False, "attempt": 0, "max_attempts": 3}
            for allocation_id in ids])
        db.session.commit()
        db.session.execute(sql("ANALYZE allocations" if db_backend == "postgresql"
                               else "ANALYZE"))  # statistics of a queue with nothing leased
        db.session.commit()
        lease_until = datetime(2099, 1, 1, tzinfo=timezone.utc)
        for index, allocation_id in enumerate(ids[1:]):  # the first is left to claim
            db.session.execute(db.update(Allocation).where(Allocation.id == allocation_id).values(
                status="leased", lease_expires_at=lease_until,
                leased_to=ours if index < 3 else others[index % 50]))
        db.session.commit()
        sent = []

        def capture(conn, cursor, statement, parameters, context, executemany):
            sent.append((statement, parameters))
        event.listen(db.engine, "before_cursor_execute", capture)
        try:
            result = db.session.execute(
                leasing._candidates_statement(False, False, False, lock=True),
                {"moment": datetime(2098, 1, 1, tzinfo=timezone.utc), "node_id": ours,
                 "limit": 5}).all()
        finally:
            event.remove(db.engine, "before_cursor_execute", capture)
        (statement, parameters), = sent
        connection = db.session.connection()
        if db_backend == "postgresql":
            (plan,), = connection.exec_driver_sql(
                "EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters).all()
            plan = plan if isinstance(plan, list) else json.loads(plan)

            def scans(node):
                if node.get("Alias") == "held":
                    yield node
                for child in node.get("Plans", []):
                    yield from scans(child)
            held, = scans(plan[0]["Plan"])
            assert held["Actual Rows"] == 3, held
            assert held.get("Rows Removed by Filter", 0) == 0, held
        else:
            plan = "\n".join(str(row[-1]) for row in connection.exec_driver_sql(
                "EXPLAIN QUERY PLAN " + statement, parameters))
            # SQLite searches by the node too (either index of leased_to serves it).
            assert re.search(r"SEARCH held USING COVERING INDEX \w+ \(leased_to=\?", plan), plan
        db.session.rollback()
    assert [(row.id, row.held) for row in result] == [(ids[0], 3)]
