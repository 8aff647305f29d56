"""The node fast lane (parent/node_lane.py): steady heartbeats answered off Flask's request
cycle, everything else answered by the app exactly as before.

Whether the app served a request is told by Flask's ``request_started`` signal: the lane
answers without it.
"""

import json
import logging

import pytest
from flask import request_started

from parent.extensions import db
from parent.models import Node, SyncLog, UsedNonce
from parent.models.sync_log import OP_NODE_ONLINE
from parent.services import presence
from shared import signing
from tests.helpers import NodeCaller, NodeCredentials, assert_error

BODY = {"version": "0.3.0", "hostname": "edge-1", "capacity": 4, "running": 0,
        "capabilities": {"sources": ["rss", "wechat"],
                         "wechat": {"session_valid": True, "expires_at": "2030-01-01T00:00:00Z",
                                    "account": {"name": "Newsroom"}}}}
PATH = "/api/v1/cascade/heartbeat"


@pytest.fixture
def cascade_settings():
    return {"presence_flush_interval": 3600}  # no time-based flush unless a test moves time


@pytest.fixture
def served_by_app(app):
    """The paths of the requests the Flask app served (not the lane)."""
    paths = []

    def note(sender, **_):
        from flask import request

        paths.append(request.path)

    request_started.connect(note, app)
    yield paths
    request_started.disconnect(note, app)


def _steady(client, node, clock, mode):
    """A caller whose node is online and has reported BODY once (through the app)."""
    caller = NodeCaller(client, node, clock=clock, mode=mode)
    assert caller.post("/heartbeat", json=BODY).status_code == 200  # the online edge
    clock.advance(60)
    return caller


def _node(app, node_id):
    with app.app_context():
        found = db.session.get(Node, node_id)
        db.session.expunge(found)
        return found


@pytest.mark.parametrize("mode", ["plain", "signed"])
def test_a_steady_heartbeat_is_answered_by_the_lane_as_the_app_answers_it(
        app, client, node, clock, served_by_app, mode):
    caller = _steady(client, node, clock, mode)
    by_app = caller.post("/heartbeat", json={**BODY, "running": 1})  # a change: the app's
    assert served_by_app == [PATH, PATH]
    clock.advance(60)
    by_lane = caller.post("/heartbeat", json={**BODY, "running": 1}, headers={
        "X-Request-ID": "child-7:hb/42"})
    assert served_by_app == [PATH, PATH], "the steady one never reached the app"
    assert by_lane.status_code == by_app.status_code == 200
    assert sorted(by_lane.headers.keys()) == sorted(by_app.headers.keys())
    assert by_lane.headers["Content-Type"] == "application/json"
    assert by_lane.headers["X-Request-ID"] == "child-7:hb/42"
    lane, app_body = by_lane.get_json(), by_app.get_json()
    assert lane["message"] == app_body["message"] == "心跳成功"
    assert lane["data"]["server_time"] == clock().strftime("%Y-%m-%dT%H:%M:%SZ")
    del lane["data"]["server_time"], app_body["data"]["server_time"]
    assert lane == app_body
    assert by_lane.get_data().endswith(b"}\n")  # as jsonify ends a body


def test_a_signed_heartbeat_through_the_lane_consumes_its_nonce(app, client, node, clock,
                                                               served_by_app):
    caller = _steady(client, node, clock, "signed")
    body = json.dumps(BODY).encode()
    headers = {"Authorization": caller.authorization("POST", PATH, "", body),
               "Content-Type": "application/json"}
    assert client.post(PATH, data=body, headers=headers).status_code == 200
    assert served_by_app == [PATH]
    # The very same request again: the lane sees the nonce was used, the app refuses it.
    assert_error(client.post(PATH, data=body, headers=headers), 401, "replayed_request")
    assert served_by_app == [PATH, PATH]
    with app.app_context():
        assert db.session.query(UsedNonce).filter_by(node_id=node.node_id).count() == 2


@pytest.mark.parametrize("mode", ["plain", "signed"])
def test_a_wrong_secret_or_unknown_key_is_refused_by_the_lane_writing_nothing(
        app, client, node, clock, served_by_app, mode):
    _steady(client, node, clock, mode)
    for creds in (NodeCredentials(node.node_id, node.api_key, "x" * len(node.api_secret)),
                  NodeCredentials(node.node_id, "AK" + "0" * 30, node.api_secret)):
        response = NodeCaller(client, creds, clock=clock, mode=mode).post("/heartbeat", json=BODY)
        body = assert_error(response, 401, "invalid_credentials")
        assert body["request_id"] == response.headers["X-Request-ID"]
    assert served_by_app == [PATH]
    with app.app_context():
        assert db.session.query(UsedNonce).count() == (1 if mode == "signed" else 0)


def test_a_report_that_changes_a_column_goes_to_the_app_and_is_stored(
        app, client, node, clock, served_by_app):
    caller = _steady(client, node, clock, "signed")
    assert caller.post("/heartbeat", json={**BODY, "hostname": "edge-2"}).status_code == 200
    assert served_by_app == [PATH, PATH]
    assert _node(app, node.node_id).hostname == "edge-2"


def test_a_malformed_body_reaches_the_app_whole(client, node, clock, served_by_app):
    caller = _steady(client, node, clock, "signed")
    assert_error(caller.post("/heartbeat", data=b'{"running": '), 400, "malformed_json")
    assert_error(caller.post("/heartbeat", json={"capacity": "many"}), 422, "validation_failed")
    assert served_by_app == [PATH, PATH, PATH]


def test_a_waiting_command_is_delivered_by_the_app(admin, client, node, clock, served_by_app):
    caller = _steady(client, node, clock, "signed")
    assert admin.post(f"/api/v1/cascade/nodes/{node.node_id}/wechat/login").status_code == 202
    before = len(served_by_app)
    data = caller.post("/heartbeat", json=BODY).get_json()["data"]
    assert [c["kind"] for c in data["commands"]] == ["wechat_login"]
    assert served_by_app[before:] == [PATH]
    clock.advance(60)
    assert "commands" not in caller.post("/heartbeat", json=BODY).get_json()["data"]
    assert served_by_app[before:] == [PATH], "delivered once, then steady again"


def test_a_disabled_node_is_refused_by_the_app(admin, client, node, clock, served_by_app):
    caller = _steady(client, node, clock, "plain")
    assert admin.put(f"/api/v1/cascade/nodes/{node.node_id}",
                     json={"is_active": False}).status_code == 200
    assert_error(caller.post("/heartbeat", json=BODY), 403, "node_disabled")
    assert served_by_app[-1] == PATH


def test_a_node_back_from_offline_is_recorded_online_by_the_app(app, client, node, clock,
                                                                served_by_app):
    caller = _steady(client, node, clock, "signed")
    clock.advance(3600)  # far past its offline threshold, no sweep ran
    assert caller.post("/heartbeat", json=BODY).status_code == 200
    assert served_by_app == [PATH, PATH]
    with app.app_context():
        onlines = db.session.query(SyncLog).filter_by(node_id=node.node_id,
                                                      operation=OP_NODE_ONLINE).count()
    assert onlines == 2


def test_a_stale_timestamp_and_an_idempotency_key_are_the_apps(client, node, clock,
                                                               served_by_app):
    caller = _steady(client, node, clock, "signed")
    body = json.dumps(BODY).encode()
    stale = signing.signed_authorization(node.api_key, node.api_secret, "POST", PATH, "", body,
                                         timestamp=clock.timestamp() - 3600)
    assert_error(client.post(PATH, data=body, headers={"Authorization": stale}), 401,
                 "request_expired")
    response = caller.post("/heartbeat", json=BODY, headers={"Idempotency-Key": "hb-1"})
    assert response.status_code == 200
    assert served_by_app == [PATH, PATH, PATH]


@pytest.mark.parametrize("cascade_settings", [{"allow_plain_auth": False}])
def test_plain_credentials_where_they_are_off_are_the_apps(client, node, clock, served_by_app):
    _steady(client, node, clock, "signed")
    caller = NodeCaller(client, node, clock=clock, mode="plain")
    assert_error(caller.post("/heartbeat", json=BODY), 401, "plain_auth_disabled")
    assert served_by_app == [PATH, PATH]


def test_the_lanes_signs_of_life_keep_the_node_online_and_are_written_in_a_batch(
        app, client, node, clock, served_by_app):
    caller = _steady(client, node, clock, "plain")
    first = _node(app, node.node_id).last_heartbeat_at
    for _ in range(5):  # five minutes of steady heartbeats, longer than the 180 s threshold
        assert caller.post("/heartbeat", json=BODY).status_code == 200
        clock.advance(60)
    assert served_by_app == [PATH]
    assert _node(app, node.node_id).last_heartbeat_at == first, "kept in memory until a flush"
    with app.app_context():
        assert presence.flush_presence() == 1
        db.session.commit()
    stored = _node(app, node.node_id)
    assert stored.presence == "online" and stored.last_heartbeat_at > first
    assert stored.offline_at > clock()


def test_requests_the_lane_answers_are_counted_like_the_apps(app, client, node, clock):
    from parent.metrics import render_metrics

    caller = _steady(client, node, clock, "plain")
    assert caller.post("/heartbeat", json=BODY).status_code == 200
    with app.app_context():
        text = render_metrics()[0].decode()
    line = next(line for line in text.splitlines() if line.startswith(
        "werss_http_requests_total{") and 'route="/api/v1/cascade/heartbeat"' in line
        and 'status="200"' in line)
    assert float(line.rsplit(" ", 1)[1]) >= 2  # the app's and the lane's


def test_a_lane_answer_writes_its_json_access_line(db_url, clock, caplog):
    from parent import create_app
    from tests.conftest import (AdminClient, base_config, create_node_with_credentials,
                                make_admin_user)
    from tests.helpers import ADMIN_PASSWORD, ADMIN_USERNAME

    app = create_app({**base_config(db_url), "log_format": "json"}, clock=clock, environ={})
    client = app.test_client()
    make_admin_user(app)
    token = client.post("/api/v1/auth/login", json={
        "username": ADMIN_USERNAME, "password": ADMIN_PASSWORD}).get_json()["data"]
    node = create_node_with_credentials(AdminClient(client, token["access_token"]))
    caller = _steady(client, node, clock, "plain")
    with caplog.at_level(logging.INFO, logger="werss.access"):
        response = caller.post("/heartbeat", json=BODY, headers={"X-Request-ID": "rid-1"})
    lines = [r for r in caplog.records if r.name == "werss.access"]
    assert response.status_code == 200 and len(lines) == 1
    assert (lines[0].status, lines[0].path, lines[0].request_id, lines[0].node_id) == (
        200, PATH, "rid-1", node.node_id)
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def test_a_fault_in_the_lane_leaves_the_answer_to_the_app(app, client, node, clock,
                                                         served_by_app, monkeypatch, caplog):
    from parent.node_lane import NodeFastLane

    caller = _steady(client, node, clock, "signed")

    def broken(self, body):
        raise RuntimeError("boom")

    monkeypatch.setattr(NodeFastLane, "_reported", broken)
    assert caller.post("/heartbeat", json=BODY).status_code == 200
    assert served_by_app == [PATH, PATH]
    assert "the node fast lane failed" in caplog.text


@pytest.mark.parametrize("signed, entity", [(False, None), (True, None), (True, "feed")])
def test_the_lanes_driver_read_gives_what_core_gives(app, client, node, clock, signed, entity):
    """The lane reads on the DBAPI cursor: every column as Core types it, or its checks
    (a report unchanged, presence, the cursor) would drift from the app's."""
    from parent.node_lane import NodeFastLane, _read
    from parent.services import replication

    caller = _steady(client, node, clock, "signed")
    assert caller.post("/heartbeat", json=BODY).status_code == 200
    lane = NodeFastLane(app, app.wsgi_app)
    with app.app_context():
        nonce = db.session.query(UsedNonce.nonce).filter_by(node_id=node.node_id).first()[0]
        params = {"api_key": node.api_key, **({"nonce": nonce} if signed else {}),
                  **(replication.cursor_params(entity) if entity else {})}
        with db.engine.connect() as connection:
            by_core = connection.execute(_read(signed, entity), dict(params)).first()
            by_driver = lane._driver_read(signed, entity, connection).first(connection,
                                                                             dict(params))
            missing = lane._driver_read(signed, entity, connection).first(
                connection, {**params, "api_key": "AK-nobody"})
    assert by_core is not None and missing is None
    assert by_driver._fields == tuple(by_core._fields)
    for name in by_core._fields:
        core_value, driver_value = getattr(by_core, name), getattr(by_driver, name)
        assert (driver_value, type(driver_value)) == (core_value, type(core_value)), name
    assert by_driver.last_heartbeat_at is not None and by_driver.capabilities
    assert not signed or by_driver.seen is True


# Unchanged pulls: full (whole or page one) and incremental, answered 304 by the lane.

FEEDS = "/api/v1/cascade/feeds"
PULLS = {  # what a child sends: route, query
    "feeds": ("/feeds", {}),
    "feeds page one": ("/feeds", {"limit": 100}),
    "feed changes": ("/feeds/changes", None),  # since: the cursor, filled in below
    "task changes": ("/message-tasks/changes", None),
    "tasks": ("/message-tasks", {}),
}


def _add_feed(admin, index):
    response = admin.post("/api/v1/feeds", json={
        "mp_name": f"feed {index}", "source_type": "rss",
        "source_url": f"http://127.0.0.1:1/{index}.xml"})
    assert response.status_code == 201, response.get_json()


def _current(caller, route, query):
    """(query, ETag) a child holds after pulling ``route`` once (through the app)."""
    if query is None:  # incremental: from 0, then from the cursor it was given
        first = caller.get(route, params={"since": 0, "limit": 500})
        query = {"since": first.get_json()["data"]["cursor"], "limit": 500}
        return query, first.headers["ETag"]
    response = caller.get(route, params=query)
    assert response.status_code == 200
    return query, response.headers["ETag"]


@pytest.mark.parametrize("pull", sorted(PULLS))
@pytest.mark.parametrize("mode", ["plain", "signed"])
def test_an_unchanged_pull_is_answered_by_the_lane_as_the_app_answers_it(
        app, admin, client, node, clock, served_by_app, monkeypatch, mode, pull):
    from parent.node_lane import NodeFastLane

    _add_feed(admin, 1)
    caller = _steady(client, node, clock, mode)
    route, query = PULLS[pull]
    query, etag = _current(caller, route, query)
    with monkeypatch.context() as patched:  # the app's own 304, to compare with
        patched.setattr(NodeFastLane, "_query", lambda *_: None)
        by_app = caller.get(route, params=query, headers={"If-None-Match": etag})
    clock.advance(5)
    served = len(served_by_app)
    by_lane = caller.get(route, params=query, headers={"If-None-Match": etag,
                                                       "X-Request-ID": "child-7:sync/9"})
    assert len(served_by_app) == served, "the unchanged pull never reached the app"
    assert by_lane.status_code == by_app.status_code == 304
    assert by_lane.get_data() == by_app.get_data() == b""
    assert by_lane.headers["X-Request-ID"] == "child-7:sync/9"
    del by_lane.headers["X-Request-ID"], by_app.headers["X-Request-ID"]
    assert sorted(by_lane.headers.items()) == sorted(by_app.headers.items())
    assert by_lane.headers["ETag"] == etag


def test_a_pull_the_lane_answered_is_in_the_sync_log_and_the_nodes_last_sync(
        app, admin, client, node, clock, served_by_app):
    _add_feed(admin, 1)
    caller = _steady(client, node, clock, "signed")
    query, etag = _current(caller, "/feeds/changes", None)
    clock.advance(60)
    served = len(served_by_app)
    assert caller.get("/feeds/changes", params=query,
                      headers={"If-None-Match": etag}).status_code == 304
    assert len(served_by_app) == served, "the lane answered"
    assert _node(app, node.node_id).last_sync_at < clock(), "kept until a flush"
    logs = admin.get("/api/v1/cascade/sync-logs",
                     query_string={"node_id": node.node_id, "operation": "sync_feeds"})
    statuses = [item["status"] for item in logs.get_json()["data"]["items"]]
    assert statuses == ["not_modified", "success"]  # newest first: a reader flushes
    shown = admin.get(f"/api/v1/cascade/nodes/{node.node_id}").get_json()["data"]
    assert shown["last_sync_at"] == clock().strftime("%Y-%m-%dT%H:%M:%SZ")  # and so does this
    with app.app_context():
        assert db.session.query(UsedNonce).filter_by(node_id=node.node_id).count() == 3  # 304's too


def test_kept_pulls_are_written_before_a_later_log_row_so_the_log_keeps_their_order(
        app, admin, client, node, clock):
    _add_feed(admin, 1)
    caller = _steady(client, node, clock, "plain")
    query, etag = _current(caller, "/feeds/changes", None)
    clock.advance(60)
    assert caller.get("/feeds/changes", params=query,
                      headers={"If-None-Match": etag}).status_code == 304  # kept
    clock.advance(60)
    _add_feed(admin, 2)
    changed = caller.get("/feeds/changes", params=query, headers={"If-None-Match": etag})
    assert changed.status_code == 200  # its log row is written now, after the kept one
    with app.app_context():
        rows = db.session.query(SyncLog).filter_by(
            node_id=node.node_id, operation="sync_feeds").order_by(SyncLog.id).all()
    assert [row.status for row in rows] == ["success", "not_modified", "success"]
    assert [row.finished_at for row in rows] == sorted(row.finished_at for row in rows)


def test_a_changed_list_or_another_cursor_is_the_apps(admin, client, node, clock,
                                                     served_by_app):
    _add_feed(admin, 1)
    caller = _steady(client, node, clock, "signed")
    query, etag = _current(caller, "/feeds/changes", None)
    behind = caller.get("/feeds/changes", params={**query, "since": 0},
                        headers={"If-None-Match": etag})
    assert behind.status_code == 200 and len(behind.get_json()["data"]["items"]) == 1
    _add_feed(admin, 2)
    changed = caller.get("/feeds/changes", params=query, headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    full_etag = caller.get("/feeds").headers["ETag"]
    page_two = caller.get("/feeds", params={"limit": 1, "after": "0"},
                          headers={"If-None-Match": full_etag})
    assert page_two.status_code == 200
    repeated = caller.get("/feeds", headers={"If-None-Match": full_etag},
                          params=[("limit", "1"), ("limit", "2")])
    assert_error(repeated, 400, "bad_request")  # a signed query names each key once
    bad = caller.get("/feeds/changes", params={"since": "x"}, headers={"If-None-Match": etag})
    assert_error(bad, 422, "validation_failed")
    pulls = [path for path in served_by_app if path.startswith(FEEDS)]
    assert pulls == [FEEDS + "/changes"] * 3 + [FEEDS] * 3 + [FEEDS + "/changes"]


def test_an_unchanged_pull_with_a_wrong_secret_is_refused_by_the_lane(
        admin, client, node, clock, served_by_app):
    caller = _steady(client, node, clock, "signed")
    etag = caller.get("/feeds").headers["ETag"]
    served = len(served_by_app)
    wrong = NodeCaller(client, NodeCredentials(node.node_id, node.api_key, "x" * 34),
                       clock=clock, mode="signed")
    assert_error(wrong.get("/feeds", headers={"If-None-Match": etag}), 401,
                 "invalid_credentials")
    assert len(served_by_app) == served


def test_an_unchanged_pull_of_a_disabled_node_or_on_the_werss_prefix_is_the_apps(
        admin, client, node, clock, served_by_app):
    caller = _steady(client, node, clock, "plain")
    etag = caller.get("/feeds").headers["ETag"]
    werss = NodeCaller(client, node, clock=clock, mode="plain", prefix="/api/v1/wx/cascade")
    assert werss.get("/feeds", headers={"If-None-Match": etag}).status_code == 304
    assert served_by_app[-1] == "/api/v1/wx/cascade/feeds"
    assert admin.put(f"/api/v1/cascade/nodes/{node.node_id}",
                     json={"is_active": False}).status_code == 200
    assert_error(caller.get("/feeds", headers={"If-None-Match": etag}), 403, "node_disabled")
    assert served_by_app[-1] == FEEDS
