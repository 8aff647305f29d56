"""The child's side of send permits: wait for the granted moment, degrade on old parents."""

from __future__ import annotations

import threading
import time

import pytest

from child import errors
from child.notifiers.base import NotifyError
from child.permits import SendPermits


class Client:
    def __init__(self, *answers):
        self.answers = list(answers)
        self.asked = []

    def send_permit(self, body):
        self.asked.append(body)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_waits_for_the_granted_moment_and_returns_the_limit():
    permits = SendPermits(Client({"granted": True, "wait": 0.3, "limit": 20, "per": 60}))
    started = time.monotonic()
    assert permits("dingtalk", "a" * 64) == {"limit": 20, "per": 60}
    assert time.monotonic() - started >= 0.3


def test_a_refusal_is_asked_again_after_retry_after():
    client = Client({"granted": False, "retry_after": 0.1},
                    {"granted": True, "wait": 0, "limit": 20, "per": 60})
    assert SendPermits(client)("dingtalk", "a" * 64)["limit"] == 20
    assert client.asked == [{"channel": "dingtalk", "destination": "a" * 64}] * 2


def test_a_parent_without_the_route_means_no_shared_limit():
    client = Client(errors.NotFoundError("no such route", status=404))
    permits = SendPermits(client)
    assert permits("dingtalk", "a" * 64) is None
    assert permits("dingtalk", "a" * 64) is None
    assert len(client.asked) == 1  # not asked again


def test_an_unreachable_parent_fails_the_push_as_retryable():
    permits = SendPermits(Client(errors.ParentUnavailableError("down", status=None)))
    with pytest.raises(NotifyError) as caught:
        permits("dingtalk", "a" * 64)
    assert caught.value.retryable is True


def test_stopping_ends_the_wait_at_once():
    stop = threading.Event()
    permits = SendPermits(Client({"granted": True, "wait": 30, "limit": 20, "per": 60}), stop)
    threading.Timer(0.1, stop.set).start()
    started = time.monotonic()
    with pytest.raises(NotifyError, match="stopping"):
        permits("dingtalk", "a" * 64)
    assert time.monotonic() - started < 5
