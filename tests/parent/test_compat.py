"""Existing WeRSS nodes' task-dispatch calls, answered on the lease model.

The request bodies below are exactly what a WeRSS (we-mp-rss) child sends, as written in
``core/cascade.py`` ``CascadeClient`` (claim_task, update_task_status, upload_articles,
report_task_completion; read in yehx6/we-mp-rss) and the request models of
``apis/cascade.py`` (yishensanying/we-mp-rss): plain ``AK-SK key:secret`` auth, a JSON
Content-Type even on the body-less claim, naive ``datetime.utcnow().isoformat()``
timestamps, articles as ``core/wx/base.py`` ``WxGather.FillBack`` builds them and per-feed
results in the two shapes of ``jobs/cascade_sync.py`` and ``jobs/cascade_task_dispatcher.py``.
"""

from datetime import timezone

import pytest

from parent.extensions import db
from parent.models import Allocation
from tests.conftest import create_node_with_credentials
from tests.helpers import NodeCaller, assert_error

PREFIXES = ["/api/v1/wx/cascade", "/api/v1/cascade"]
JSON = {"Content-Type": "application/json"}


def werss_time(clock) -> str:
    """A timestamp as WeRSS writes it: datetime.utcnow().isoformat(), no zone."""
    return clock().astimezone(timezone.utc).replace(tzinfo=None, microsecond=123456).isoformat()


def werss_article(aid: str, mp_id: str, title: str = "Hello", content: str = "") -> dict:
    """An article as WxGather.FillBack appends it to wx.articles (content "" when not gathered)."""
    return {"id": aid, "mp_id": mp_id, "title": title,
            "url": f"https://mp.weixin.qq.com/s?__biz=MzA5MTIzNDU2Nw==&mid={aid}",
            "pic_url": "https://mmbiz.qpic.cn/cover.jpg", "content": content,
            "publish_time": 1764300000, "description": "digest",
            "ext": {"mp_title": "feed", "mp_id": mp_id}}


class WeRSSNode:
    """A WeRSS child: plain AK-SK, the wx prefix unless told otherwise."""

    def __init__(self, client, creds, clock, prefix="/api/v1/wx/cascade"):
        self.caller = NodeCaller(client, creds, mode="plain", prefix=prefix)
        self.clock = clock

    def claim_task(self, **kwargs):
        headers = {**JSON, **kwargs.pop("headers", {})}
        return self.caller.request("POST", "/claim-task", headers=headers, **kwargs)

    def pending_tasks(self, limit=1):
        return self.caller.get("/pending-tasks", params={"limit": limit})

    def update_task_status(self, allocation_id, status, error_message=None, **kwargs):
        return self.caller.request("PUT", "/task-status", json={
            "allocation_id": allocation_id, "status": status, "error_message": error_message,
            "timestamp": werss_time(self.clock)}, **kwargs)

    def upload_articles(self, allocation_id, articles, **kwargs):
        return self.caller.post("/upload-articles", json={
            "allocation_id": allocation_id, "articles": articles,
            "timestamp": werss_time(self.clock)}, **kwargs)

    def report_task_completion(self, allocation_id, task_id, results, article_count, **kwargs):
        return self.caller.post("/report-completion", json={
            "allocation_id": allocation_id, "task_id": task_id, "results": results,
            "article_count": article_count, "timestamp": werss_time(self.clock)}, **kwargs)


def ok(response, message=None):
    body = response.get_json()
    assert response.status_code == 200, body
    assert body["code"] == 0
    if message:
        assert body["message"] == message
    return body["data"]


@pytest.fixture(params=PREFIXES)
def prefix(request):
    return request.param


@pytest.fixture
def werss(client, admin, node, clock, prefix):
    if prefix != "/api/v1/wx/cascade":
        # On our own prefix the parent cannot tell a WeRSS node: its admin says what it runs.
        response = admin.put(f"/api/v1/cascade/nodes/{node.node_id}",
                             json={"sources": ["wechat"]})
        assert response.status_code == 200, response.get_json()
    return WeRSSNode(client, node, clock, prefix)


@pytest.fixture
def work(admin):
    feeds = []
    for index in range(2):
        # WeChat accounts: the work a WeRSS node runs (it has no RSS collector).
        response = admin.post("/api/v1/feeds", json={
            "mp_name": f"feed{index}", "source_type": "wechat",
            "faker_id": ["Mzk0MTYzMzMxMA==", "Mzk0MTYzMzMxMQ=="][index]})
        assert response.status_code == 201, response.get_json()
        feeds.append(response.get_json()["data"]["id"])
    response = admin.post("/api/v1/message-tasks",
                          json={"name": "collect", "cron_exp": "0 8 * * *"})
    assert response.status_code == 201, response.get_json()
    task_id = response.get_json()["data"]["id"]
    response = admin.post("/api/v1/cascade/dispatch", json={"task_id": task_id})
    assert response.status_code == 201, response.get_json()
    return {"feeds": feeds, "task_id": task_id,
            "allocations": response.get_json()["data"]["allocations"]}


def allocation_status(app, allocation_id):
    with app.app_context():
        return db.session.get(Allocation, allocation_id).status


def claimed(werss):
    return ok(werss.claim_task(), "认领任务成功")


def test_full_werss_flow_lands_in_the_admin_views(app, admin, werss, work, clock):
    package = claimed(werss)
    assert package["allocation_id"] in work["allocations"]
    assert package["task_id"] == work["task_id"] and package["task_name"] == "collect"
    assert set(package) >= {"message_type", "message_template", "web_hook_url", "cron_exp",
                            "headers", "cookies", "feeds", "dispatched_at", "lease_id"}
    feed = package["feeds"][0]
    assert set(feed) >= {"id", "faker_id", "mp_name", "mp_cover", "mp_intro", "status"}
    allocation_id, feed_id = package["allocation_id"], feed["id"]

    clock.advance(500)
    running = ok(werss.update_task_status(allocation_id, "executing"), "状态更新成功")
    assert running["expires_at"] > package["expires_at"]
    clock.advance(500)  # past the claim's expiry: task-status renewed the lease

    uploaded = ok(werss.upload_articles(allocation_id, [
        werss_article("2247483650_1", feed_id),
        werss_article("3941633310-2247483650_2", feed_id, content="<p>body</p>")]),
        "文章数据上行成功")
    assert uploaded["received"] == 2 and uploaded["new_count"] == 2

    results = [{"feed_id": feed_id, "mp_name": feed["mp_name"], "success": True,
                "article_count": 2, "new_article_count": 2, "error": None}]
    done = ok(werss.report_task_completion(allocation_id, work["task_id"], results, 2),
              "任务完成上报成功")
    assert done["status"] == "completed" and done["already_completed"] is False

    allocations = admin.get("/api/v1/cascade/allocations?status=completed").get_json()["data"]
    [row] = allocations["items"]
    assert row["id"] == allocation_id and row["results"][0]["mp_id"] == feed_id
    assert row["results"][0]["success"] is True and row["results"][0]["new_count"] == 2

    listing = admin.get(f"/api/v1/articles?feed_id={feed_id}").get_json()["data"]
    assert sorted(a["id"] for a in listing["items"]) == ["2247483650_1", "3941633310-2247483650_2"]
    assert {a["id"]: a["has_content"] for a in listing["items"]} == {
        "2247483650_1": False, "3941633310-2247483650_2": True}

    reports = admin.get(f"/api/v1/cascade/reports?task_id={work['task_id']}").get_json()["data"]
    [report] = reports["items"]
    assert report["allocation_id"] == allocation_id
    assert report["results"][0]["mp_id"] == feed_id and report["results"][0]["article_count"] == 2

    freshness = admin.get(f"/api/v1/feeds/{feed_id}").get_json()["data"]
    assert freshness["sync_time"] == clock.timestamp()


def test_dispatcher_result_shape_records_failures(app, admin, werss, work):
    package = claimed(werss)
    feed_id = package["feeds"][0]["id"]
    results = [{"mp_id": feed_id, "mp_name": "feed", "status": "failed", "error": "频繁"}]
    ok(werss.report_task_completion(package["allocation_id"], package["task_id"], results, 0))
    items = admin.get("/api/v1/cascade/feed-status").get_json()["data"]["items"]
    feed = next(item for item in items if item["feed_id"] == feed_id)
    assert feed["last_run_status"] == "failed" and feed["last_run_error"] == "频繁"
    assert feed["freshness"] == "never", "a failed collection does not count as fresh"


def test_nothing_to_claim_is_200_with_null_data(werss):
    assert ok(werss.claim_task(), "暂无待处理任务") is None
    assert ok(werss.pending_tasks(), "暂无待处理任务") is None


def test_claims_go_one_allocation_per_call_until_none_is_left(werss, work):
    first, second = claimed(werss), claimed(werss)
    assert {first["allocation_id"], second["allocation_id"]} == set(work["allocations"])
    assert ok(werss.claim_task()) is None


def test_pending_tasks_previews_without_claiming_then_returns_held_work(app, werss, work):
    preview = ok(werss.pending_tasks(), "获取任务成功")
    assert preview["claimed"] is False and preview["lease_id"] is None
    assert preview["task_id"] == work["task_id"] and preview["feeds"]
    assert {allocation_status(app, a) for a in work["allocations"]} == {"pending"}

    package = claimed(werss)
    held = ok(werss.pending_tasks())
    assert held["claimed"] is True
    assert held["allocation_id"] == package["allocation_id"]
    assert held["lease_id"] == package["lease_id"]


def test_failed_status_hands_the_work_back(app, admin, werss, work):
    package = claimed(werss)
    data = ok(werss.update_task_status(package["allocation_id"], "failed", "抓取失败"))
    assert data["allocation_status"] == "pending"
    rows = admin.get("/api/v1/cascade/allocations").get_json()["data"]["items"]
    failed = next(r for r in rows if r["id"] == package["allocation_id"])
    assert failed["status"] == "pending" and failed["last_error"] == "抓取失败"


def test_completed_status_then_report_keeps_the_report(app, admin, werss, work):
    package = claimed(werss)
    ok(werss.update_task_status(package["allocation_id"], "completed"))
    assert allocation_status(app, package["allocation_id"]) == "completed"
    results = [{"feed_id": package["feeds"][0]["id"], "mp_name": "x", "success": True,
                "article_count": 1, "new_article_count": 1, "error": None}]
    done = ok(werss.report_task_completion(package["allocation_id"], package["task_id"],
                                           results, 1))
    assert done["already_completed"] is True
    reports = admin.get("/api/v1/cascade/reports").get_json()["data"]
    assert reports["total"] == 1


@pytest.mark.parametrize("status", ["paused", "pending", ""])
def test_unknown_status_is_refused(app, werss, work, status):
    package = claimed(werss)
    body = assert_error(werss.update_task_status(package["allocation_id"], status), 422,
                        "validation_failed")
    assert allocation_status(app, package["allocation_id"]) == "leased"
    assert "status" in body["details"]


class TestStaleLease:
    @pytest.fixture
    def taken(self, admin, client, clock, werss, work):
        """This node's claim expired and another node took the allocation."""
        package = claimed(werss)
        clock.advance(601)
        other = WeRSSNode(client, create_node_with_credentials(admin, name="other"), clock)
        again = [p for p in (claimed(other), claimed(other))
                 if p["allocation_id"] == package["allocation_id"]]
        assert again, "the expired allocation went to the other node"
        return package, other, again[0]

    def test_every_call_on_a_lost_lease_is_409(self, app, admin, werss, taken):
        package, other, _ = taken
        allocation_id, feed_id = package["allocation_id"], package["feeds"][0]["id"]
        assert_error(werss.update_task_status(allocation_id, "executing"), 409, "lease_lost")
        assert_error(werss.upload_articles(allocation_id, [werss_article("a1", feed_id)]), 409,
                     "lease_lost")
        assert_error(werss.report_task_completion(allocation_id, package["task_id"], [], 0), 409,
                     "lease_lost")
        assert admin.get("/api/v1/articles").get_json()["data"]["total"] == 0
        assert allocation_status(app, allocation_id) == "leased"

    def test_the_new_holder_completes(self, app, taken):
        package, other, again = taken
        ok(other.report_task_completion(again["allocation_id"], again["task_id"], [], 0))
        assert allocation_status(app, again["allocation_id"]) == "completed"

    def test_expired_but_not_yet_reclaimed_is_409(self, werss, work, clock):
        package = claimed(werss)
        clock.advance(601)
        assert_error(werss.update_task_status(package["allocation_id"], "executing"), 409,
                     "lease_lost")


def test_another_nodes_task_is_forbidden(admin, client, clock, werss, work):
    package = claimed(werss)
    other = WeRSSNode(client, create_node_with_credentials(admin, name="other"), clock)
    allocation_id, feed_id = package["allocation_id"], package["feeds"][0]["id"]
    assert_error(other.update_task_status(allocation_id, "executing"), 403, "forbidden")
    assert_error(other.upload_articles(allocation_id, [werss_article("a1", feed_id)]), 403,
                 "forbidden")
    assert_error(other.report_task_completion(allocation_id, package["task_id"], [], 0), 403,
                 "forbidden")
    assert admin.get("/api/v1/articles").get_json()["data"]["total"] == 0


def test_unknown_allocation_is_404(werss):
    assert_error(werss.update_task_status("no-such-allocation", "executing"), 404, "not_found")


def test_articles_outside_the_lease_are_refused_alone(admin, werss, work):
    package = claimed(werss)
    outside = next(f for f in work["feeds"] if f != package["feeds"][0]["id"])
    batch = [werss_article("a1", package["feeds"][0]["id"]), werss_article("a2", outside)]
    data = ok(werss.upload_articles(package["allocation_id"], batch))
    assert data["new"] == 1
    assert [(r["index"], r["id"], list(r["errors"])) for r in data["refused"]] == [
        (1, "a2", ["mp_id"])]
    stored = admin.get("/api/v1/articles").get_json()["data"]["items"]
    assert [a["id"] for a in stored] == ["a1"]


def test_only_articles_outside_the_lease_are_forbidden(admin, werss, work):
    package = claimed(werss)
    outside = next(f for f in work["feeds"] if f != package["feeds"][0]["id"])
    body = assert_error(werss.upload_articles(package["allocation_id"],
                                              [werss_article("planted", outside)]),
                        403, "forbidden")
    assert "0" in body["details"]["articles"]
    assert admin.get("/api/v1/articles").get_json()["data"]["total"] == 0


def test_report_for_another_task_id_is_refused(app, werss, work):
    package = claimed(werss)
    assert_error(werss.report_task_completion(package["allocation_id"], "other-task", [], 0), 422,
                 "validation_failed")
    assert allocation_status(app, package["allocation_id"]) == "leased"


class TestIdempotentRetries:
    def test_retried_claim_returns_the_same_task(self, werss, work):
        key = {"Idempotency-Key": "claim-1"}
        first = werss.claim_task(headers=key)
        retry = werss.claim_task(headers=key)
        assert retry.headers["Idempotent-Replayed"] == "true"
        assert ok(retry)["allocation_id"] == ok(first)["allocation_id"]
        assert ok(werss.claim_task())["allocation_id"] != ok(first)["allocation_id"]

    def test_retried_upload_is_replayed_not_stored_twice(self, admin, werss, work):
        package = claimed(werss)
        articles = [werss_article("2247483650_1", package["feeds"][0]["id"])]
        key = {"Idempotency-Key": "upload-1"}
        first = werss.upload_articles(package["allocation_id"], articles, headers=key)
        retry = werss.upload_articles(package["allocation_id"], articles, headers=key)
        assert retry.headers["Idempotent-Replayed"] == "true"
        assert ok(first) == ok(retry) and ok(retry)["new_count"] == 1
        changed = [werss_article("other", package["feeds"][0]["id"])]
        assert_error(werss.upload_articles(package["allocation_id"], changed, headers=key), 422,
                     "idempotency_key_reused")
        assert admin.get("/api/v1/articles").get_json()["data"]["total"] == 1

    @pytest.mark.parametrize("method,route,body", [
        ("PUT", "/task-status", {"status": "executing"}),
        ("POST", "/report-completion", {"results": [], "article_count": 0}),
    ])
    def test_retried_transition_is_replayed_not_refused(self, admin, werss, work, method,
                                                       route, body):
        package = claimed(werss)
        payload = {"allocation_id": package["allocation_id"], "task_id": package["task_id"],
                   "timestamp": werss_time(werss.clock), **body}
        key = {"Idempotency-Key": f"{route}-1"}
        first = werss.caller.request(method, route, json=payload, headers=key)
        retry = werss.caller.request(method, route, json=payload, headers=key)
        assert retry.headers["Idempotent-Replayed"] == "true"
        assert ok(first) == ok(retry)
        reports = admin.get("/api/v1/cascade/reports").get_json()["data"]["total"]
        assert reports == (1 if route == "/report-completion" else 0)


def test_a_non_ascii_digit_count_is_a_validation_error(werss, work):
    package = claimed(werss)
    article = {**werss_article("a1", package["feeds"][0]["id"]), "publish_time": "²"}
    response = werss.upload_articles(package["allocation_id"], [article])
    assert response.status_code == 422


def test_a_late_report_may_not_name_feeds_outside_the_lease(werss, work):
    package = claimed(werss)
    ok(werss.update_task_status(package["allocation_id"], "completed"))
    results = [{"feed_id": "MP_WXS_not_in_lease", "mp_name": "x", "success": True,
                "article_count": 9}]
    response = werss.report_task_completion(package["allocation_id"], package["task_id"],
                                            results, 9)
    assert response.status_code == 422
