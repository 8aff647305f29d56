"""When the buffering worker hands a request to a thread (issue 8 item 5)."""

import pytest

from parent.gunicorn_worker import (
    MAX_BUFFERED_BODY, MAX_HEAD, ParkableClaim, come_back_answer, native_claim, no_change_answer,
    parkable_claim, request_is_buffered,
)

HEAD = b"POST /x HTTP/1.1\r\nHost: h\r\n"


@pytest.mark.parametrize("data, ready", [
    (b"GET /healthz HTTP/1.1\r\nHost: h\r\n", False),  # head not finished: keep reading
    (b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n", True),
    (HEAD + b"Content-Length: 5\r\n\r\nabc", False),  # body not in yet
    (HEAD + b"content-length: 5\r\n\r\nabcde", True),
    (HEAD + b"Transfer-Encoding: chunked\r\n\r\n", True),  # chunked: a thread reads it
    (HEAD + b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\n", True),  # client waits
    (HEAD + f"Content-Length: {10 * MAX_BUFFERED_BODY}\r\n\r\n".encode()
     + b"a" * MAX_BUFFERED_BODY, True),  # a big body: buffered up to the cap only
    (b"GET /" + b"a" * MAX_HEAD, True),  # an over-long head: gunicorn refuses it
])
def test_a_request_is_handed_on_once_it_is_in(data, ready):
    assert request_is_buffered(data) is ready


def test_a_body_whose_length_is_not_the_last_header_is_waited_for():
    """Content-Length before another header was missed, and the body read by a thread."""
    assert request_is_buffered(HEAD + b"Content-Length: 5\r\nX-A: b\r\n\r\nabc") is False
    assert request_is_buffered(HEAD + b"Content-Length: 5\r\nX-A: b\r\n\r\nabcde") is True


CLAIM = b"POST /api/v1/cascade/claim HTTP/1.1\r\nHost: h\r\n"
BODY = b'{"max": 1}'


def claim_request(*headers: bytes, line: bytes = CLAIM, body: bytes = BODY) -> bytes:
    length = b"Content-Length: %d\r\n" % len(body)
    return line + length + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body


def test_a_claim_with_token_and_prefer_wait_may_park():
    claim = parkable_claim(claim_request(b"X-Work-Token: 7.1700000000",
                                         b"Prefer: respond-async, wait=50"))
    assert claim == ParkableClaim(b"7.1700000000", 7, 1700000000, 50, close=False)


def test_an_http_1_0_claim_or_connection_close_is_closed_after_its_answer():
    assert parkable_claim(claim_request(
        b"X-Work-Token: 7.9", b"Prefer: wait=5",
        line=b"POST /api/v1/cascade/claim HTTP/1.0\r\nHost: h\r\n")).close is True
    assert parkable_claim(claim_request(
        b"X-Work-Token: 7.9", b"Prefer: wait=5", b"Connection: close")).close is True


@pytest.mark.parametrize("data", [
    claim_request(b"Prefer: wait=50"),  # no token
    claim_request(b"X-Work-Token: 7.9"),  # no Prefer: wait
    claim_request(b"X-Work-Token: 7.9", b"Prefer: wait=0"),
    claim_request(b"X-Work-Token: 7.9", b"Prefer: respond-async"),
    claim_request(b"X-Work-Token: 7", b"Prefer: wait=50"),  # malformed
    claim_request(b"X-Work-Token: 7.9.1", b"Prefer: wait=50"),
    claim_request(b"X-Work-Token: -7.9", b"Prefer: wait=50"),
    claim_request(b"X-Work-Token: 7.9", b"X-Work-Token: 8.9", b"Prefer: wait=50"),  # two
    claim_request(b"X-Work-Token: 7.9", b"Prefer: wait=50",
                  line=b"POST /api/v1/wx/cascade/claim HTTP/1.1\r\nHost: h\r\n"),  # WeRSS
    claim_request(b"X-Work-Token: 7.9", b"Prefer: wait=50",
                  line=b"POST /api/v1/cascade/heartbeat HTTP/1.1\r\nHost: h\r\n"),
    claim_request(b"X-Work-Token: 7.9", b"Prefer: wait=50",
                  line=b"GET /api/v1/cascade/claim HTTP/1.1\r\nHost: h\r\n"),
    claim_request(b"X-Work-Token: 7.9", b"Prefer: wait=50") + b"GET / HTTP/1.1\r\n",  # pipelined
    claim_request(b"X-Work-Token: 7.9", b"Prefer: wait=50", b"Transfer-Encoding: chunked"),
])
def test_a_claim_that_may_not_park_is_left_to_the_app(data):
    assert parkable_claim(data) is None


def test_the_no_change_answer_says_come_back_at_once_with_the_same_token():
    answer = no_change_answer(b"7.9", 50)
    head = answer.decode().split("\r\n")
    assert head[0] == "HTTP/1.1 204 No Content" and answer.endswith(b"\r\n\r\n")
    assert {"X-Work-Token: 7.9", "Retry-After: 0", "Preference-Applied: wait=50",
            "Connection: keep-alive"} <= set(head)
    assert "Connection: close" in no_change_answer(b"7.9", 50, close=True).decode()


def test_the_come_back_answer_is_an_empty_claim_answer():
    answer = come_back_answer(17).decode()
    assert answer.startswith("HTTP/1.1 204 No Content\r\n") and answer.endswith("\r\n\r\n")
    assert "Retry-After: 17\r\n" in answer and "X-Work-Token" not in answer
    assert "Connection: keep-alive" in answer
    assert "Connection: close" in come_back_answer(5, close=True).decode()
    assert "X-Work-Token: 7.1900000017\r\n" in come_back_answer(17, token=b"7.1900000017").decode()


def test_only_one_whole_native_claim_can_be_answered_by_the_worker():
    claim = (b"POST /api/v1/cascade/claim HTTP/1.1\r\nHost: x\r\n"
             b"Content-Length: 2\r\n\r\n{}")
    assert native_claim(claim) is not None and native_claim(claim)[1] is False
    assert native_claim(claim[:-1]) is None  # the body has not all come
    assert native_claim(claim + b"GET / HTTP/1.1\r\n\r\n") is None  # pipelined behind it
    assert native_claim(claim.replace(b"/cascade/claim", b"/wx/cascade/claim")) is None
    assert native_claim(claim.replace(b"HTTP/1.1\r\n", b"HTTP/1.0\r\n", 1))[1] is True


class _Conn:
    """A connection as the parking code sees one (hashable, attributes set by the worker)."""


def _waiting_worker(conns, by_due=True, in_app=0):
    """A worker whose parked claims on ``conns`` have all come due; _release is recorded.

    It has 4 threads and ``in_app`` requests with the app (16 or more: backed up).
    """
    import logging
    import time
    from collections import deque
    from types import SimpleNamespace

    from parent.gunicorn_worker import BufferingThreadWorker, _Parked

    worker = object.__new__(BufferingThreadWorker)
    moment, wall = time.monotonic(), int(time.time())
    worker.generation, worker._quiet, worker._released = 7, {}, set()
    worker._release_window, worker.parked, worker._to_release = 16, {}, deque()
    worker.cfg, worker.log = SimpleNamespace(threads=4), logging.getLogger("test.worker")
    worker.max_parked, worker.in_app, worker._handing_out, worker._deferring = 100, in_app, False, 0
    worker._park_seq, worker._park_timers = len(conns), []
    worker.sent_to_app = []
    for index, conn in enumerate(conns):
        claim = ParkableClaim(f"7.{wall}".encode(), 7, wall, 50, False)
        worker.parked[conn] = _Parked(claim, until=moment + 50, due_at=moment, seq=index,
                                      eligible_since=moment, by_due=by_due)
        worker._to_release.append(conn)

    def release(conn, counted=False):
        worker.parked.pop(conn)
        worker._released.add(conn)
        worker.sent_to_app.append(conn)

    worker._release = release
    return worker


def test_claims_due_together_go_to_the_app_one_at_a_time_to_share_its_answer():
    import time

    conns = [_Conn() for _ in range(5)]
    for conn in conns:  # each was answered by the app lately: they may share an answer
        conn.claim_class, conn.app_answered_at = "|rss|", time.monotonic() - 10
    worker = _waiting_worker(conns)
    worker._pump()
    assert worker.sent_to_app == conns[:1]


def test_due_claims_that_cannot_share_an_answer_are_not_held_back():
    """Connections the app never answered (claims deferred at a fleet's start) each need
    their own answer: they go to the app a release window at a time, not one by one."""
    conns = [_Conn() for _ in range(20)]
    worker = _waiting_worker(conns)
    worker._pump()
    assert worker.sent_to_app == conns[:16]


def _held_until(worker, conn):
    """The UNIX second a parked claim is now due, read from the token it will be answered with."""
    generation, due = worker.parked[conn].claim.token.decode().split(".")
    assert int(generation) == worker.parked[conn].claim.generation == 7
    return int(due)


def test_due_claims_wait_parked_while_the_app_is_backed_up_and_one_of_them_asks_it():
    """A fleet the app cannot keep up with: claims that only came due, on connections the
    app never answered, would wait in its backlog past their children's read timeouts (and
    come back to be deferred and come due again). One asks the app; the others stay parked,
    due again 5-25 s later, and are not released or answered meanwhile."""
    import time

    conns = [_Conn() for _ in range(20)]
    worker = _waiting_worker(conns, in_app=16)
    worker._pump()
    assert worker.sent_to_app == conns[:1]
    assert not worker._to_release
    now = int(time.time())
    for conn in conns[1:]:
        entry = worker.parked[conn]
        assert not entry.by_due and entry.eligible_since is None  # waiting, not releasable
        assert now + 5 <= _held_until(worker, conn) <= now + 26
    assert worker._deferring == 19
    # Their timers: each is answered when its wait ends or released when its new due comes.
    assert {conn for _, _, conn in worker._park_timers} == set(conns[1:])


def test_due_claims_go_to_the_app_as_before_once_it_has_caught_up_or_hands_out_work():
    conns = [_Conn() for _ in range(20)]
    caught_up = _waiting_worker(conns, in_app=15)  # below 4 per thread: not backed up
    caught_up._pump()
    assert caught_up.sent_to_app == conns[:16]

    conns = [_Conn() for _ in range(20)]
    handing_out = _waiting_worker(conns, in_app=40)
    handing_out._handing_out = True  # leases are being given out: that backlog is work done
    handing_out._pump()
    assert handing_out.sent_to_app == conns[:16]


def test_claims_released_by_new_work_are_never_held_back():
    conns = [_Conn() for _ in range(20)]
    worker = _waiting_worker(conns, by_due=False, in_app=40)
    worker._pump()
    assert worker.sent_to_app == conns[:16]
    assert all(worker.parked[conn].eligible_since is not None for conn in conns[16:])


def test_a_client_that_closed_or_reset_is_gone_and_one_still_waiting_is_not():
    import socket
    import struct
    import time

    from parent.gunicorn_worker import client_gone

    server, client = socket.socketpair()
    assert not client_gone(server)  # waiting for its answer: nothing to read, no end
    client.sendall(b"GET / HTTP/1.1\r\n\r\n")  # a pipelined request behind it: still there
    assert not client_gone(server)
    assert server.recv(100)  # (what the event loop would have read)
    client.close()
    assert client_gone(server)
    server.close()

    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    accepted, _ = listener.accept()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()  # a reset, not a close
    time.sleep(0.05)
    assert client_gone(accepted)
    accepted.close()
    listener.close()


class SimpleConn:
    """A connection as ``handle`` sees one: its socket, and when it was handed to the pool."""

    def __init__(self, sock, enqueued_at):
        self.sock, self.enqueued_at = sock, enqueued_at


def _handling_worker(monkeypatch):
    """A worker whose thread-side ``handle`` records what it would have served."""
    from types import SimpleNamespace

    from gunicorn.workers.gthread import ThreadWorker

    from parent.gunicorn_worker import BufferingThreadWorker

    served = []
    monkeypatch.setattr(ThreadWorker, "handle", lambda self, conn: served.append(conn) or True)
    worker = object.__new__(BufferingThreadWorker)
    worker.cfg = SimpleNamespace(is_ssl=False)
    return worker, served


def test_a_request_whose_client_gave_up_while_it_waited_for_a_thread_is_not_served(monkeypatch):
    """Past the clients' timeouts, an overloaded parent served only requests nobody waited
    for any more; a request whose client has gone is dropped before the app sees it."""
    import socket
    import time

    worker, served = _handling_worker(monkeypatch)
    server, client = socket.socketpair()
    gone = SimpleConn(server, enqueued_at=time.monotonic() - 31)
    client.close()
    assert worker.handle(gone) is False  # finish_request closes the connection
    assert served == []

    server, client = socket.socketpair()
    waiting = SimpleConn(server, enqueued_at=time.monotonic() - 31)
    assert worker.handle(waiting) is True
    assert served == [waiting]
    # A request that came to a thread at once is not looked at: a client that half-closed
    # after sending (rare in HTTP/1.1) is still served while the parent keeps up.
    server2, client2 = socket.socketpair()
    client2.shutdown(socket.SHUT_WR)
    prompt = SimpleConn(server2, enqueued_at=time.monotonic())
    assert worker.handle(prompt) is True
    assert served == [waiting, prompt]
    for sock in (server, client, server2, client2):
        sock.close()
