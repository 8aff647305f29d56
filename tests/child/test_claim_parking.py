"""The child's side of claim parking, against a local HTTP server playing the parent.

A parent that parks names its work generation in ``X-Work-Token``; the child sends the token
back with ``Prefer: wait=50`` and the parent holds the claim until work appears
(docs/PROTOCOL.md#post-claim). A parent without tokens paces claims with ``Retry-After``.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from child.agent import Agent
from child.cache import LocalCache
from child.config import load_config
from tests.support.local_server import LocalServer, Recorded, Reply

KEY, SECRET = "CN" + "a" * 32, "CS" + "b" * 32
CLAIM = "/api/v1/cascade/claim"
OK = json.dumps({"code": 0, "message": "success", "data": {}})


def _agent(server, tmp_path, **environ) -> Agent:
    config = load_config(environ={"CASCADE_PARENT_URL": server.url(""), "CASCADE_API_KEY": KEY,
                                  "CASCADE_API_SECRET": SECRET,
                                  "CASCADE_DATA_DIR": str(tmp_path), **environ})
    return Agent(config, cache=LocalCache(tmp_path))


class _StopAfterWaits:
    """The agent's stop event: records the claim loop's pauses (without sleeping them) and
    stops it after ``count`` of them."""

    def __init__(self, count: int):
        self.count = count
        self.waits: list[float] = []

    def is_set(self) -> bool:
        return len(self.waits) >= self.count

    def set(self) -> None:
        self.waits.append(-1.0)

    def wait(self, timeout=None) -> bool:
        self.waits.append(timeout)
        return self.is_set()


def _answers(*replies: Reply):
    """Answer the claims in turn; any claim after the last is answered like the last."""
    queue = list(replies)

    def answer(request: Recorded) -> Reply:
        return queue.pop(0) if len(queue) > 1 else queue[0]
    return answer


def test_a_parked_claim_is_sent_with_the_last_token_and_again_at_once_after_its_answer(tmp_path):
    """The app's empty answer carries a token: the child does not sleep its Retry-After but
    parks the next claim with that token. The parent answers the parked claim after a while
    (no change: same token, Retry-After 0) and the child parks again at once, with a read
    timeout long enough for the park (here longer than CASCADE_REQUEST_TIMEOUT)."""
    with LocalServer() as server:
        server.serve(CLAIM, _answers(
            Reply(204, b"", {"Retry-After": "30", "X-Work-Token": "7.1764600000"}),
            Reply(204, b"", {"Retry-After": "0", "X-Work-Token": "7.1764600000",
                             "Preference-Applied": "wait=50"}, delay=2.0),
            Reply(204, b"", {"Retry-After": "0", "X-Work-Token": "8.1764600000"})))
        agent = _agent(server, tmp_path, CASCADE_REQUEST_TIMEOUT="1")
        try:
            agent.stop_event = _StopAfterWaits(3)
            agent._claim_loop()
        finally:
            agent.close()
        claims = server.requests_to(CLAIM)
    assert [c.headers.get("X-Work-Token") for c in claims] == [
        None, "7.1764600000", "7.1764600000"]
    assert [c.headers.get("Prefer") for c in claims] == [None, "wait=50", "wait=50"]
    first, after_park, _ = agent.stop_event.waits
    assert first <= 1.0  # not the 30 s of its Retry-After: at most the one-a-second floor
    assert after_park == 0.0  # the parked claim took 2 s: straight back
    assert agent.client.claim_token == "8.1764600000"  # always the last answer's token


def test_a_parent_without_tokens_is_followed_by_its_retry_after(tmp_path):
    """No token (an older parent, the WeRSS prefix, a proxy answering itself): the child
    sleeps the Retry-After and sends no parking headers, even right after a parked claim."""
    with LocalServer() as server:
        server.serve(CLAIM, _answers(
            Reply(204, b"", {"Retry-After": "5", "X-Work-Token": "3.1764600000"}),
            Reply(204, b"", {"Retry-After": "7"})))
        agent = _agent(server, tmp_path)
        try:
            agent.stop_event = _StopAfterWaits(3)
            agent._claim_loop()
        finally:
            agent.close()
        claims = server.requests_to(CLAIM)
    assert [c.headers.get("X-Work-Token") for c in claims] == [None, "3.1764600000", None]
    assert [c.headers.get("Prefer") for c in claims] == [None, "wait=50", None]
    assert 7.0 <= agent.stop_event.waits[1] <= 7.7 and 7.0 <= agent.stop_event.waits[2] <= 7.7


@pytest.mark.parametrize("headers", [
    {"Retry-After": "0", "X-Work-Token": "5.1764600000"},  # "parks" but answers at once
    {"Retry-After": "0"},
    {}])
def test_empty_answers_that_come_back_at_once_are_claimed_at_most_once_a_second(tmp_path,
                                                                                headers):
    """A parent or proxy that does not really park must not get a busy loop."""
    arrivals: list[float] = []

    def answer(request: Recorded) -> Reply:
        arrivals.append(time.monotonic())
        return Reply(204, b"", headers)

    with LocalServer() as server:
        server.serve(CLAIM, answer)
        agent = _agent(server, tmp_path, CASCADE_CLAIM_WAIT="0")
        loop = threading.Thread(target=agent._claim_loop)
        try:
            loop.start()
            time.sleep(3.5)
        finally:
            agent.stop_event.set()
            loop.join(10)
            agent.close()
    # Claims start at least a second apart: in 3.5 s the first and at most three more (a busy
    # loop would send hundreds).
    assert 2 <= len(arrivals) <= 4


def _serve_start_up(server: LocalServer) -> None:
    server.serve("/api/v1/cascade/heartbeat",
                 Reply(200, json.dumps({"code": 0, "message": "success",
                                        "data": {"node_id": "n1"}})))
    for path in ("/api/v1/cascade/feeds", "/api/v1/cascade/message-tasks"):
        server.serve(path, Reply(200, json.dumps({"code": 0, "message": "success", "data": []})))
    server.serve("/api/v1/cascade/claim/cancel", Reply(200, OK))


def _wait_for(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_graceful_stop_closes_a_parked_claim_at_once(tmp_path):
    """First SIGTERM while a claim is parked for a minute: the child closes it and stops,
    without asking the parent to cancel anything (a parked claim holds nothing there)."""
    with LocalServer() as server:
        _serve_start_up(server)
        server.serve(CLAIM, _answers(
            Reply(204, b"", {"Retry-After": "30", "X-Work-Token": "9.1764600000"}),
            Reply(204, b"", {"Retry-After": "0", "X-Work-Token": "9.1764600000"}, delay=60)))
        agent = _agent(server, tmp_path)
        runner = threading.Thread(target=agent.run)
        try:
            runner.start()
            _wait_for(lambda: len(server.requests_to(CLAIM)) == 2)
            agent.begin_drain()
            runner.join(10)
            stopped = not runner.is_alive()
            # The claim was closed, not left behind in a thread still reading it.
            claim_threads = [t for t in threading.enumerate() if t.name == "werss-claim"]
        finally:
            agent.stop()
            runner.join(70)
            agent.close()
        assert stopped, "the stop waited for the parked claim's answer"
        assert claim_threads == []
        assert server.requests_to(CLAIM)[1].headers.get("Prefer") == "wait=50"
        assert len(server.requests_to(CLAIM)) == 2  # and claimed nothing after the stop
        assert server.requests_to("/api/v1/cascade/claim/cancel") == []


def test_a_stop_asks_a_long_polling_parent_to_end_the_claim(tmp_path):
    """A parent older than claim pacing (no Retry-After, no token) holds the claim in a
    long-poll thread of its own: the child asks it to end the wait rather than dropping it."""
    ended = threading.Event()

    def claim(request: Recorded) -> Reply:
        ended.wait(30)  # the long-poll ends when the cancel comes
        return Reply(204, b"")

    def cancel(request: Recorded) -> Reply:
        ended.set()
        return Reply(200, OK)

    with LocalServer() as server:
        _serve_start_up(server)
        server.serve(CLAIM, claim)
        server.serve("/api/v1/cascade/claim/cancel", cancel)
        agent = _agent(server, tmp_path)
        runner = threading.Thread(target=agent.run)
        try:
            runner.start()
            _wait_for(lambda: len(server.requests_to(CLAIM)) == 1)
            agent.begin_drain()
            runner.join(10)
            stopped = not runner.is_alive()
        finally:
            ended.set()
            agent.stop()
            runner.join(30)
            agent.close()
        assert stopped
        assert len(server.requests_to("/api/v1/cascade/claim/cancel")) == 1
