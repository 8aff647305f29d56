"""Claim parking (issue 14) against a real gunicorn parent over real HTTP.

A claim that carries its last answer's X-Work-Token and ``Prefer: wait=N`` is held by the
worker's event loop (no thread, no app call) until work appears or its wait ends. The app's
claims are counted in the access log: the worker's own "no change" answers never reach it.
No timing is asserted beyond "well before the wait ended".
"""

from __future__ import annotations

import json
import re
import socket
import time
from urllib.parse import urlsplit

import pytest
import requests

from tests.support.http_callers import AdminHttp, NodeHttp
from tests.support.processes import wait_for

pytestmark = pytest.mark.e2e

THREADS = 8  # `werss-parent serve`'s default
WX_PREFIX = "/api/v1/wx/cascade"


FIRST = "first"  # RawClaim's token: claim without one first, on the same connection


class RawClaim:
    """One claim on a kept-alive connection of its own, sent and read by hand.

    ``token=FIRST`` does what a child does: a first claim without a token, then the parked
    one with the token of that answer, on the same connection.
    """

    def __init__(self, node: NodeHttp, token: str | None = None, wait: int | None = 50,
                 prefix: str | None = None):
        self.node, self.prefix = node, prefix
        self.buffer = b""
        parts = urlsplit(node.base_url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=70)
        if token == FIRST:
            self.send(None, None)
            status, headers, _ = self.answer()
            assert status == 204, status
            token = headers["x-work-token"]
        self.send(token, wait)

    def send(self, token: str | None, wait: int | None) -> None:
        node, prefix = self.node, self.prefix
        headers = {"Connection": "keep-alive"}
        if token is not None:
            headers["X-Work-Token"] = token
        if wait is not None:
            headers["Prefer"] = f"wait={wait}"
        if prefix is not None:
            node = NodeHttp(node.base_url, node.creds, prefix=prefix)
        prepared = node.prepare("POST", "/claim", json={"max": 1}, headers=headers)
        parts = urlsplit(prepared.url)
        lines = [f"POST {prepared.path_url} HTTP/1.1", f"Host: {parts.netloc}"]
        lines += [f"{name}: {value}" for name, value in prepared.headers.items()]
        body = prepared.body if isinstance(prepared.body, bytes) else prepared.body.encode()
        self.sock.sendall("\r\n".join(lines).encode() + b"\r\n\r\n" + body)
        self.sent_at = time.monotonic()

    def answered(self) -> bool:
        """Tell, without waiting, whether the parent has started to answer."""
        self.sock.setblocking(False)
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return bool(self.buffer)
        finally:
            self.sock.setblocking(True)
        self.buffer += data
        return True

    def answer(self, timeout: float = 70) -> tuple[int, dict[str, str], bytes]:
        """Read the whole answer: (status, headers with lower-case names, body)."""
        self.sock.settimeout(timeout)
        while b"\r\n\r\n" not in self.buffer:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError(f"closed without an answer: {self.buffer!r}")
            self.buffer += data
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {name.strip().lower(): value.strip() for name, _, value in
                   (line.partition(":") for line in header_lines)}
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            rest += self.sock.recv(65536)
        self.buffer = b""
        self.answered_at = time.monotonic()
        return int(status_line.split(" ")[1]), headers, rest[:length]

    def close(self) -> None:
        self.sock.close()


def app_claims(parent) -> int:
    """Claims the app has answered so far (gunicorn logs each request it served)."""
    return len(re.findall(r'"POST /api/v1/(?:wx/)?cascade/claim HTTP/1\.[01]" \d{3}',
                          parent.log_text()))


def app_claims_reach(parent, count: int) -> bool:
    """Wait for the access log to show ``count`` app claims (it is written after the answer)."""
    try:
        wait_for(lambda: app_claims(parent) >= count, timeout=5, interval=0.05)
    except AssertionError:
        return False
    time.sleep(0.3)  # and no more than that
    return app_claims(parent) == count


def first_token(node: NodeHttp, parent) -> str:
    """Claim as a child does first: no token; the answer carries one."""
    before = app_claims(parent)
    claim = RawClaim(node, token=None, wait=None)
    status, headers, _ = claim.answer()
    claim.close()
    assert app_claims_reach(parent, before + 1)
    assert status == 204, status
    assert "x-work-token" in headers, headers
    return headers["x-work-token"]


def dispatch_one_feed(admin: AdminHttp, name: str = "one", labels=()) -> str:
    feed = admin.post("/api/v1/feeds/import", json={"feeds": [
        {"mp_name": f"feed {name}", "source_type": "rss", "labels": list(labels),
         "source_url": f"http://127.0.0.1:9/{name}.xml"}]})
    assert feed.status_code == 200, feed.text
    task = admin.post("/api/v1/message-tasks", json={"name": name, "cron_exp": "0 0 1 1 *"})
    assert task.status_code == 201, task.text
    return task.json()["data"]["id"]


def dispatch(admin: AdminHttp, task_id: str) -> None:
    run = admin.post("/api/v1/cascade/dispatch", json={"task_id": task_id})
    assert run.status_code == 201, run.text


@pytest.fixture
def parent(live_parent):
    """One worker (8 threads): every parked claim is in the same event loop."""
    return live_parent(workers=1)


@pytest.fixture
def admin(parent):
    admin = AdminHttp.login(parent.base_url)
    yield admin
    admin.close()


@pytest.fixture
def node(parent, admin):
    return NodeHttp(parent.base_url, admin.create_node_with_credentials())


def wait_parked(parent, before: int, settle: float = 1.0) -> None:
    """Give the worker a moment to park what was sent; none of it may reach the app."""
    time.sleep(settle)
    assert app_claims(parent) == before, parent.log_tail()


def test_parked_claims_hold_no_thread(parent, node):
    """More parked claims than the worker has threads, and a heartbeat is still answered."""
    token = first_token(node, parent)
    before = app_claims(parent)
    claims = [RawClaim(node, token) for _ in range(3 * THREADS)]
    try:
        wait_parked(parent, before)
        for _ in range(3):
            response = node.post("/heartbeat", json={})
            assert response.status_code == 200, response.text[:300]
        assert not any(claim.answered() for claim in claims), "parked claims wait"
        assert app_claims(parent) == before
    finally:
        for claim in claims:
            claim.close()


def test_a_parked_claim_is_answered_no_change_after_its_wait(parent, node):
    token = first_token(node, parent)
    before = app_claims(parent)
    claim = RawClaim(node, token, wait=2)
    try:
        status, headers, body = claim.answer(timeout=20)
        assert status == 204 and body == b""
        assert headers["x-work-token"] == token
        assert headers["retry-after"] == "0"
        assert headers["preference-applied"] == "wait=2"
        assert claim.answered_at - claim.sent_at >= 1.5, "it waited"
        assert app_claims(parent) == before, "the worker answered it, not the app"
        metrics = requests.get(parent.url("/metrics"), timeout=10).text
        assert 'werss_claims_answered_by_worker_total{reason="no_change"} 1.0' in metrics

        # Kept alive: the child claims again on the same connection at once.
        fresh = NodeHttp(node.base_url, node.creds).prepare(
            "POST", "/claim", json={"max": 1}, headers={"Connection": "keep-alive"})
        lines = [f"POST {fresh.path_url} HTTP/1.1", "Host: x"]
        lines += [f"{name}: {value}" for name, value in fresh.headers.items()]
        claim.sock.sendall("\r\n".join(lines).encode() + b"\r\n\r\n" + fresh.body)
        status, headers, _ = claim.answer(timeout=20)
        assert status == 204 and "x-work-token" in headers
        assert app_claims_reach(parent, before + 1)
    finally:
        claim.close()


def test_a_dispatch_releases_a_parked_claim_with_its_lease(parent, admin, node):
    task_id = dispatch_one_feed(admin)
    token = first_token(node, parent)
    before = app_claims(parent)
    claim = RawClaim(node, token, wait=50)
    try:
        wait_parked(parent, before)
        dispatched_at = time.monotonic()
        dispatch(admin, task_id)
        status, headers, body = claim.answer(timeout=60)
        assert status == 200, body[:300]
        leases = json.loads(body)["data"]["leases"]
        assert len(leases) == 1 and leases[0]["feeds"][0]["mp_name"] == "feed one"
        # Released by the dispatch, not by the end of its 50 s wait.
        assert claim.answered_at - dispatched_at < 20
        new_token = headers["x-work-token"]
        assert new_token.split(".")[0] != token.split(".")[0], "the generation moved"
    finally:
        claim.close()


def test_a_stale_token_goes_to_the_app(parent, admin, node):
    task_id = dispatch_one_feed(admin)
    stale = first_token(node, parent)
    dispatch(admin, task_id)  # the generation moves on
    before = app_claims(parent) + 1
    took = node.post("/claim", json={"max": 1})
    assert took.status_code == 200
    assert app_claims_reach(parent, before)
    claim = RawClaim(node, stale, wait=50)
    try:
        status, headers, _ = claim.answer(timeout=20)
        assert status == 204
        assert claim.answered_at - claim.sent_at < 10, "answered by the app at once"
        assert headers["x-work-token"] != stale and "preference-applied" not in headers
        assert app_claims_reach(parent, before + 1)
    finally:
        claim.close()


@pytest.mark.parametrize("case", ["malformed-token", "unknown-generation", "no-prefer-wait"])
def test_a_claim_that_may_not_park_goes_to_the_app(parent, node, case):
    token = first_token(node, parent)
    generation, due = token.split(".")
    sent = {"malformed-token": f"{generation}.{due}.0",
            "unknown-generation": f"{int(generation) + 5}.{due}"}.get(case, token)
    before = app_claims(parent)
    claim = RawClaim(node, sent, wait=None if case == "no-prefer-wait" else 50)
    try:
        status, headers, _ = claim.answer(timeout=20)
        assert status == 204
        assert claim.answered_at - claim.sent_at < 10, "answered by the app at once"
        assert "retry-after" in headers
        assert headers["x-work-token"].split(".")[0] == generation, "no work appeared"
        assert "preference-applied" not in headers
        assert app_claims_reach(parent, before + 1)
    finally:
        claim.close()


def test_a_parked_client_that_disconnects_is_dropped(parent, admin, node):
    task_id = dispatch_one_feed(admin)
    token = first_token(node, parent)
    before = app_claims(parent)
    claim = RawClaim(node, token, wait=50)
    wait_parked(parent, before)
    claim.close()
    time.sleep(0.5)
    dispatch(admin, task_id)
    time.sleep(2)  # the watcher looks every 0.25 s: a live parked claim would be released
    assert app_claims(parent) == before, "nothing was released for a client that left"
    # The allocation is still there for the next claimer.
    response = node.post("/claim", json={"max": 1})
    assert response.status_code == 200 and len(response.json()["data"]["leases"]) == 1


# A short wait, so that claims kept parked after a dispatch are answered within the test.
SHORT_WAIT = 12


def test_many_parked_claims_and_one_allocation_reach_the_app_a_few_times(parent, admin, node):
    """No thundering herd: one allocation does not wake every parked claim into the app,
    and those it does not concern stay parked (no round trip) until their own wait ends."""
    parked = 6 * THREADS
    task_id = dispatch_one_feed(admin)
    token = first_token(node, parent)
    start = app_claims(parent)
    claims = [RawClaim(node, FIRST, wait=SHORT_WAIT) for _ in range(parked)]
    assert app_claims_reach(parent, start + parked), "each first claim reached the app"
    before = app_claims(parent)
    try:
        wait_parked(parent, before)
        dispatched_at = time.monotonic()
        dispatch(admin, task_id)
        answers = [claim.answer(timeout=60) for claim in claims]
        statuses = sorted(status for status, _, _ in answers)
        assert statuses == [200] + [204] * (parked - 1), "one lease, handed out once"
        leased = next(c for c, (status, _, _) in zip(claims, answers) if status == 200)
        assert leased.answered_at - dispatched_at < SHORT_WAIT / 2, "released by the dispatch"
        tokens = {headers["x-work-token"] for status, headers, _ in answers if status == 204}
        assert token not in tokens, "every empty answer carries the new generation"
        seen = app_claims(parent) - before
        assert 1 <= seen <= 2 * THREADS + 1, f"{seen} of {parked} parked claims reached the app"
        # Only the app answers before a claim's wait is over: the worker kept the others.
        early = [c for c in claims if c.answered_at - c.sent_at < SHORT_WAIT - 1]
        assert len(early) <= seen, f"{len(early)} answered early, {seen} by the app"
    finally:
        for claim in claims:
            claim.close()


def test_a_node_unlike_the_others_is_not_told_no_change_on_their_word(parent, admin, node):
    """The work needs a label only one node has; the others' empty answers do not end its wait."""
    east_creds = admin.create_node_with_credentials(name="east")
    labelled = admin.request("PUT", f"/api/v1/cascade/nodes/{east_creds.node_id}",
                             json={"labels": ["east"]})
    assert labelled.status_code == 200, labelled.text
    east = NodeHttp(parent.base_url, east_creds)
    task_id = dispatch_one_feed(admin, "eastern", labels=["east"])
    start = app_claims(parent)
    others = [RawClaim(node, FIRST, wait=SHORT_WAIT) for _ in range(4 * THREADS)]  # parked first
    claim = RawClaim(east, FIRST, wait=50)
    assert app_claims_reach(parent, start + len(others) + 1)
    before = app_claims(parent)
    try:
        wait_parked(parent, before)
        dispatched_at = time.monotonic()
        dispatch(admin, task_id)
        status, _, body = claim.answer(timeout=60)
        assert status == 200, body[:300]
        assert claim.answered_at - dispatched_at < 20, "released by the dispatch"
        assert sorted(other.answer(timeout=60)[0] for other in others) == [204] * len(others)
    finally:
        claim.close()
        for other in others:
            other.close()


def hold_every_thread(parent) -> list[socket.socket]:
    """Hold each app thread (and more than APP_BACKLOG_PER_THREAD per thread in line) with
    half-sent 4 MiB uploads, until a request sent now is no longer answered: the app is
    backed up. Returns the sockets: closing them ends it."""
    parts = urlsplit(parent.base_url)
    # A body over the worker's buffer goes to a thread before it has all come: each of
    # these holds a thread (or a place in its queue) until it is closed.
    head = (b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
            b"\r\nContent-Length: 4194304\r\n\r\n")
    held = []
    for _ in range(4 * THREADS):  # gunicorn_worker.APP_BACKLOG_PER_THREAD per thread
        sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
        sock.sendall(head + b" " * (1024 * 1024 + 1))
        held.append(sock)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # a loaded machine hands them over slowly
        probe = socket.create_connection((parts.hostname, parts.port), timeout=30)
        probe.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        probe.settimeout(1.0)
        try:
            answered = bool(probe.recv(1))
        except socket.timeout:
            answered = False
        if not answered:
            held.append(probe)  # in line behind the uploads, as the next request will be
            return held
        probe.close()
    for sock in held:
        sock.close()
    raise AssertionError("the uploads never held every thread")


def test_a_backed_up_worker_tells_claims_to_come_back_later(parent, node):
    """Backpressure: while the app's threads are taken and more requests wait for them, a
    claim the app would have to answer is answered by the worker, 204 with Retry-After."""
    before = app_claims(parent)
    uploads = hold_every_thread(parent)
    try:
        claim = RawClaim(node, token=None, wait=None)
        status, headers, _ = claim.answer(timeout=30)
        claim.close()
        assert status == 204
        later = int(headers["retry-after"])
        assert 5 <= later <= 25, headers
        # A token to park the next claim on, due when the Retry-After ends.
        due = int(headers["x-work-token"].split(".")[1])
        assert abs(due - (time.time() + later)) <= 2, headers
        assert app_claims(parent) == before, "the worker answered it, not the app"
    finally:
        for sock in uploads:
            sock.close()
    # Once the backlog is gone, claims reach the app again.
    wait_for(lambda: _claim_reaches_app(parent, node), timeout=30, interval=0.5)
    # An operator sees it in the log and in the metrics.
    # (The first claims after the uploads closed may still have found the backlog.)
    assert "app backed up (" in parent.log_text()
    logged = re.findall(r"claims told to come back later meanwhile: (\d+)", parent.log_text())
    metrics = requests.get(parent.url("/metrics"), timeout=10).text
    counted = re.findall(r'werss_claims_answered_by_worker_total\{reason="deferred"\} (\d+)\.0',
                         metrics)
    assert logged and counted and int(counted[0]) == sum(map(int, logged)) >= 1, (logged, counted)


def test_a_request_whose_client_gave_up_in_the_backlog_is_not_served(parent):
    """Overload: a request that waited for a thread until its client gave up and closed
    is dropped unserved, not answered to nobody; the app serves what comes next."""
    marker = f"gone{time.monotonic_ns()}"
    parts = urlsplit(parent.base_url)
    uploads = hold_every_thread(parent)
    try:
        gone = socket.create_connection((parts.hostname, parts.port), timeout=30)
        gone.sendall(f"GET /healthz?{marker} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        time.sleep(1.5)  # longer than gunicorn_worker.ABANDONED_AFTER, in line
        gone.close()  # the client gives up, as a child's timed-out heartbeat does
    finally:
        for sock in uploads:
            sock.close()
    wait_for(lambda: requests.get(parent.url("/healthz"), timeout=10).status_code == 200,
             timeout=30, interval=0.5)
    metrics = requests.get(parent.url("/metrics"), timeout=10).text
    dropped = re.findall(r"^werss_requests_abandoned_total (\d+)\.0$", metrics, re.M)
    assert dropped and int(dropped[0]) >= 1, metrics[-2000:]
    served = requests.get(parent.url(f"/healthz?{marker}x"), timeout=10)
    assert served.status_code == 200
    wait_for(lambda: f"{marker}x" in parent.log_text(), timeout=5, interval=0.05)  # logged
    assert f"{marker} " not in parent.log_text(), "the app served a request nobody waited for"


def test_a_worker_handing_out_work_does_not_tell_claims_to_come_back(parent, admin, node):
    """A backlog of claims that get leases is work being done: while the app hands out
    work, claims wait for a thread as every request does, and none is sent away."""
    dispatch(admin, dispatch_one_feed(admin, "one"))
    dispatch(admin, dispatch_one_feed(admin, "two"))
    start = app_claims(parent)
    taken = RawClaim(node, token=None, wait=None)
    status, _, _ = taken.answer(timeout=30)
    taken.close()
    assert status == 200, "the app handed out a lease"
    # Its access-log line is written after the answer: wait for it before counting on.
    assert app_claims_reach(parent, start + 1)
    before = start + 1
    uploads = hold_every_thread(parent)
    try:
        claim = RawClaim(node, token=None, wait=None)
        time.sleep(1.5)
        assert not claim.answered(), "not answered by the worker: it waits for a thread"
    finally:
        for sock in uploads:
            sock.close()
    status, _, _ = claim.answer(timeout=30)
    claim.close()
    assert status == 200, "the app served it, with the second dispatch's lease"
    assert app_claims_reach(parent, before + 1)
    assert "app backed up (" not in parent.log_text()


def _claim_reaches_app(parent, node: NodeHttp) -> bool:
    before = app_claims(parent)
    claim = RawClaim(node, token=None, wait=None)
    try:
        claim.answer(timeout=30)
    finally:
        claim.close()
    return app_claims_reach(parent, before + 1)


def test_the_werss_prefix_never_parks(parent, node):
    token = first_token(node, parent)
    before = app_claims(parent)
    claim = RawClaim(node, token, wait=50, prefix=WX_PREFIX)
    try:
        status, headers, _ = claim.answer(timeout=20)
        assert claim.answered_at - claim.sent_at < 10, "answered at once"
        assert status in (200, 204)
        assert "x-work-token" not in headers, "unmodified WeRSS children keep Retry-After"
        assert app_claims_reach(parent, before + 1)
    finally:
        claim.close()


def test_a_stopping_parent_answers_its_parked_claims_at_once(parent, node):
    token = first_token(node, parent)
    before = app_claims(parent)
    claims = [RawClaim(node, token, wait=50) for _ in range(3)]
    wait_parked(parent, before)
    stopped_at = time.monotonic()
    parent.terminate()
    for claim in claims:
        status, headers, _ = claim.answer(timeout=40)
        assert status == 204 and headers["x-work-token"] == token
        assert headers["connection"] == "close"
        assert claim.answered_at - stopped_at < 20, "not held for its whole wait"
        claim.close()
    wait_for(lambda: parent.process.poll() is not None, timeout=40, what="the parent to stop")
    with pytest.raises(requests.ConnectionError):
        requests.get(parent.url("/healthz"), timeout=2)


def test_a_real_child_parks_and_gets_dispatched_work_at_once(live_parent, children, services):
    """werss-child run against werss-parent serve: an idle child's claims wait at the
    parent (not in the app), and a dispatch reaches it well before its 30 s Retry-After."""
    from tests.e2e.test_child_agent import _allocations, _dispatch, _setup_task

    parent = live_parent(workers=1)
    admin = AdminHttp.login(parent.base_url)
    creds = admin.create_node_with_credentials("parker")
    task_id = _setup_task(admin, services, ["alpha"])
    children(parent.base_url, creds, name="parker", CASCADE_CLAIM_WAIT="30")
    wait_for(lambda: app_claims(parent) >= 1, what="the child's first claim")
    time.sleep(8)  # idle: its claims are parked, not answered by the app over and over
    idle_claims = app_claims(parent)
    time.sleep(5)
    assert app_claims(parent) == idle_claims, parent.log_tail()

    dispatched_at = time.monotonic()
    run_id = _dispatch(admin, task_id)
    leased = wait_for(lambda: [a for a in _allocations(admin, run_id) if a["leased_to"]],
                      timeout=30, interval=0.1, what="the child to lease the dispatched work")
    assert leased[0]["leased_to"] == creds.node_id
    assert time.monotonic() - dispatched_at < 15, "released by the dispatch, not paced"
