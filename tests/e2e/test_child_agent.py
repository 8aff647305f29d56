"""Real child processes against a real gunicorn parent, with local RSS sources and webhooks."""

from __future__ import annotations

import os
import signal
import time

import pytest

from deploy.local_services import LocalServices
from tests.support.http_callers import AdminHttp
from tests.support.processes import wait_for

pytestmark = pytest.mark.e2e

FAST_PARENT = {"WERSS_CASCADE_LEASE_TTL": "4", "WERSS_CASCADE_MAINTENANCE_INTERVAL": "1",
               "WERSS_CASCADE_HEARTBEAT_INTERVAL": "2", "WERSS_CASCADE_RETRY_BACKOFF": "1"}
TEMPLATE = "{{ feed.mp_name }}:{% for a in articles %} [{{ a.title }}]{% endfor %}"


def _setup_task(admin: AdminHttp, services: LocalServices, names: list[str]) -> str:
    feeds = [{"mp_name": name, "source_type": "rss", "source_url": services.feed_url(name)}
             for name in names]
    assert admin.post("/api/v1/feeds/import", json={"feeds": feeds}).json()["data"]["created"] == len(names)
    task = admin.post("/api/v1/message-tasks", json={
        "name": "push", "message_type": 1, "web_hook_url": services.base_url + "/hook",
        "message_template": TEMPLATE, "cron_exp": "0 0 1 1 *",
        # The sources' articles predate the task: push them anyway on the first run.
        "push_newest": 10}).json()["data"]
    return task["id"]


def _dispatch(admin: AdminHttp, task_id: str) -> str:
    response = admin.post("/api/v1/cascade/dispatch", json={"task_id": task_id})
    assert response.status_code == 201, response.text
    return response.json()["data"]["run_id"]


def _allocations(admin: AdminHttp, run_id: str) -> list[dict]:
    return admin.get("/api/v1/cascade/allocations",
                     params={"run_id": run_id, "page_size": 200}).json()["data"]["items"]


def _all_completed(admin, run_id, count):
    items = _allocations(admin, run_id)
    return items if len(items) == count and all(a["status"] == "completed" for a in items) else None


@pytest.mark.parametrize("auth_mode", ["signed", "plain"])
def test_seed_workflow_end_to_end(live_parent, services, children, auth_mode):
    parent = live_parent(extra_env=FAST_PARENT)
    admin = AdminHttp.login(parent.base_url)
    creds = admin.create_node_with_credentials("edge-1")
    child = children(parent.base_url, creds, name="edge-1", CASCADE_AUTH_MODE=auth_mode)
    wait_for(lambda: admin.get(f"/api/v1/cascade/nodes/{creds.node_id}").json()["data"]["status"]
             == "online", what="the child to come online")

    run_id = _dispatch(admin, _setup_task(admin, services, ["alpha", "beta"]))
    done = wait_for(lambda: _all_completed(admin, run_id, 2), what="the run to complete")
    assert {a["leased_to"] for a in done} == {creds.node_id}
    results = [r for a in done for r in a["results"]]
    assert sorted((r["article_count"], r["new_count"], r["pushed_count"], r["success"])
                  for r in results) == [(3, 3, 3, True)] * 2
    pushed = sorted(p["body"] for p in services.pushes)
    # As in WeRSS, the loop's iterations are joined with a newline.
    assert pushed == ["alpha: [alpha post 1]\n [alpha post 2]\n [alpha post 3]",
                      "beta: [beta post 1]\n [beta post 2]\n [beta post 3]"]
    assert admin.get("/api/v1/articles").json()["data"]["total"] == 6
    operations = {item["operation"] for item in admin.get(
        "/api/v1/cascade/sync-logs", params={"node_id": creds.node_id, "limit": 200}
    ).json()["data"]["items"]}
    assert {"node_online", "sync_feeds", "sync_tasks"} <= operations

    # The same task again: nothing new, so nothing is pushed twice.
    run_id = _dispatch(admin, done[0]["task_id"])
    wait_for(lambda: _all_completed(admin, run_id, 2), what="the second run")
    assert len(services.pushes) == 2
    assert admin.get("/api/v1/articles").json()["data"]["total"] == 6
    assert child.process.poll() is None


def test_two_children_share_a_run_without_collecting_a_feed_twice(live_parent, services,
                                                                  children):
    parent = live_parent(extra_env=FAST_PARENT)
    admin = AdminHttp.login(parent.base_url)
    names = [f"feed{i}" for i in range(8)]
    for name in names:
        services.delays[f"/rss/{name}.xml"] = 0.5  # long enough for both to hold work
    task_id = _setup_task(admin, services, names)
    nodes = [admin.create_node_with_credentials(f"edge-{i}") for i in range(2)]
    for index, creds in enumerate(nodes):
        children(parent.base_url, creds, name=f"edge-{index}", CASCADE_CAPACITY="2")
    run_id = _dispatch(admin, task_id)
    done = wait_for(lambda: _all_completed(admin, run_id, 8), timeout=90, what="8 allocations")
    assert all(services.hits[f"/rss/{name}.xml"] == 1 for name in names), services.hits
    assert {a["leased_to"] for a in done} == {creds.node_id for creds in nodes}
    assert admin.get("/api/v1/articles").json()["data"]["total"] == 24


def test_a_killed_childs_lease_is_finished_by_another_child(live_parent, services, children):
    parent = live_parent(extra_env=FAST_PARENT)
    admin = AdminHttp.login(parent.base_url)
    services.delays["/rss/slow.xml"] = 30  # the first fetch hangs: the child dies mid-lease
    run_id = _dispatch(admin, _setup_task(admin, services, ["slow"]))
    first_creds = admin.create_node_with_credentials("doomed")
    first = children(parent.base_url, first_creds, name="doomed")
    wait_for(lambda: services.hits.get("/rss/slow.xml") == 1, what="the first child to start")
    os.killpg(first.process.pid, signal.SIGKILL)
    first.process.wait()

    second_creds = admin.create_node_with_credentials("rescuer")
    children(parent.base_url, second_creds, name="rescuer")
    done = wait_for(lambda: _all_completed(admin, run_id, 1), timeout=60, what="the rescue")
    assert done[0]["leased_to"] == second_creds.node_id and done[0]["attempt"] == 2
    assert admin.get("/api/v1/articles").json()["data"]["total"] == 3
    assert len(services.pushes) == 1


def test_rejected_credentials_stop_the_child_with_exit_code_3(live_parent, services, children):
    parent = live_parent()
    admin = AdminHttp.login(parent.base_url)
    creds = admin.create_node_with_credentials("wrong")
    creds.api_secret = "CS" + "0" * 32
    child = children(parent.base_url, creds, name="wrong")
    assert child.process.wait(timeout=60) == 3
    assert "认证失败" in child.log_text() and creds.api_secret not in child.log_text()


def test_disabled_node_stops_the_child_with_exit_code_3(live_parent, services, children):
    parent = live_parent(extra_env=FAST_PARENT)
    admin = AdminHttp.login(parent.base_url)
    creds = admin.create_node_with_credentials("to-disable")
    child = children(parent.base_url, creds, name="to-disable")
    wait_for(lambda: admin.get(f"/api/v1/cascade/nodes/{creds.node_id}").json()["data"]["status"]
             == "online", what="online")
    admin.request("PUT", f"/api/v1/cascade/nodes/{creds.node_id}", json={"is_active": False})
    assert child.process.wait(timeout=60) == 3
    assert "node_disabled" in child.log_text()


def test_first_sigterm_finishes_the_lease_second_exits_at_once(live_parent, services, children):
    parent = live_parent(extra_env={**FAST_PARENT, "WERSS_CASCADE_LEASE_TTL": "60"})
    admin = AdminHttp.login(parent.base_url)
    services.delays["/rss/busy.xml"] = 4
    run_id = _dispatch(admin, _setup_task(admin, services, ["busy"]))
    creds = admin.create_node_with_credentials("graceful")
    child = children(parent.base_url, creds, name="graceful")
    wait_for(lambda: services.hits.get("/rss/busy.xml") == 1, what="the lease to start")
    child.process.send_signal(signal.SIGTERM)
    assert child.process.wait(timeout=60) == 0
    done = wait_for(lambda: _all_completed(admin, run_id, 1), timeout=10, what="completion")
    assert done[0]["leased_to"] == creds.node_id, "the first SIGTERM let the lease finish"

    services.delays["/rss/busy.xml"] = 30
    run_id = _dispatch(admin, done[0]["task_id"])
    impatient = children(parent.base_url, creds, name="impatient")
    wait_for(lambda: services.hits.get("/rss/busy.xml") == 2, what="the second lease to start")
    impatient.process.send_signal(signal.SIGTERM)
    time.sleep(1)
    started = time.monotonic()
    impatient.process.send_signal(signal.SIGTERM)
    code = impatient.process.wait(timeout=10)
    assert code != 0 and time.monotonic() - started < 5


def test_parent_outage_loses_nothing_and_applies_nothing_twice(live_parent, services,
                                                               children, db_url, tmp_path):
    from tests.helpers import SECRET_KEY
    from tests.support.processes import start_live_parent

    env = {**FAST_PARENT, "WERSS_CASCADE_LEASE_TTL": "120"}
    port, run_id, creds, child = _parent_down_mid_lease(live_parent, services, children, env,
                                                        "during", "patient")
    assert child.process.poll() is None, "the child keeps running while the parent is down"
    time.sleep(3)  # the child keeps retrying with backoff meanwhile
    revived = start_live_parent(database_url=db_url, secret_key=SECRET_KEY, workdir=tmp_path,
                                name="revived", port=port, extra_env=env)
    try:
        admin = AdminHttp.login(revived.base_url)
        done = wait_for(lambda: _all_completed(admin, run_id, 1), timeout=90,
                        what="the results to arrive after the outage")
        assert done[0]["leased_to"] == creds.node_id and done[0]["attempt"] == 1
        assert admin.get("/api/v1/articles").json()["data"]["total"] == 3
        leases = admin.get("/api/v1/cascade/allocations", params={"run_id": run_id}).json()
        assert leases["data"]["total"] == 1
        assert len(services.pushes) == 1, "pushed exactly once"
        status = wait_for(lambda: _outbox_empty(child), what="the outbox to drain")
        assert status
    finally:
        revived.stop()


def _parent_down_mid_lease(live_parent, services, children, env: dict, feed: str, node: str):
    """Stop the parent while a child collects ``feed`` for a lease; once the child notices,
    return (the parent's port, the run id, the node's credentials, the child)."""
    parent = live_parent(extra_env=env)
    port = int(parent.base_url.rsplit(":", 1)[1])
    admin = AdminHttp.login(parent.base_url)
    services.delays[f"/rss/{feed}.xml"] = 3  # the parent goes down while this is collected
    run_id = _dispatch(admin, _setup_task(admin, services, [feed]))
    creds = admin.create_node_with_credentials(node)
    child = children(parent.base_url, creds, name=node)
    wait_for(lambda: services.hits.get(f"/rss/{feed}.xml") == 1, what="the lease to start")
    parent.stop()
    wait_for(lambda: "parent unavailable" in child.log_text()
             or "cannot reach the parent" in child.log_text(), timeout=30,
             what="the child to notice the outage")
    return port, run_id, creds, child


def _outbox_empty(child) -> bool:
    import sqlite3

    with sqlite3.connect(child.data_dir / "child-cache.db") as connection:
        return connection.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0


def test_kill_9_while_the_parent_is_down_loses_nothing(live_parent, services, children, db_url,
                                                       tmp_path):
    """A child killed while it waits for the parent (it pushes only what the parent hands
    out) hands its lease back on restart, and the articles are stored and pushed once."""
    from tests.helpers import SECRET_KEY
    from tests.support.processes import start_live_parent

    env = {**FAST_PARENT, "WERSS_CASCADE_LEASE_TTL": "300"}
    port, run_id, creds, child = _parent_down_mid_lease(live_parent, services, children, env,
                                                        "kept", "crashy")
    assert services.pushes == [], "nothing is pushed that the parent did not hand out"
    os.killpg(child.process.pid, signal.SIGKILL)
    child.process.wait()

    revived = start_live_parent(database_url=db_url, secret_key=SECRET_KEY, workdir=tmp_path,
                                name="revived", port=port, extra_env=env)
    try:
        restarted = children(revived.base_url, creds, name="crashy")  # same data directory
        admin = AdminHttp.login(revived.base_url)
        done = wait_for(lambda: _all_completed(admin, run_id, 1), timeout=60,
                        what="the outbox to drain after the restart")
        assert done[0]["attempt"] == 1 and done[0]["leased_to"] == creds.node_id
        assert admin.get("/api/v1/articles").json()["data"]["total"] == 3
        assert len(services.pushes) == 1
        wait_for(lambda: _outbox_empty(restarted), what="an empty outbox")
    finally:
        revived.stop()


def test_a_restarted_child_hands_back_the_lease_it_died_with(live_parent, services, children):
    """Leases in hand at a kill -9 are released on restart, not left to expire."""
    parent = live_parent(extra_env={**FAST_PARENT, "WERSS_CASCADE_LEASE_TTL": "600"})
    admin = AdminHttp.login(parent.base_url)
    services.delays["/rss/held.xml"] = 30
    run_id = _dispatch(admin, _setup_task(admin, services, ["held"]))
    creds = admin.create_node_with_credentials("phoenix")
    child = children(parent.base_url, creds, name="phoenix")
    wait_for(lambda: services.hits.get("/rss/held.xml") == 1, what="the lease to start")
    os.killpg(child.process.pid, signal.SIGKILL)
    child.process.wait()
    children(parent.base_url, creds, name="phoenix")  # same data directory
    # Well inside the 600 s TTL: only a release can make the work available again.
    done = wait_for(lambda: _all_completed(admin, run_id, 1), timeout=60, what="completion")
    assert done[0]["attempt"] == 1, "a release does not spend an attempt"


def test_sigterm_while_waiting_for_the_parent_exits_cleanly(children, tmp_path):
    from tests.helpers import NodeCredentials, free_port

    creds = NodeCredentials("n", "CN" + "a" * 32, "CS" + "b" * 32)
    child = children(f"http://127.0.0.1:{free_port()}", creds, name="lonely")
    wait_for(lambda: "parent not reachable yet" in child.log_text(), what="the retry loop")
    child.process.send_signal(signal.SIGTERM)
    assert child.process.wait(timeout=30) == 0


def test_a_health_port_in_use_is_a_configuration_error(children, tmp_path):
    import socket

    from tests.helpers import NodeCredentials

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        creds = NodeCredentials("n", "CN" + "a" * 32, "CS" + "b" * 32)
        child = children("http://127.0.0.1:9", creds, name="clash",
                         CASCADE_HEALTH_LISTEN=f"127.0.0.1:{port}")
        assert child.process.wait(timeout=30) == 2
    assert "CASCADE_HEALTH_LISTEN" in child.log_text() and "Traceback" not in child.log_text()


def test_two_tasks_on_one_feed_each_push_to_their_own_webhook(live_parent, services, children):
    parent = live_parent(extra_env=FAST_PARENT)
    admin = AdminHttp.login(parent.base_url)
    feed = admin.post("/api/v1/feeds/import", json={"feeds": [
        {"mp_name": "shared", "source_type": "rss", "source_url": services.feed_url("shared")}]}
    ).json()["data"]["created_ids"][0]
    runs = []
    for hook in ("a", "b"):
        task = admin.post("/api/v1/message-tasks", json={
            "name": f"task {hook}", "message_type": 1, "message_template": TEMPLATE,
            "web_hook_url": f"{services.base_url}/hook-{hook}", "cron_exp": "0 0 1 1 *",
            "push_newest": 10, "mps_id": [{"id": feed, "mp_name": "shared"}]}).json()["data"]
        runs.append(_dispatch(admin, task["id"]))
    creds = admin.create_node_with_credentials("both")
    children(parent.base_url, creds, name="both", CASCADE_CAPACITY="1")
    for run_id in runs:
        wait_for(lambda run_id=run_id: _all_completed(admin, run_id, 1), what="both runs")
    assert sorted(push["path"] for push in services.pushes) == ["/hook-a", "/hook-b"]
    assert admin.get("/api/v1/articles").json()["data"]["total"] == 3
