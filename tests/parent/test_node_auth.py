"""Node authentication: both AK-SK forms and every failure of contract §3."""

import json
import threading

import pytest

from parent.extensions import db
from parent.models import UsedNonce
from shared import signing
from tests.conftest import create_node_with_credentials
from tests.helpers import NodeCaller, NodeCredentials, assert_error

PREFIXES = ["/api/v1/cascade", "/api/v1/wx/cascade"]


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("mode", ["plain", "signed"])
def test_valid_credentials_authenticate_on_both_prefixes(client, node, clock, prefix, mode):
    caller = NodeCaller(client, node, clock=clock, mode=mode, prefix=prefix)
    response = caller.get("/whoami")
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["data"]["node_id"] == node.node_id


def _signed_headers(node, clock, method="POST", path="/api/v1/cascade/heartbeat", body=b"",
                    query="", **overrides):
    timestamp = overrides.pop("timestamp", clock.timestamp())
    header = signing.signed_authorization(node.api_key, overrides.pop("secret", node.api_secret),
                                          method, path, query, body, timestamp=timestamp,
                                          nonce=overrides.pop("nonce", None))
    return {"Authorization": header, "Content-Type": "application/json"}


def test_unknown_key_wrong_secret_and_bad_signature_look_the_same(client, node, clock):
    unknown = NodeCredentials(node.node_id, "CN" + "x" * 32, node.api_secret)
    wrong_secret = NodeCredentials(node.node_id, node.api_key, "CS" + "y" * 32)
    bodies = []
    for creds in (unknown, wrong_secret):
        for mode in ("plain", "signed"):
            response = NodeCaller(client, creds, clock=clock, mode=mode).post("/heartbeat", json={})
            bodies.append(assert_error(response, 401, "invalid_credentials")["message"])
    # A signature over a different body than the one sent.
    headers = _signed_headers(node, clock, body=b'{"version":"1"}')
    response = client.post("/api/v1/cascade/heartbeat", data=b'{"version":"2"}', headers=headers)
    bodies.append(assert_error(response, 401, "invalid_credentials")["message"])
    assert len(set(bodies)) == 1, "failures must not reveal which part was wrong"


@pytest.mark.parametrize("header", [
    "AK-SK nocolon",
    "AK-SK-HMAC-SHA256 Credential=CNx",
    "AK-SK-HMAC-SHA256 Credential=CNx, Timestamp=abc, Nonce=0123456789abcdef, Signature=" + "0" * 64,
    "Basic dXNlcjpwYXNz",
    "garbage",
])
def test_unparseable_header_is_malformed_authorization(client, header):
    response = client.post("/api/v1/cascade/heartbeat", json={}, headers={"Authorization": header})
    assert_error(response, 401, "malformed_authorization")


def test_missing_header_asks_for_credentials(client):
    assert_error(client.get("/api/v1/cascade/feeds"), 401, "authentication_required")


def test_admin_token_is_refused_on_node_routes(client, admin):
    response = client.get("/api/v1/cascade/feeds", headers=admin.headers)
    assert_error(response, 401, "wrong_credential_type")


@pytest.mark.parametrize("mode", ["plain", "signed"])
def test_node_credentials_are_refused_on_admin_routes(client, node, clock, mode):
    caller = NodeCaller(client, node, clock=clock, mode=mode, prefix="/api/v1/cascade")
    assert_error(caller.get("/nodes"), 401, "wrong_credential_type")
    assert_error(caller.get("/sync-logs"), 401, "wrong_credential_type")


@pytest.mark.parametrize("skew", [-301, 301, 3600])
def test_timestamp_outside_window_is_expired(client, node, clock, skew):
    headers = _signed_headers(node, clock, timestamp=clock.timestamp() + skew)
    response = client.post("/api/v1/cascade/heartbeat", headers=headers)
    body = assert_error(response, 401, "request_expired")
    assert body["details"]["server_timestamp"] == clock.timestamp()
    assert body["details"]["server_time"].endswith("Z")
    assert response.headers["Date"]


@pytest.mark.parametrize("skew", [-300, 0, 300])
def test_timestamp_inside_window_is_accepted(client, node, clock, skew):
    headers = _signed_headers(node, clock, timestamp=clock.timestamp() + skew)
    assert client.post("/api/v1/cascade/heartbeat", headers=headers).status_code == 200


def test_replayed_nonce_is_refused_and_changes_nothing(app, client, node, clock):
    headers = _signed_headers(node, clock, nonce="replay-nonce-0001")
    assert client.post("/api/v1/cascade/heartbeat", headers=headers).status_code == 200
    clock.advance(5)
    assert_error(client.post("/api/v1/cascade/heartbeat", headers=headers), 401, "replayed_request")
    # The same nonce is fine for another node: nonces are per key.
    with app.app_context():
        assert db.session.query(UsedNonce).count() == 1


def test_two_copies_racing_each_other_are_served_once(app, node, clock, monkeypatch):
    """The copy that commits second is refused, and what it did is rolled back with it."""
    from parent.services import nodes as service

    record_heartbeat, calls = service.record_heartbeat, []
    inside, finish = threading.Event(), threading.Event()

    def slow_first(node_row, payload):
        calls.append(payload.get("running"))
        if len(calls) == 1:
            inside.set()
            finish.wait(10)
        return record_heartbeat(node_row, payload)

    NodeCaller(app.test_client(), node, clock=clock).post("/heartbeat", json={})  # online
    monkeypatch.setattr(service, "record_heartbeat", slow_first)
    body = json.dumps({"running": 3}).encode()
    headers = _signed_headers(node, clock, body=body, nonce="racing-copies-001")
    answers = []

    def send():
        answers.append(app.test_client().post("/api/v1/cascade/heartbeat", data=body,
                                              headers=headers))

    first = threading.Thread(target=send)
    first.start()
    assert inside.wait(10)  # the first copy is past authentication, its nonce not yet kept
    second = threading.Thread(target=send)
    second.start()
    # SQLite: the second copy is served meanwhile; PostgreSQL: it waits on the first's row.
    second.join(0.5)
    finish.set()
    first.join(10)
    second.join(10)
    assert sorted(answer.status_code for answer in answers) == [200, 401]
    assert_error(next(a for a in answers if a.status_code == 401), 401, "replayed_request")
    with app.app_context():
        assert db.session.query(UsedNonce).filter_by(nonce="racing-copies-001").count() == 1


def test_same_nonce_on_another_route_is_still_a_replay(client, node, clock):
    first = _signed_headers(node, clock, nonce="shared-nonce-0001")
    assert client.post("/api/v1/cascade/heartbeat", headers=first).status_code == 200
    second = _signed_headers(node, clock, method="GET", path="/api/v1/cascade/feeds",
                             nonce="shared-nonce-0001")
    assert_error(client.get("/api/v1/cascade/feeds", headers=second), 401, "replayed_request")


def test_failed_request_does_not_burn_its_nonce(client, node, clock):
    """Nothing is written by a failing request, not even its nonce."""
    bad_body = json.dumps({"capacity": "many"}).encode()
    headers = _signed_headers(node, clock, body=bad_body, nonce="burn-check-00001")
    response = client.post("/api/v1/cascade/heartbeat", data=bad_body, headers=headers)
    assert_error(response, 422, "validation_failed")
    assert client.post("/api/v1/cascade/heartbeat", data=bad_body, headers=headers).status_code == 422


def test_signature_covers_the_query_string(client, node, clock):
    headers = _signed_headers(node, clock, method="GET", path="/api/v1/cascade/feeds/changes",
                              query="since=0&limit=10")
    tampered = client.get("/api/v1/cascade/feeds/changes?since=0&limit=11", headers=headers)
    assert_error(tampered, 401, "invalid_credentials")
    ok = client.get("/api/v1/cascade/feeds/changes?limit=10&since=0", headers=headers)
    assert ok.status_code == 200, "parameter order must not matter"


def test_disabled_node_is_refused(admin, client, node, clock):
    admin.put(f"/api/v1/cascade/nodes/{node.node_id}", json={"is_active": False})
    for mode in ("plain", "signed"):
        response = NodeCaller(client, node, clock=clock, mode=mode).post("/heartbeat", json={})
        assert_error(response, 403, "node_disabled")
    admin.put(f"/api/v1/cascade/nodes/{node.node_id}", json={"is_active": True})
    assert NodeCaller(client, node, clock=clock).post("/heartbeat", json={}).status_code == 200


def test_deleted_node_is_refused_as_disabled(admin, client, node, clock):
    assert admin.delete(f"/api/v1/cascade/nodes/{node.node_id}").status_code == 200
    for mode in ("plain", "signed"):
        response = NodeCaller(client, node, clock=clock, mode=mode).post("/heartbeat", json={})
        assert_error(response, 403, "node_disabled")


def test_wrong_secret_for_disabled_node_is_still_invalid_credentials(admin, client, node, clock):
    """Nobody learns a node is disabled without its secret."""
    admin.put(f"/api/v1/cascade/nodes/{node.node_id}", json={"is_active": False})
    creds = NodeCredentials(node.node_id, node.api_key, "CS" + "z" * 32)
    assert_error(NodeCaller(client, creds, clock=clock).post("/heartbeat", json={}), 401,
                 "invalid_credentials")


def test_rotation_stops_the_old_pair_at_once(admin, client, node, clock):
    response = admin.post(f"/api/v1/cascade/nodes/{node.node_id}/credentials")
    fresh = response.get_json()["data"]
    assert fresh["api_key"] != node.api_key and fresh["api_secret"] != node.api_secret
    for mode in ("plain", "signed"):
        old = NodeCaller(client, node, clock=clock, mode=mode).post("/heartbeat", json={})
        assert_error(old, 401, "invalid_credentials")
        new_creds = NodeCredentials(node.node_id, fresh["api_key"], fresh["api_secret"])
        assert NodeCaller(client, new_creds, clock=clock, mode=mode).post(
            "/heartbeat", json={}).status_code == 200


@pytest.mark.parametrize("cascade_settings", [{"allow_plain_auth": False}])
def test_plain_form_can_be_turned_off(client, node, clock, cascade_settings):
    plain = NodeCaller(client, node, mode="plain").post("/heartbeat", json={})
    assert_error(plain, 401, "plain_auth_disabled")
    assert NodeCaller(client, node, clock=clock).post("/heartbeat", json={}).status_code == 200


def test_nodes_cannot_use_each_others_nonce_space(admin, client, node, clock):
    other = create_node_with_credentials(admin, name="child-2")
    nonce = "same-nonce-both-1"
    for creds in (node, other):
        headers = _signed_headers(creds, clock, nonce=nonce)
        assert client.post("/api/v1/cascade/heartbeat", headers=headers).status_code == 200


def test_a_signed_request_with_a_repeated_query_key_is_refused(app, client, node, clock):
    """Issue 8 item 15: reordering duplicates kept the signature valid while Flask read the
    first value, so a relay could swap which value the parent acted on."""
    path = "/api/v1/cascade/feeds/changes"
    headers = _signed_headers(node, clock, method="GET", path=path, query="since=0&since=5")
    swapped = client.get(f"{path}?since=5&since=0", headers=headers)

    body = assert_error(swapped, 400, "bad_request")
    assert body["details"] == {"repeated": ["since"]}
    with app.app_context():
        assert db.session.query(UsedNonce).count() == 0, "a refused request writes nothing"
