"""An unmodified WeRSS 1.4.9 child: what it is given, what its reports count for.

It calls only the /api/v1/wx/cascade prefix with plain AK-SK, heartbeats with just a
``callback_url`` (no capabilities), polls claim-task, and writes zone-less local times.
"""

from __future__ import annotations

import pytest

from tests.helpers import NodeCaller, assert_error

WX = "/api/v1/wx/cascade"
WECHAT_FAKER_ID = "Mzk0MTYzMzMxMA=="  # MP_WXS_3941633310


def werss_child(client, creds) -> NodeCaller:
    return NodeCaller(client, creds, mode="plain", prefix=WX)


def add_feeds_and_dispatch(admin) -> dict:
    wechat = admin.post("/api/v1/feeds", json={"mp_name": "公众号", "source_type": "wechat",
                                                "faker_id": WECHAT_FAKER_ID})
    rss = admin.post("/api/v1/feeds", json={"mp_name": "blog", "source_type": "rss",
                                             "source_url": "http://127.0.0.1:1/feed.xml"})
    assert wechat.status_code == rss.status_code == 201
    task = admin.post("/api/v1/message-tasks", json={"name": "t", "cron_exp": "0 8 * * *"})
    run = admin.post("/api/v1/cascade/dispatch", json={"task_id": task.get_json()["data"]["id"]})
    assert run.status_code == 201, run.get_json()
    return {"wechat": wechat.get_json()["data"]["id"], "rss": rss.get_json()["data"]["id"],
            "task_id": task.get_json()["data"]["id"]}


def claim_task(caller) -> dict | None:
    response = caller.post("/claim-task", headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]


def node_view(admin, node_id) -> dict:
    return admin.get(f"/api/v1/cascade/nodes/{node_id}").get_json()["data"]


def test_an_unmodified_werss_child_claims_wechat_work_and_never_rss(admin, client, node):
    feeds = add_feeds_and_dispatch(admin)
    werss = werss_child(client, node)
    assert werss.post("/heartbeat", json={"callback_url": "http://child:8001/notify"}
                      ).status_code == 200

    package = claim_task(werss)

    assert [feed["id"] for feed in package["feeds"]] == [feeds["wechat"]]
    assert package["feeds"][0]["faker_id"] == WECHAT_FAKER_ID
    assert claim_task(werss) is None, "the RSS allocation is not for a WeChat-only node"
    view = node_view(admin, node.node_id)
    assert view["effective_sources"] == ["wechat"] and view["sources_origin"] == "werss"
    assert view["sources"] is None and view["route_family"] == "werss"


def test_a_native_node_that_says_nothing_gets_rss_and_no_wechat(admin, client, node):
    feeds = add_feeds_and_dispatch(admin)
    native = NodeCaller(client, node, mode="plain")
    response = native.post("/claim", json={"max": 4, "wait": 0})
    leases = response.get_json()["data"]["leases"]
    assert [lease["feeds"][0]["id"] for lease in leases] == [feeds["rss"]]


def test_an_admin_decides_what_a_node_runs(admin, client, node):
    feeds = add_feeds_and_dispatch(admin)
    response = admin.put(f"/api/v1/cascade/nodes/{node.node_id}", json={"sources": ["rss"]})
    assert response.status_code == 200
    assert response.get_json()["data"]["effective_sources"] == ["rss"]
    werss = werss_child(client, node)
    assert [f["id"] for f in claim_task(werss)["feeds"]] == [feeds["rss"]]
    assert claim_task(werss) is None

    response = admin.put(f"/api/v1/cascade/nodes/{node.node_id}", json={"sources": None})
    assert response.get_json()["data"]["sources_origin"] == "werss"


@pytest.mark.parametrize("sources", [["ftp"], "wechat", ["rss", "rss"], [1]])
def test_bad_sources_are_refused_and_change_nothing(admin, node, sources):
    response = admin.put(f"/api/v1/cascade/nodes/{node.node_id}", json={"sources": sources})
    assert_error(response, 422, "validation_failed")
    assert "sources" in response.get_json()["details"]
    assert node_view(admin, node.node_id)["sources"] is None


def test_a_success_for_a_source_the_node_does_not_run_never_marks_the_feed_fresh(
        admin, client, node):
    feeds = add_feeds_and_dispatch(admin)
    native = NodeCaller(client, node, mode="plain")
    lease = native.post("/claim", json={"max": 1, "wait": 0}).get_json()["data"]["leases"][0]
    assert lease["feeds"][0]["id"] == feeds["rss"]
    # Meanwhile its admin says it runs WeChat only: it cannot have collected that feed.
    admin.put(f"/api/v1/cascade/nodes/{node.node_id}", json={"sources": ["wechat"]})
    done = native.post(f"/leases/{lease['lease_id']}/complete", json={"results": [{
        "mp_id": feeds["rss"], "mp_name": "blog", "article_count": 0, "new_count": 0,
        "pushed_count": 0, "success": True, "error": None}]})
    assert done.status_code == 200, done.get_json()

    status = admin.get("/api/v1/cascade/feed-status").get_json()["data"]["items"]
    rss = next(item for item in status if item["feed_id"] == feeds["rss"])
    assert rss["freshness"] == "never" and rss["last_collected_at"] is None
    assert rss["last_run_status"] == "unsupported"
    assert "does not run rss" in rss["last_run_error"]


def test_a_node_reporting_a_wechat_session_is_held_to_it(admin, client, node):
    add_feeds_and_dispatch(admin)
    werss = werss_child(client, node)
    werss.post("/heartbeat", json={"capabilities": {
        "sources": ["wechat"], "wechat": {"session_valid": False, "expires_at": None}}})
    assert claim_task(werss) is None


def test_werss_zone_less_times_are_read_in_shanghai_time(admin, client, node):
    werss = werss_child(client, node)
    body = {"task_id": "t-1", "results": [{"mp_id": "MP_WXS_1", "mp_name": "x",
                                           "article_count": 1, "success_count": 1,
                                           "timestamp": "2026-03-01T08:00:00"}],
            "timestamp": "2026-03-01T08:00:05.123456"}
    assert werss.post("/report-result", json=body).status_code == 200
    native = NodeCaller(client, node, mode="plain")
    assert native.post("/report-result", json=body).status_code == 200

    reports = admin.get("/api/v1/cascade/reports?limit=10").get_json()["data"]
    times = sorted(r["reported_at"] for r in reports["items"])
    # WeRSS prefix: 08:00 in Asia/Shanghai; our prefix: zone-less stays UTC.
    assert times == ["2026-03-01T00:00:05.123Z", "2026-03-01T08:00:05.123Z"]
    item_times = sorted(r["results"][0]["timestamp"] for r in reports["items"])
    assert item_times == ["2026-03-01T00:00:00Z", "2026-03-01T08:00:00Z"]


@pytest.mark.parametrize("cascade_settings", [{"werss_timezone": "UTC"}])
def test_werss_timezone_is_configurable(admin, client, node, cascade_settings):
    werss = werss_child(client, node)
    body = {"task_id": "t-1", "results": [], "timestamp": "2026-03-01T08:00:00"}
    assert werss.post("/report-result", json=body).status_code == 200
    reports = admin.get("/api/v1/cascade/reports").get_json()["data"]["items"]
    assert reports[0]["reported_at"] == "2026-03-01T08:00:00Z"


def test_claim_cancel_ends_the_nodes_waiting_claim_at_once(app, node):
    import threading
    import time

    from tests.helpers import NodeCaller

    results = {}

    def long_poll():
        caller = NodeCaller(app.test_client(), node, mode="plain")
        started = time.monotonic()
        results["status"] = caller.post("/claim", json={"max": 1, "wait": 20}).status_code
        results["seconds"] = time.monotonic() - started

    waiter = threading.Thread(target=long_poll)
    waiter.start()
    time.sleep(1.0)
    cancelled = NodeCaller(app.test_client(), node, mode="plain").post("/claim/cancel")
    waiter.join(timeout=10)
    assert cancelled.status_code == 200
    assert cancelled.get_json()["data"]["node_id"] == node.node_id
    assert results == {"status": 204, "seconds": results["seconds"]}
    assert results["seconds"] < 3, "the long-poll ran on after the cancel"


def test_claim_cancel_needs_node_credentials(client, admin):
    assert_error(client.post("/api/v1/cascade/claim/cancel"), 401, "authentication_required")
    assert admin.post("/api/v1/cascade/claim/cancel").status_code == 401
