"""`docker-compose up` for real: the seed flow against the parent and child containers."""

from __future__ import annotations

import re
import subprocess
import time

import pytest

from deploy.local_services import LocalServices
from shared.timeutil import parse_iso
from tests.deploy.stack import Stack

pytestmark = pytest.mark.deploy

# README.md's awk program that turns `create-node --credentials` into .env lines.
README_AWK = ('/^api_key:/ {print "CASCADE_API_KEY=" $2} '
              '/^api_secret:/ {print "CASCADE_API_SECRET=" $2}')
TEMPLATE = ("{{ feed.mp_name }}: {{ articles|length }} new\n"
            "{% for a in articles %}- {{ a.title }}\n{% endfor %}")
FLAVOURS = ["v1", "v2"]


@pytest.fixture
def host_services():
    # Every address: the containers reach the host through their network's gateway.
    services = LocalServices(host="0.0.0.0")
    yield services
    services.close()


def _stack(composes, flavour, tmp_path, **settings):
    return Stack(composes[flavour], tmp_path, **settings)


@pytest.fixture(params=FLAVOURS)
def stack(request, composes, built_image, tmp_path):
    # The feed is on the host's address on the compose network: a private one.
    stack = _stack(composes, request.param, tmp_path, CASCADE_ALLOW_PRIVATE_ADDRESSES="true")
    yield stack
    print(stack.logs())         # pytest shows it only when the test failed
    stack.down()


@pytest.fixture(params=FLAVOURS)
def postgres_stack(request, composes, built_image, postgres_image, tmp_path):
    password = "pg-" + "x" * 8
    stack = _stack(composes, request.param, tmp_path, COMPOSE_PROFILES="postgres",
                   POSTGRES_PASSWORD=password,
                   WERSS_DATABASE_URL=f"postgresql://werss:{password}@postgres:5432/werss")
    yield stack
    print(stack.logs())
    stack.down()


def _dispatch_and_wait(stack: Stack, task_id: str) -> dict:
    run = stack.api("POST", "/api/v1/cascade/dispatch", 201, json={"task_id": task_id})

    def finished():
        items = stack.api("GET", "/api/v1/cascade/allocations",
                          params={"run_id": run["run_id"]})["items"]
        return items[0] if items and items[0]["status"] in ("completed", "dead") else None

    return stack.wait_for(finished, 120, f"run {run['run_id']} to finish")


def _heartbeat_after(stack: Stack, node_id: str, moment: float) -> bool:
    shown = stack.api("GET", f"/api/v1/cascade/nodes/{node_id}")
    beat = shown["last_heartbeat_at"]
    return bool(beat) and shown["status"] == "online" and parse_iso(beat).timestamp() > moment


def _create_child_node(stack: Stack) -> tuple[dict, dict]:
    node = stack.api("POST", "/api/v1/cascade/nodes", 201,
                     json={"name": "compose-child", "node_type": 1})
    creds = stack.api("POST", f"/api/v1/cascade/nodes/{node['node_id']}/credentials")
    return node, creds


def test_parent_and_child_containers_run_the_seed_flow(stack, host_services):
    with stack.phase("parent up and healthy"):
        stack.compose("up", "-d")                   # the parent alone, as the README starts
        stack.wait_healthy()
    assert stack.running_services() == ["parent"]
    stack.login()
    node, creds = _create_child_node(stack)
    stack.write_env(CASCADE_API_KEY=creds["api_key"], CASCADE_API_SECRET=creds["api_secret"])
    with stack.phase("child up and online"):
        stack.compose("--profile", "child", "up", "-d")
        stack.wait_for(lambda: stack.api("GET", f"/api/v1/cascade/nodes/{node['node_id']}")
                       ["status"] == "online", 120, "the child to come online")
    assert stack.running_services() == ["child", "parent"]
    # The child's own health check (the compose file's), run inside its container now.
    healthcheck = stack.service_healthcheck("child")
    assert stack.compose("exec", "-T", "child", *healthcheck).returncode == 0
    for service in ("parent", "child"):               # both run as the image's werss user
        assert stack.compose("exec", "-T", service, "id", "-un").stdout.split() == [b"werss"]

    host = f"http://{stack.gateway()}:{host_services.port}"
    feed = stack.api("POST", "/api/v1/feeds", 201, json={
        "mp_name": "Compose host feed", "source_type": "rss",
        "source_url": f"{host}/rss/compose.xml"})
    task = stack.api("POST", "/api/v1/message-tasks", 201, json={
        "name": "compose push", "message_type": 1, "web_hook_url": f"{host}/hook",
        "message_template": TEMPLATE, "cron_exp": "0 0 1 1 *", "push_newest": 3,
        "mps_id": [{"id": feed["id"], "mp_name": "Compose host feed"}]})

    with stack.phase("dispatched task completed"):
        allocation = _dispatch_and_wait(stack, task["id"])
    assert allocation["status"] == "completed", allocation
    assert allocation["leased_to"] == node["node_id"]
    [result] = allocation["results"]
    assert (result["article_count"], result["new_count"], result["success"]) == (3, 3, True)
    assert len(host_services.pushes) == 1
    assert "Compose host feed: 3 new" in host_services.pushes[0]["body"]
    assert "compose post 1" in host_services.pushes[0]["body"]
    articles = stack.api("GET", "/api/v1/articles", params={"feed_id": feed["id"]})
    assert articles["total"] == 3

    # Containers recreated, volumes kept: the data, the admin and what was pushed survive.
    with stack.phase("down"):
        stack.compose("--profile", "child", "down")
    restarted_at = time.time()
    with stack.phase("up again, child online"):
        stack.compose("--profile", "child", "up", "-d")
        stack.wait_healthy()
        stack.login()
        stack.wait_for(lambda: _heartbeat_after(stack, node["node_id"], restarted_at), 120,
                       "the restarted child's heartbeat")
    assert stack.api("GET", "/api/v1/articles", params={"feed_id": feed["id"]})["total"] == 3
    assert stack.api("GET", f"/api/v1/cascade/nodes/{node['node_id']}")["api_key"] == \
        creds["api_key"]
    again = _dispatch_and_wait(stack, task["id"])
    assert again["status"] == "completed", again
    assert again["results"][0]["pushed_count"] == 0     # each article is pushed once
    assert len(host_services.pushes) == 1

    # The README's way of issuing credentials into .env works inside the parent container.
    issued = stack.compose("exec", "-T", "parent", "werss-parent", "create-node", "--name",
                           "compose-cli", "--credentials")
    lines = subprocess.run(["awk", README_AWK], input=issued.stdout, capture_output=True,
                           check=True).stdout.decode().split()
    assert [line.split("=", 1)[0] for line in lines] == ["CASCADE_API_KEY", "CASCADE_API_SECRET"]
    assert re.fullmatch(r"CASCADE_API_KEY=CN[A-Za-z0-9]{32}", lines[0])


def test_postgres_profile_keeps_the_parent_data_in_postgres(postgres_stack):
    stack = postgres_stack
    with stack.phase("postgres profile up and healthy"):
        stack.compose("up", "-d")                   # COMPOSE_PROFILES=postgres, from .env
        stack.wait_healthy()
    assert stack.running_services() == ["parent", "postgres"]
    stack.login()
    node, _ = _create_child_node(stack)

    stored = stack.compose("exec", "-T", "postgres", "psql", "-U", "werss", "-d", "werss",
                           "-tAc", "select name from nodes")
    assert stored.stdout.decode().split() == ["compose-child"]
    with stack.phase("postgres profile down and up"):
        stack.compose("down")
        stack.compose("up", "-d")
        stack.wait_healthy()
    stack.login()
    assert stack.api("GET", f"/api/v1/cascade/nodes/{node['node_id']}")["name"] == "compose-child"
