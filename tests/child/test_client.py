"""The child's client against a misbehaving parent (a real local HTTP server)."""

import json

import pytest

from child import errors
from child.client import ParentClient, RetryPolicy
from child.config import load_config
from shared import signing
from tests.support.local_server import LocalServer, Reply

KEY, SECRET = "CN" + "a" * 32, "CS" + "b" * 32


def client_for(server, sleeps, attempts=3, mode="signed"):
    config = load_config(environ={"CASCADE_PARENT_URL": server.url(""), "CASCADE_API_KEY": KEY,
                                  "CASCADE_API_SECRET": SECRET, "CASCADE_AUTH_MODE": mode})
    return ParentClient(config, retry=RetryPolicy(max_attempts=attempts), sleep=sleeps.append)


def envelope(status, error):
    return json.dumps({"code": status, "message": "m", "error": error, "details": None,
                       "request_id": "r1"})


def test_503_is_retried_honouring_retry_after_with_a_fresh_signature_each_time():
    with LocalServer() as server:
        answers = iter([Reply(503, envelope(503, "service_unavailable"), {"Retry-After": "7"}),
                        Reply(200, json.dumps({"code": 0, "message": "ok", "data": {"x": 1}}))])
        server.serve("/api/v1/cascade/heartbeat", lambda request: next(answers))
        sleeps = []
        assert client_for(server, sleeps).heartbeat({}) == {"x": 1}
        sent = server.requests_to("/api/v1/cascade/heartbeat")
    assert sleeps == [7.0]
    nonces = {signing.parse_authorization(r.headers.get("Authorization")).nonce for r in sent}
    assert len(sent) == 2 and len(nonces) == 2


def test_refused_credentials_are_not_retried():
    with LocalServer() as server:
        server.serve("/api/v1/cascade/heartbeat", Reply(401, envelope(401, "invalid_credentials")))
        sleeps = []
        with pytest.raises(errors.AuthenticationError) as caught:
            client_for(server, sleeps).heartbeat({})
        assert len(server.requests_to("/api/v1/cascade/heartbeat")) == 1
    assert errors.is_fatal(caught.value) and caught.value.request_id == "r1" and sleeps == []


def test_an_answer_cut_off_mid_body_is_the_parent_being_unavailable():
    with LocalServer() as server:
        # Content-Length promises more than is sent before the connection closes.
        server.serve("/api/v1/cascade/whoami",
                     Reply(200, b'{"code": 0, "da', {"Content-Length": "500"},
                           content_length=False))
        with pytest.raises(errors.ParentUnavailableError):
            client_for(server, [], attempts=2).whoami()
        assert len(server.requests_to("/api/v1/cascade/whoami")) == 2


def test_the_idempotency_key_is_kept_across_retries():
    with LocalServer() as server:
        answers = iter([Reply(502, b"bad gateway"),
                        Reply(200, json.dumps({"code": 0, "message": "ok", "data": {}}))])
        server.serve("/api/v1/cascade/report-result", lambda request: next(answers))
        client_for(server, []).send_write("POST", "/report-result", {"task_id": "t"}, "key-1")
        keys = [r.headers.get("Idempotency-Key")
                for r in server.requests_to("/api/v1/cascade/report-result")]
    assert keys == ["key-1", "key-1"]


class _StopAtFirstWait:
    """The agent's stop event: records the first pause of its claim loop, then stops it."""

    def __init__(self):
        self.waits = []

    def is_set(self):
        return bool(self.waits)

    def set(self):
        self.waits.append(None)

    def wait(self, timeout=None):
        self.waits.append(timeout)
        return True


@pytest.mark.parametrize("claim_wait, retry_after, low, high", [
    ("25", "7", 7.0, 7.7), ("25", "86400", 25.0, 27.5), ("2", "7", 2.0, 2.2)])
def test_an_empty_claim_waits_the_parents_retry_after(tmp_path, claim_wait, retry_after, low,
                                                      high):
    """The parent answers an idle claim at once and says when work is due; the child comes
    back then (a little spread, never later than its claim_wait), not on a timer of its own."""
    from child.agent import Agent
    from child.cache import LocalCache

    with LocalServer() as server:
        server.serve("/api/v1/cascade/claim", Reply(204, b"", {"Retry-After": retry_after}))
        config = load_config(environ={"CASCADE_PARENT_URL": server.url(""), "CASCADE_API_KEY": KEY,
                                      "CASCADE_API_SECRET": SECRET, "CASCADE_CLAIM_WAIT": claim_wait,
                                      "CASCADE_DATA_DIR": str(tmp_path)})
        agent = Agent(config, cache=LocalCache(tmp_path))
        try:
            agent.stop_event = _StopAtFirstWait()
            agent._claim_loop()
        finally:
            agent.close()
        assert len(server.requests_to("/api/v1/cascade/claim")) == 1
    assert low <= agent.stop_event.waits[0] <= high
