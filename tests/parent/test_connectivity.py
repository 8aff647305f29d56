"""POST /cascade/nodes/{id}/test-connection: can the parent reach a node, do credentials work?

The remote is another host, so it is played by `responses` (http://remote.example), except
in the last tests, where a real HTTP server on 127.0.0.1 answers.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
import responses

from shared import signing
from tests.conftest import create_node_with_credentials
from tests.helpers import NodeCaller, assert_error, free_port

REMOTE = "http://remote.example"
HEALTHZ = REMOTE + "/healthz"
WHOAMI = REMOTE + "/api/v1/cascade/whoami"
WERSS_TASKS = REMOTE + "/api/v1/wx/cascade/message-tasks"
# Anything the remote says must stay on the remote: never echoed to the admin.
MARKER = "REMOTE-BODY-MARKER-5f1e"
KEY = "CN" + "k" * 32
SECRET = "CS" + "s" * 32


def route(node_id: str) -> str:
    return f"/api/v1/cascade/nodes/{node_id}/test-connection"


@pytest.fixture
def remote():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def node_id(admin):
    """A node whose api_url points at the remote."""
    response = admin.post("/api/v1/cascade/nodes",
                          json={"name": "remote-child", "node_type": 1, "api_url": REMOTE})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["data"]["node_id"]


def check(admin, node_id, **body) -> dict:
    response = admin.post(route(node_id), json=body)
    assert response.status_code == 200, response.get_json()
    assert MARKER not in response.get_data(as_text=True)
    return response.get_json()["data"]


def healthy(remote, status=200, **kwargs):
    remote.add(responses.GET, HEALTHZ, status=status, json={"status": "ok", "echo": MARKER},
               **kwargs)


def remote_envelope(status: int, error: str) -> dict:
    return {"code": status, "message": f"nope {MARKER}", "error": error,
            "details": {"leak": MARKER}, "request_id": "r"}


# --- reachability -------------------------------------------------------------------------


def test_reachable_node(admin, node_id, remote):
    healthy(remote)

    data = check(admin, node_id)

    assert data["reachable"] is True
    assert data["status_code"] == 200
    assert isinstance(data["latency_ms"], (int, float)) and data["latency_ms"] >= 0
    assert data["authenticated"] is None  # no credentials given
    assert data["error"] is None
    assert [call.request.url for call in remote.calls] == [HEALTHZ]
    assert remote.calls[0].request.req_kwargs["timeout"] is not None


def test_unhealthy_but_answering_node_is_reachable(admin, node_id, remote):
    healthy(remote, status=503)

    data = check(admin, node_id)

    assert data["reachable"] is True and data["status_code"] == 503


@pytest.mark.parametrize("exc", [
    requests.ConnectionError(f"[Errno 111] Connection refused {MARKER}"),
    requests.ConnectTimeout(f"connect timeout {MARKER}"),
    requests.ReadTimeout(f"read timed out {MARKER}"),
])
def test_unreachable_node(admin, node_id, remote, exc):
    remote.add(responses.GET, HEALTHZ, body=exc)

    data = check(admin, node_id, api_key=KEY, api_secret=SECRET)

    assert data["reachable"] is False
    assert data["error"] == "no HTTP answer"
    assert data["status_code"] is None and data["latency_ms"] is None
    assert data["authenticated"] is None
    assert len(remote.calls) == 1  # credentials are not tried on a host that is not there


def test_redirect_is_reported_not_followed(admin, node_id, remote):
    remote.add(responses.GET, HEALTHZ, status=302, body=MARKER,
               headers={"Location": "http://elsewhere.example/healthz"})
    target = remote.add(responses.GET, "http://elsewhere.example/healthz", body=MARKER)

    data = check(admin, node_id)

    assert data["reachable"] is True and data["status_code"] == 302
    assert target.call_count == 0


def test_given_api_url_overrides_the_stored_one(admin, node_id, remote):
    other = remote.add(responses.GET, "http://other.example:8001/healthz", body=MARKER)

    data = check(admin, node_id, api_url="http://other.example:8001/")

    assert data["reachable"] is True
    assert data["api_url"] == "http://other.example:8001"
    assert other.call_count == 1


def test_node_without_api_url_needs_one(admin):
    node = create_node_with_credentials(admin, name="no-url")

    body = assert_error(admin.post(route(node.node_id), json={}), 422, "validation_failed")

    assert "api_url" in body["details"]


def test_empty_body_uses_the_stored_api_url(admin, node_id, remote):
    healthy(remote)

    response = admin.post(route(node_id))

    assert response.status_code == 200, response.get_json()
    assert response.get_json()["data"]["reachable"] is True


@pytest.mark.parametrize("body, field", [
    ({"api_key": KEY}, "api_secret"),
    ({"api_secret": SECRET}, "api_secret"),
    ({"api_key": "密钥" + KEY, "api_secret": SECRET}, "api_key"),
    ({"api_key": KEY, "api_secret": "has space"}, "api_secret"),
    ({"api_url": "ftp://remote.example"}, "api_url"),
    ({"api_url": "not a url"}, "api_url"),
    ({"url": REMOTE}, "url"),
])
def test_bad_input_is_422_and_nothing_is_contacted(admin, node_id, remote, body, field):
    healthy(remote)

    response = admin.post(route(node_id), json=body)

    assert field in assert_error(response, 422, "validation_failed")["details"]
    assert len(remote.calls) == 0


def test_unknown_node_is_404(admin, remote):
    assert_error(admin.post(route("no-such-node"), json={"api_url": REMOTE}), 404, "not_found")
    assert len(remote.calls) == 0


def test_node_credentials_are_refused(client, node, node_id, remote):
    for mode in ("signed", "plain"):
        caller = NodeCaller(client, node, mode=mode)
        response = caller.post(f"/nodes/{node_id}/test-connection", json={})
        assert_error(response, 401, "wrong_credential_type")
    assert len(remote.calls) == 0


def test_anonymous_caller_is_refused(client, node_id, remote):
    assert_error(client.post(route(node_id), json={}), 401, "authentication_required")
    assert len(remote.calls) == 0


# --- credentials --------------------------------------------------------------------------


def test_working_credentials_authenticate_with_a_valid_signature(admin, node_id, remote):
    healthy(remote)
    whoami = remote.add(responses.GET, WHOAMI, json={"code": 0, "data": {"node_id": MARKER}})

    data = check(admin, node_id, api_key=KEY, api_secret=SECRET)

    assert data["reachable"] is True and data["authenticated"] is True and data["error"] is None
    assert whoami.call_count == 1
    sent = whoami.calls[0].request
    parsed = signing.parse_authorization(sent.headers["Authorization"])
    assert isinstance(parsed, signing.SignedCredentials) and parsed.api_key == KEY
    # A remote parent holding this secret accepts exactly this request.
    assert signing.verify_signature(SECRET, parsed, "GET", "/api/v1/cascade/whoami", "", b"")


def test_signature_covers_a_path_prefix_in_the_api_url(admin, node_id, remote):
    base = "http://remote.example/werss"
    remote.add(responses.GET, base + "/healthz")
    whoami = remote.add(responses.GET, base + "/api/v1/cascade/whoami", json={"code": 0})

    data = check(admin, node_id, api_url=base + "/", api_key=KEY, api_secret=SECRET)

    assert data["authenticated"] is True
    parsed = signing.parse_authorization(whoami.calls[0].request.headers["Authorization"])
    assert signing.verify_signature(SECRET, parsed, "GET", "/werss/api/v1/cascade/whoami", "",
                                    b"")


def test_rejected_credentials_report_the_remote_error_code(admin, node_id, remote):
    healthy(remote)
    remote.add(responses.GET, WHOAMI, status=401,
               json=remote_envelope(401, "invalid_credentials"))

    data = check(admin, node_id, api_key=KEY, api_secret=SECRET)

    assert data["reachable"] is True
    assert data["authenticated"] is False
    assert data["error"] == "invalid_credentials"


def test_disabled_node_on_the_remote_is_reported(admin, node_id, remote):
    healthy(remote)
    remote.add(responses.GET, WHOAMI, status=403, json=remote_envelope(403, "node_disabled"))

    data = check(admin, node_id, api_key=KEY, api_secret=SECRET)

    assert data["authenticated"] is False and data["error"] == "node_disabled"


@pytest.mark.parametrize("kwargs", [
    pytest.param({"body": f"<html>{MARKER}</html>", "content_type": "text/html"}, id="html"),
    pytest.param({"json": {"error": f"Not A Code {MARKER}"}}, id="error-not-a-code"),
    pytest.param({"json": [MARKER]}, id="json-list"),
    pytest.param({"body": '{"error": "invalid_credentials", ' + " " * 70_000 + "}"},
                 id="oversized-body"),
])
def test_a_remote_error_that_is_not_our_envelope_gives_only_the_status(admin, node_id, remote,
                                                                       kwargs):
    healthy(remote)
    remote.add(responses.GET, WHOAMI, status=500, **kwargs)

    data = check(admin, node_id, api_key=KEY, api_secret=SECRET)

    assert data["authenticated"] is False and data["error"] == "HTTP 500"


def test_credentials_on_a_werss_parent_fall_back_to_plain_ak_sk(admin, node_id, remote):
    healthy(remote)
    remote.add(responses.GET, WHOAMI, status=404, body=MARKER)
    tasks = remote.add(responses.GET, WERSS_TASKS,
                       json={"code": 0, "data": [{"id": "t", "name": MARKER}]})

    data = check(admin, node_id, api_key=KEY, api_secret=SECRET)

    assert data["authenticated"] is True
    assert tasks.call_count == 1
    assert tasks.calls[0].request.headers["Authorization"] == f"AK-SK {KEY}:{SECRET}"


def test_werss_parent_rejecting_plain_credentials(admin, node_id, remote):
    healthy(remote)
    remote.add(responses.GET, WHOAMI, status=404)
    remote.add(responses.GET, WERSS_TASKS, status=401, json={"detail": MARKER})

    data = check(admin, node_id, api_key=KEY, api_secret=SECRET)

    assert data["authenticated"] is False and data["error"] == "HTTP 401"


def test_credential_check_does_not_follow_redirects(admin, node_id, remote):
    healthy(remote)
    remote.add(responses.GET, WHOAMI, status=302,
               headers={"Location": "http://elsewhere.example/steal"})
    target = remote.add(responses.GET, "http://elsewhere.example/steal", json={"code": 0})

    data = check(admin, node_id, api_key=KEY, api_secret=SECRET)

    assert data["authenticated"] is False and data["error"] == "HTTP 302"
    assert target.call_count == 0


@pytest.mark.parametrize("exc, error", [
    (requests.ReadTimeout(MARKER), "timed out"),
    (requests.ConnectionError(MARKER), "connection failed"),
])
def test_credential_check_that_cannot_complete(admin, node_id, remote, exc, error):
    healthy(remote)
    remote.add(responses.GET, WHOAMI, body=exc)

    data = check(admin, node_id, api_key=KEY, api_secret=SECRET)

    assert data["reachable"] is True
    assert data["authenticated"] is False and data["error"] == error


def test_credentials_given_are_not_stored(admin, node_id, remote):
    healthy(remote)
    remote.add(responses.GET, WHOAMI, json={"code": 0})

    check(admin, node_id, api_url="http://remote.example", api_key=KEY, api_secret=SECRET)

    stored = admin.get(f"/api/v1/cascade/nodes/{node_id}").get_json()["data"]
    assert KEY not in json.dumps(stored) and SECRET not in json.dumps(stored)


# --- a real remote ------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    """A node that is up and does not know the credentials it is shown."""

    def do_GET(self):  # noqa: N802 - http.server's naming
        if self.path == "/healthz":
            self._send(200, b'{"status": "ok"}')
        elif self.path == "/api/v1/cascade/whoami":
            self.reject()
        else:
            self._send(404, MARKER.encode())

    def reject(self):
        self._send(401, json.dumps(remote_envelope(401, "invalid_credentials")).encode())

    def _send(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class _EndlessHandler(_Handler):
    """A broken or hostile node whose 401 body never ends."""

    def reject(self):
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        try:
            self.wfile.write(b'{"error": "invalid_credentials", "pad": "')
            while True:
                self.wfile.write(MARKER.encode() * 4096)
        except OSError:
            pass  # the parent hung up, as it should


def serve(handler):
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def local_server():
    server = serve(_Handler)
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_real_local_server_is_reachable(admin, node_id, local_server):
    data = check(admin, node_id, api_url=local_server)

    assert data["reachable"] is True and data["status_code"] == 200


def test_real_local_server_rejecting_credentials(admin, node_id, local_server):
    data = check(admin, node_id, api_url=local_server, api_key=KEY, api_secret=SECRET)

    assert data["reachable"] is True
    assert data["authenticated"] is False and data["error"] == "invalid_credentials"


def test_closed_local_port_is_unreachable(admin, node_id):
    data = check(admin, node_id, api_url=f"http://127.0.0.1:{free_port()}")

    assert data["reachable"] is False and data["error"] == "no HTTP answer"


@pytest.mark.parametrize("cascade_settings", [{"test_connection_timeout": 0.5}])
@pytest.mark.parametrize("speaks", [b"SSH-2.0-OpenSSH_9.6\r\n", b"", b"\x00\x01binary", None])
def test_a_non_http_port_looks_exactly_like_a_closed_one(admin, node_id, speaks,
                                                         cascade_settings):
    """Issue 8 item 12: the answer told open loopback ports (a service that waits for its
    own protocol timed out) from closed ones (refused)."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    done = threading.Event()

    def answer():
        try:
            connection, _ = listener.accept()
        except OSError:
            return
        with connection:
            if speaks is None:  # a service waiting for its own protocol's first message
                done.wait(10)
            else:
                connection.sendall(speaks)

    threading.Thread(target=answer, daemon=True).start()
    try:
        open_port = check(admin, node_id, api_url=f"http://127.0.0.1:{listener.getsockname()[1]}")
    finally:
        done.set()
        listener.close()
    closed_port = check(admin, node_id, api_url=f"http://127.0.0.1:{free_port()}")

    assert open_port == {**closed_port, "api_url": open_port["api_url"]}
    assert open_port["reachable"] is False and open_port["latency_ms"] is None


def test_remote_that_never_stops_talking_does_not_hold_the_parent(admin, node_id):
    """A remote streaming an endless error body must not make the parent read it all."""
    server = serve(_EndlessHandler)
    outcome = {}

    def call():
        outcome["data"] = check(admin, node_id, api_key=KEY, api_secret=SECRET,
                                api_url=f"http://127.0.0.1:{server.server_address[1]}")

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(60)  # a guard against hanging the suite, not a performance assertion
    server.shutdown()
    server.server_close()

    assert not worker.is_alive(), "test-connection kept reading an endless body"
    assert outcome["data"]["authenticated"] is False
    assert outcome["data"]["error"] == "HTTP 401"
