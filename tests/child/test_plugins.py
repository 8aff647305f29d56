"""A new channel or source type is its module plus one registry line, and nothing else.

The test registers ``example`` (tests/support/example_plugins.py) in ``shared.channels.REGISTRY``
and ``shared.sources.REGISTRY`` only, then uses it as an admin and a child would.
"""

from __future__ import annotations

import json

import pytest

from shared import channels, sources
from tests.support.local_server import LocalServer, Reply

ARTICLES = [{"id": f"https://example.invalid/{n}", "title": f"post {n}",
             "url": f"https://example.invalid/{n}", "publish_time": 1764300000 + n}
            for n in (1, 2)]


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(channels.REGISTRY, "example", channels.Channel(
        "tests.support.example_plugins:ExampleNotifier", limit=(5, 60.0)))
    monkeypatch.setitem(sources.REGISTRY, "example", sources.Source(
        "tests.support.example_plugins:build"))


@pytest.fixture
def cascade_settings(registered):  # registered before the app reads its channel limits
    return {}


@pytest.fixture
def remote():
    with LocalServer() as server:
        server.serve("/articles.json", Reply(body=json.dumps(ARTICLES)))
        server.serve("/hook", Reply(body=json.dumps({"ok": True}),
                                    headers={"Content-Type": "application/json"}))
        yield server


def _feed_and_task(admin, remote) -> tuple[str, str]:
    feed = admin.post("/api/v1/feeds", json={
        "mp_name": "example news", "source_type": "example",
        "source_url": remote.url("/articles.json")})
    assert feed.status_code == 201, feed.get_json()
    feed_id = feed.get_json()["data"]["id"]
    task = admin.post("/api/v1/message-tasks", json={
        "name": "to example", "message_type": 0, "channel": "example",
        "web_hook_url": remote.url("/hook"), "cron_exp": "0 0 1 1 *", "push_newest": 10,
        "mps_id": [{"id": feed_id, "mp_name": "example news"}]})
    assert task.status_code == 201, task.get_json()
    return feed_id, task.get_json()["data"]["id"]


def test_a_registered_channel_and_source_validate_and_preview(admin, remote):
    feed_id, task_id = _feed_and_task(admin, remote)

    assert feed_id.startswith("EXAMPLE_")
    preview = admin.post("/api/v1/message-tasks/preview",
                         json={"task_id": task_id, "articles": "sample"})
    assert preview.status_code == 200, preview.get_json()
    shown = preview.get_json()["data"]
    assert shown["channel"] == "example"
    [message] = shown["messages"]
    assert message["request"]["method"] == "POST"
    assert message["request"]["body"]["title"] == message["title"]
    console = admin.get("/api/v1/console/channels").get_json()["data"]
    assert "example" in console["channels"] and "example" not in console["signed"]


def test_a_registered_source_is_refused_without_its_url(admin):
    response = admin.post("/api/v1/feeds", json={"mp_name": "no url", "source_type": "example"})

    assert response.status_code == 422
    assert "source_url" in response.get_json()["details"]


def test_a_child_collects_a_registered_source_and_pushes_through_a_registered_channel(
        app, admin, make_agent, remote):
    feed_id, task_id = _feed_and_task(admin, remote)
    run = admin.post("/api/v1/cascade/dispatch", json={"task_id": task_id})
    assert run.status_code == 201, run.get_json()

    agent = make_agent()  # the real collector_for and notifier_for: no seams
    summary = agent.run_once()

    assert summary["leases"] == 1
    assert len(remote.requests_to("/articles.json")) == 1
    [pushed] = remote.requests_to("/hook")
    body = json.loads(pushed.body)
    assert "post 1" in body["text"] and "post 2" in body["text"]
    [allocation] = admin.get("/api/v1/cascade/allocations", query_string={
        "run_id": run.get_json()["data"]["run_id"]}).get_json()["data"]["items"]
    [result] = allocation["results"]
    assert (allocation["status"], result["pushed_count"]) == ("completed", 2)
    feed = admin.get(f"/api/v1/feeds/{feed_id}").get_json()["data"]
    assert feed["last_run_status"] == "success"  # the parent knows the node runs the type
    assert app.config["WERSS_SETTINGS"].channel_limits["example"].count == 5
