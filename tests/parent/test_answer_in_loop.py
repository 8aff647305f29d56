"""Node requests the gunicorn worker's event loop answers itself (parent/gunicorn_worker.py,
``_answer_in_loop``): only what the node lane answers, only while no request is with the
threads, and exactly as a thread would answer it.

The worker here is the real class with the state its event loop keeps, a real gunicorn
config and a real TCP connection; the app is the real parent app on the test database.
"""

from __future__ import annotations

import fcntl
import json
import selectors
import socket
import sys
import threading
from collections import deque

import pytest
from gunicorn.config import Config
from gunicorn.workers.gthread import TConn

from parent.extensions import db
from parent.gunicorn_app import AccessLogger, gunicorn_options
from parent.gunicorn_worker import BufferingThreadWorker
from parent.models import UsedNonce
from tests.helpers import NodeCaller

BODY = {"version": "0.3.0", "hostname": "edge-1", "capacity": 4, "running": 0}
PATH = "/api/v1/cascade/heartbeat"


@pytest.fixture
def cascade_settings():
    return {"presence_flush_interval": 3600}  # no time-based flush unless a test moves time


def loop_worker(app) -> BufferingThreadWorker:
    """The worker as its event loop holds it once running, serving ``app``."""
    cfg = Config()
    for name, value in gunicorn_options("127.0.0.1:0", 1, 4).items():
        cfg.set(name, value)
    cfg.set("accesslog", None)
    found = object.__new__(BufferingThreadWorker)
    found.cfg, found.log, found.wsgi = cfg, AccessLogger(cfg), app
    found.alive, found.nr, found.max_requests, found.nr_conns, found.in_app = \
        True, 0, sys.maxsize, 0, 0
    found.keepalived_conns, found.max_keepalived = deque(), 100
    found.poller = selectors.DefaultSelector()
    found._lane_app = None
    found._start_answering_in_loop()
    assert found._lane_app is not None
    return found


@pytest.fixture
def worker(app):
    found = loop_worker(app)
    yield found
    found.poller.close()


@pytest.fixture
def connections():
    """Make (the worker's TConn, the client's socket) pairs over real TCP."""
    listener = socket.create_server(("127.0.0.1", 0))
    made = []

    def connect(worker, request: bytes):
        client = socket.create_connection(listener.getsockname(), timeout=5)
        server, address = listener.accept()
        server.setblocking(False)  # as the event loop holds it
        conn = TConn(worker.cfg, server, address, listener.getsockname())
        conn.prebuffer = bytearray(request)
        worker.nr_conns += 1
        made.append((server, client))
        return conn, client

    yield connect
    for server, client in made:
        server.close()
        client.close()
    listener.close()


def raw_heartbeat(caller: NodeCaller, body: dict, *headers: str) -> bytes:
    data = json.dumps(body).encode()
    lines = [f"POST {PATH} HTTP/1.1", "Host: parent",
             f"Authorization: {caller.authorization('POST', PATH, '', data)}",
             "Content-Type: application/json", f"Content-Length: {len(data)}", *headers]
    return "\r\n".join(lines).encode() + b"\r\n\r\n" + data


def read_answer(client: socket.socket) -> tuple[str, dict, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        data += client.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.decode().split("\r\n")
    headers = {name.lower(): value for name, _, value in
               (line.partition(": ") for line in lines)}
    while len(body) < int(headers.get("content-length", 0)):
        body += client.recv(65536)
    return status, headers, body


def nonces(app) -> int:
    with app.app_context():
        return db.session.query(UsedNonce).count()


@pytest.fixture
def steady(client, node, clock):
    """A signed caller whose node is online and has reported BODY once (through the app)."""
    caller = NodeCaller(client, node, clock=clock, mode="signed")
    assert caller.post("/heartbeat", json=BODY).status_code == 200  # the online edge
    clock.advance(60)
    return caller


def test_an_idle_worker_answers_a_steady_heartbeat_in_its_loop_as_a_thread_would(
        app, worker, connections, steady, clock):
    by_thread = steady.post("/heartbeat", json=BODY, headers={"X-Request-ID": "hb-1"})
    clock.advance(60)
    conn, client = connections(worker, raw_heartbeat(steady, BODY, "X-Request-ID: hb-2"))

    assert worker._answer_in_loop(conn) is True
    status, headers, body = read_answer(client)
    assert status == "HTTP/1.1 200 OK"
    assert headers["content-type"] == "application/json"
    assert headers["x-request-id"] == "hb-2"
    assert headers["connection"] == "keep-alive"
    answer, expected = json.loads(body), by_thread.get_json()
    assert answer["message"] == "心跳成功"
    del answer["data"]["server_time"], expected["data"]["server_time"]
    assert answer == expected
    assert nonces(app) == 3  # the edge, the thread's and the loop's: each kept
    # Kept alive: the loop waits for the connection's next request.
    assert conn in worker.keepalived_conns
    assert worker.poller.get_key(conn.sock) is not None
    assert worker.nr == 1


def test_a_request_the_lane_declines_is_left_whole_for_a_thread(
        app, worker, connections, steady, clock):
    request = raw_heartbeat(steady, BODY)
    conn, client = connections(worker, request)
    assert worker._answer_in_loop(conn) is True
    read_answer(client)

    # The same request again (a replay), a changed report and a claim: none is answered
    # here, nothing is sent, and the request is still there for the thread's parser.
    clock.advance(60)
    changed = raw_heartbeat(steady, {**BODY, "hostname": "edge-2"})
    claim = changed.replace(b"POST /api/v1/cascade/heartbeat", b"POST /api/v1/cascade/claim")
    for declined in (request, changed, claim):
        conn, client = connections(worker, declined)
        assert worker._answer_in_loop(conn) is False
        assert bytes(conn.prebuffer) == declined
        client.setblocking(False)
        with pytest.raises(BlockingIOError):
            client.recv(1)
    assert nonces(app) == 2  # the edge's and the first one's
    assert worker.nr == 1


def test_while_the_app_has_a_request_every_request_goes_to_the_threads(
        app, worker, connections, steady):
    worker.in_app = 1
    conn, _client = connections(worker, raw_heartbeat(steady, BODY))
    assert worker._answer_in_loop(conn) is False
    assert nonces(app) == 1


def test_connection_close_is_honoured(app, worker, connections, steady):
    conn, client = connections(worker, raw_heartbeat(steady, BODY, "Connection: close"))
    assert worker._answer_in_loop(conn) is True
    status, headers, _ = read_answer(client)
    assert status == "HTTP/1.1 200 OK" and headers["connection"] == "close"
    assert client.recv(1) == b""  # closed after the answer
    assert conn not in worker.keepalived_conns and worker.nr_conns == 0


@pytest.mark.sqlite_only
def test_the_loop_never_waits_for_sqlites_write_turn(app, worker, connections, steady, db_url):
    """Another writer holds the turn: the loop does not wait for it; a thread will."""
    path = db_url.removeprefix("sqlite:///") + ".write-lock"
    with open(path, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # Let go in a while: a loop that waited for the turn would then answer (True).
        timer = threading.Timer(2.0, fcntl.flock, (lock, fcntl.LOCK_UN))
        timer.start()
        request = raw_heartbeat(steady, BODY)
        conn, client = connections(worker, request)
        try:
            assert worker._answer_in_loop(conn) is False
        finally:
            timer.join()
    assert bytes(conn.prebuffer) == request
    assert nonces(app) == 1
    # The turn is free again: the same request is answered (its nonce was never written).
    assert worker._answer_in_loop(conn) is True
    assert read_answer(client)[0] == "HTTP/1.1 200 OK"
    assert nonces(app) == 2


def test_behind_trusted_proxies_the_loop_answers_through_proxyfix(db_url, clock, connections):
    """With ``trusted_proxies`` the lane sits behind ProxyFix: the loop goes through it."""
    from werkzeug.middleware.proxy_fix import ProxyFix

    from parent import create_app
    from tests.conftest import (
        ADMIN_PASSWORD, ADMIN_USERNAME, AdminClient, base_config,
        create_node_with_credentials, make_admin_user,
    )

    proxied = create_app(base_config(db_url, trusted_proxies=1,
                                     presence_flush_interval=3600), clock=clock, environ={})
    client = proxied.test_client()
    make_admin_user(proxied)
    token = client.post("/api/v1/auth/login", json={
        "username": ADMIN_USERNAME, "password": ADMIN_PASSWORD}).get_json()["data"]
    node = create_node_with_credentials(AdminClient(client, token["access_token"]))
    caller = NodeCaller(client, node, clock=clock, mode="signed")
    assert caller.post("/heartbeat", json=BODY).status_code == 200  # the online edge
    clock.advance(60)
    proxied_worker = loop_worker(proxied)
    assert isinstance(proxied_worker._lane_app, ProxyFix)
    conn, sock = connections(proxied_worker, raw_heartbeat(
        caller, BODY, "X-Forwarded-For: 203.0.113.9"))
    assert proxied_worker._answer_in_loop(conn) is True
    assert read_answer(sock)[0] == "HTTP/1.1 200 OK"
    assert nonces(proxied) == 2
    proxied_worker.poller.close()
    with proxied.app_context():
        db.session.remove()
        db.engine.dispose()
