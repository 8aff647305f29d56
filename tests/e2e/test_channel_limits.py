"""Real children push signed messages to a fake DingTalk robot under one shared limit."""

from __future__ import annotations

import json

import pytest

from tests.support.fake_vendors import FakeVendors
from tests.support.http_callers import AdminHttp
from tests.support.processes import wait_for

pytestmark = pytest.mark.e2e

LIMIT, WINDOW = 5, 10.0
FEEDS = 8
SECRET = "SECe2e0123456789abcdefe2e"


def test_four_children_hold_one_robots_limit_and_deliver_everything(live_parent, services,
                                                                    children, tmp_path):
    config = tmp_path / "parent.yaml"
    config.write_text(json.dumps({"channel_limits": {"dingtalk": {
        "count": LIMIT, "per": WINDOW, "margin": 1.0}}}))
    parent = live_parent(extra_env={"WERSS_CONFIG": str(config),
                                    "WERSS_CASCADE_MAINTENANCE_INTERVAL": "1"})
    admin = AdminHttp.login(parent.base_url)
    with FakeVendors() as fake:
        robot = fake.add("dingtalk", "e2e-robot-token-0123", secret=SECRET, limit=LIMIT,
                         window=WINDOW, throttle_next=1)
        names = [f"feed{i}" for i in range(FEEDS)]
        feeds = [{"mp_name": n, "source_type": "rss", "source_url": services.feed_url(n)}
                 for n in names]
        assert admin.post("/api/v1/feeds/import", json={"feeds": feeds}).status_code == 200
        task = admin.post("/api/v1/message-tasks", json={
            "name": "钉钉推送", "message_type": 0, "channel": "dingtalk",
            "web_hook_url": fake.url(robot), "sign_secret": SECRET,
            # The feeds' articles predate the task: push them on this first run.
            "push_newest": 3, "cron_exp": "0 0 1 1 *"}).json()["data"]
        for index in range(4):
            creds = admin.create_node_with_credentials(f"edge-{index}")
            children(parent.base_url, creds, name=f"edge-{index}", CASCADE_CAPACITY="2")
        response = admin.post("/api/v1/cascade/dispatch", json={"task_id": task["id"]})
        assert response.status_code == 201, response.text

        wait_for(lambda: len(robot.accepted) >= FEEDS, timeout=120, what="every feed pushed")

        texts = [r.body["markdown"]["text"] for r in robot.accepted]
        for name in names:  # every article of every feed arrived
            for n in (1, 2, 3):
                assert sum(f"{name} post {n}]" in t for t in texts) == 1, (name, n)
        assert robot.max_in_window() <= LIMIT
        # The one throttling answer was the deliberate first one; it was retried, and no
        # signature was refused.
        assert len(robot.refused) == 1
