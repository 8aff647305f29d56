"""The seed guide's configuration, verbatim, and how a child starts and stops.

The three blocks below are copied character for character from the guide's 配置步骤
(parent config.yaml, child config.yaml, environment variables). The only edits a reader
makes, and this test makes, are the placeholders the guide asks them to fill in: the
parent's address and the credentials the parent issued.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from deploy.local_services import LocalServices
from tests.helpers import ADMIN_PASSWORD, free_port
from tests.support.http_callers import AdminHttp
from tests.support.processes import clean_env, start_child, wait_for, werss_child_executable

pytestmark = pytest.mark.e2e

GUIDE_PARENT_CONFIG = """\
# config.yaml
cascade:
  enabled: False  # 父节点不需要启用级联
  node_type: parent
"""

GUIDE_CHILD_CONFIG = """\
# config.yaml
cascade:
  enabled: True
  node_type: child
  parent_api_url: "http://parent-server:8001"  # 父节点API地址
  api_key: "CNxxxxx"  # 从父节点获取的API Key
  api_secret: "CSxxxxx"  # 从父节点获取的Secret
  sync_interval: 300  # 同步间隔（秒）
  heartbeat_interval: 60  # 心跳间隔（秒）
"""

GUIDE_ENVIRONMENT = """\
# 父节点（默认）
CASCADE_ENABLED=False

# 子节点
CASCADE_ENABLED=True
CASCADE_NODE_TYPE=child
CASCADE_PARENT_URL=http://parent-server:8001
CASCADE_API_KEY=CNxxxxx
CASCADE_API_SECRET=CSxxxxx
CASCADE_SYNC_INTERVAL=300
CASCADE_HEARTBEAT_INTERVAL=60
"""


def filled_in(block: str, base_url: str, creds) -> str:
    """The guide's placeholders, filled in as its reader would."""
    return (block.replace("http://parent-server:8001", base_url)
            .replace("CNxxxxx", creds.api_key).replace("CSxxxxx", creds.api_secret))


def _task(admin: AdminHttp, services: LocalServices, name: str) -> str:
    feed = {"mp_name": name, "source_type": "rss", "source_url": services.feed_url(name)}
    imported = admin.post("/api/v1/feeds/import", json={"feeds": [feed]}).json()["data"]
    task = admin.post("/api/v1/message-tasks", json={
        "name": name, "message_type": 1, "web_hook_url": services.base_url + "/hook",
        "mps_id": [{"id": imported["created_ids"][0], "mp_name": name}],
        "message_template": "{{ feed.mp_name }}: {{ articles|length }}",
        # The local feed's three articles predate the task: push them on its first run.
        "cron_exp": "0 0 1 1 *", "push_newest": 3}).json()["data"]
    return task["id"]


def _completed_by(admin: AdminHttp, task_id: str, node_id: str) -> bool:
    run = admin.post("/api/v1/cascade/dispatch", json={"task_id": task_id}).json()["data"]

    def done():
        items = admin.get("/api/v1/cascade/allocations",
                          params={"run_id": run["run_id"]}).json()["data"]["items"]
        return items and all(a["status"] == "completed" and a["leased_to"] == node_id
                             for a in items)

    return wait_for(done, timeout=60, what="the child to complete the task")


def _stop_quickly(process: subprocess.Popen) -> float:
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    return time.monotonic() - started


def _run_child_through_a_task(admin, services, command, workdir, creds, name) -> None:
    log_path = workdir.parent / f"{name}.log"
    with open(log_path, "wb") as log:
        # Beside the guide's settings, only what local test servers need: the feed and the
        # webhook listen on 127.0.0.1, which a child refuses by default.
        env = clean_env(PYTHONUNBUFFERED="1", CASCADE_ALLOW_PRIVATE_ADDRESSES="true")
        child = subprocess.Popen(command, cwd=workdir, env=env,
                                 stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: admin.get(f"/api/v1/cascade/nodes/{creds.node_id}")
                 .json()["data"]["status"] == "online", what=f"the {name} child to connect")
        assert _completed_by(admin, _task(admin, services, name), creds.node_id)
        assert _stop_quickly(child) < 5
    except BaseException:
        print(log_path.read_text(encoding="utf-8", errors="replace"))
        raise
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_the_guides_three_blocks_start_a_parent_and_children_that_complete_tasks(
        live_parent, services, tmp_path):
    parent_config = tmp_path / "parent" / "config.yaml"
    parent_config.parent.mkdir()
    parent_config.write_text(GUIDE_PARENT_CONFIG, encoding="utf-8")
    parent = live_parent(extra_env={"WERSS_CONFIG": str(parent_config)})
    admin = AdminHttp.login(parent.base_url)

    # The child's config.yaml, in the directory it is started from.
    yaml_creds = admin.create_node_with_credentials("子节点1")
    yaml_dir = tmp_path / "child-yaml"
    yaml_dir.mkdir()
    (yaml_dir / "config.yaml").write_text(
        filled_in(GUIDE_CHILD_CONFIG, parent.base_url, yaml_creds), encoding="utf-8")
    _run_child_through_a_task(admin, services, [werss_child_executable(), "run"], yaml_dir,
                              yaml_creds, "yaml")

    # The environment block, sourced by a shell exactly as written (later lines win).
    env_creds = admin.create_node_with_credentials("子节点2")
    env_dir = tmp_path / "child-env"
    env_dir.mkdir()
    (env_dir / "cascade.env").write_text(
        filled_in(GUIDE_ENVIRONMENT, parent.base_url, env_creds), encoding="utf-8")
    command = ["bash", "-c",
               f"set -a; . ./cascade.env; set +a; exec {werss_child_executable()} run"]
    _run_child_through_a_task(admin, services, command, env_dir, env_creds, "env")

    assert [p["body"] for p in services.pushes] == ["yaml: 3", "env: 3"]


def test_an_idle_child_stops_within_two_seconds_of_sigterm(live_parent, tmp_path):
    parent = live_parent()
    admin = AdminHttp.login(parent.base_url)
    creds = admin.create_node_with_credentials("idle")
    child = start_child(parent.base_url, creds, workdir=tmp_path, name="idle",
                        CASCADE_CLAIM_WAIT="25")
    try:
        wait_for(lambda: "connected to" in child.log_text(), what="the child to connect")
        time.sleep(2)  # now inside its 25 s claim long-poll
        started = time.monotonic()
        child.process.send_signal(signal.SIGTERM)
        assert child.process.wait(timeout=30) == 0
        assert time.monotonic() - started < 2, child.log_text()
    finally:
        child.stop()


def test_sigterm_during_start_up_ends_the_child_cleanly(tmp_path):
    creds = type("Creds", (), {"api_key": "CN" + "a" * 32, "api_secret": "CS" + "b" * 32})()
    # Nothing listens on port 9: the child is still starting up, retrying.
    child = start_child("http://127.0.0.1:9", creds, workdir=tmp_path, name="starting")
    try:
        time.sleep(0.3)  # still importing or building the agent
        started = time.monotonic()
        child.process.send_signal(signal.SIGTERM)
        assert child.process.wait(timeout=30) == 0, child.log_text()
        assert time.monotonic() - started < 2
    finally:
        child.stop()


class _NotWeRSS(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _not_found(self):
        body = b"<html><body>404 Not Found</body></html>"
        self.send_response(404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _not_found


def test_a_child_pointed_at_a_server_that_is_not_a_werss_parent_exits_2(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotWeRSS)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    creds = type("Creds", (), {"api_key": "CN" + "a" * 32, "api_secret": "CS" + "b" * 32})()
    child = start_child(f"http://127.0.0.1:{server.server_address[1]}", creds,
                        workdir=tmp_path, name="lost")
    try:
        assert child.process.wait(timeout=30) == 2
        assert "is not a WeRSS parent" in child.log_text()
        assert "CASCADE_PARENT_URL" in child.log_text()
    finally:
        child.stop()
        server.shutdown()
        server.server_close()


DEMO = str(Path(__file__).resolve().parents[2] / "deploy" / "demo.py")


def _demo(parent_url: str, feed_port: int, hook_port: int, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, DEMO, "--parent", parent_url, "--feed-port", str(feed_port),
         "--hook-port", str(hook_port), "--timeout", "60"],
        env=clean_env(**env), stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=120)


def test_make_demo_pushes_once_and_a_second_run_pushes_nothing(live_parent, tmp_path):
    parent = live_parent()
    admin = AdminHttp.login(parent.base_url)
    creds = admin.create_node_with_credentials("local-child")
    child = start_child(parent.base_url, creds, workdir=tmp_path, name="local-child")
    feed_port, hook_port = free_port(), free_port()
    try:
        first = _demo(parent.base_url, feed_port, hook_port, WERSS_ADMIN_PASSWORD=ADMIN_PASSWORD)
        second = _demo(parent.base_url, feed_port, hook_port, WERSS_ADMIN_PASSWORD=ADMIN_PASSWORD)
    finally:
        child.stop()
    assert first.returncode == 0, first.stdout + first.stderr
    assert "webhook deliveries this run: 1" in first.stdout
    assert second.returncode == 0, second.stdout + second.stderr
    assert "webhook deliveries this run: 0" in second.stdout
    assert "[webhook] received" not in second.stdout


def test_make_demo_without_a_terminal_or_password_says_what_to_set(tmp_path):
    result = _demo("http://127.0.0.1:9", free_port(), free_port())
    assert result.returncode == 2
    assert "WERSS_ADMIN_PASSWORD" in result.stderr and "Traceback" not in result.stderr


def _child_md_snippets() -> list[str]:
    text = (Path(__file__).resolve().parents[2] / "docs" / "CHILD.md").read_text("utf-8")
    section = text.split("## Manual sync from Python", 1)[1].split("\n## ", 1)[0]
    return [block.split("```", 1)[0] for block in section.split("```python\n")[1:]]


def test_the_guides_manual_sync_snippet_works_with_its_import_line_changed(live_parent,
                                                                            tmp_path):
    guide_snippet = ("import asyncio\nfrom jobs.cascade_sync import cascade_sync_service\n\n"
                     "async def manual_sync():\n    cascade_sync_service.initialize()\n"
                     "    await cascade_sync_service.full_sync()\n\nasyncio.run(manual_sync())\n")
    async_form, sync_form = _child_md_snippets()
    assert async_form == guide_snippet.replace("from jobs.cascade_sync",
                                               "from child.cascade_sync")
    parent = live_parent()
    admin = AdminHttp.login(parent.base_url)
    admin.post("/api/v1/feeds", json={"mp_name": "one", "source_type": "rss",
                                      "source_url": "http://127.0.0.1:9/one.xml"})
    creds = admin.create_node_with_credentials("manual")
    env = clean_env(CASCADE_PARENT_URL=parent.base_url, CASCADE_API_KEY=creds.api_key,
                    CASCADE_API_SECRET=creds.api_secret,
                    CASCADE_DATA_DIR=str(tmp_path / "cache"))
    for snippet in (async_form, sync_form):
        result = subprocess.run([sys.executable, "-c", snippet], env=env, cwd=tmp_path,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
    assert "'cached_feeds': 1" in result.stdout
    node = admin.get(f"/api/v1/cascade/nodes/{creds.node_id}").json()["data"]
    assert node["last_heartbeat_at"] is not None

    def pulls():
        return admin.get("/api/v1/cascade/sync-logs", params={
            "node_id": creds.node_id, "operation": "sync_feeds"}).json()["data"]["items"]

    # An unchanged pull's row is written by its worker within presence_flush_interval (5 s).
    wait_for(lambda: len(pulls()) >= 2, timeout=15, what="both pulls in the sync log")
    assert len(pulls()) == 2
