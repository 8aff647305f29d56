"""The child's JSON-lines logs: its node id and the lease a line is about, as fields."""

import io
import json
import logging
import subprocess
import sys
import threading

import pytest

from child.agent import Agent
from child.cache import LocalCache
from child.config import load_config
from shared import jsonlog
from tests.support.local_server import LocalServer, Reply

KEY, SECRET = "CN" + "a" * 32, "CS" + "b" * 32


@pytest.fixture
def captured():
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    jsonlog.configure("json", "INFO", stream)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])
    jsonlog._process_fields.clear()


@pytest.fixture
def agent(tmp_path):
    server = LocalServer().__enter__()
    server.serve("/api/v1/cascade/heartbeat", Reply(200, json.dumps(
        {"code": 0, "message": "ok", "data": {"node_id": "node-42", "heartbeat_interval": 60}})))
    config = load_config(environ={"CASCADE_PARENT_URL": server.url(""), "CASCADE_API_KEY": KEY,
                                  "CASCADE_API_SECRET": SECRET, "CASCADE_DATA_DIR": str(tmp_path)})
    made = Agent(config, cache=LocalCache(tmp_path))
    yield made
    made.close()
    server.__exit__(None, None, None)


def test_lines_carry_the_node_id_from_the_first_heartbeat(agent, captured):
    agent.heartbeat()
    logging.getLogger("werss.child").warning("after the heartbeat")
    line = [entry for entry in captured() if entry["message"] == "after the heartbeat"][0]
    assert line["node_id"] == "node-42" and line["level"] == "WARNING"
    assert line["logger"] == "werss.child" and line["time"].endswith("Z")


def test_lines_logged_while_working_a_lease_name_it(agent, captured):
    done = threading.Event()

    def execute(work):  # stands in for collecting and pushing
        logging.getLogger("werss.child").info("collecting")
        done.set()

    agent.runner.execute = execute
    agent._start({"lease_id": "lease-7", "allocation_id": "a-1", "attempt": 1,
                  "expires_at": "2099-01-01T00:00:00Z", "feeds": [], "task": {"id": "t"}})
    assert done.wait(10)
    logging.getLogger("werss.child").info("outside the lease")
    lines = {entry["message"]: entry for entry in captured()}
    assert lines["collecting"]["lease_id"] == "lease-7"
    assert "lease_id" not in lines["outside the lease"]


def test_an_unknown_log_format_is_refused_at_start(tmp_path):
    result = subprocess.run([sys.executable, "-m", "child", "status"], capture_output=True,
                            text=True, timeout=60, env={"CASCADE_LOG_FORMAT": "xml",
                                                        "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2 and "CASCADE_LOG_FORMAT" in result.stderr
