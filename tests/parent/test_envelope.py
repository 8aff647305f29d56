"""Every error is the contract's envelope, and a refused request writes nothing.

Covers docs/PROTOCOL.md §2 on admin and node routes: malformed JSON, wrong shapes and
types, unknown fields, oversized bodies, unknown routes and methods, request ids, and
authentication failures, each checked against a snapshot of every table. Cases sharing a
setup loop inside one test (each assertion names its case): building the app per case
costs most of a second on PostgreSQL.
"""

from __future__ import annotations

import io
import json
import re

import pytest
import sqlalchemy as sa

from parent.extensions import db
from shared import signing
from tests.conftest import create_node_with_credentials
from tests.helpers import NodeCaller, NodeCredentials

MAX_BODY = 2048
SNAKE_CASE = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")
ENVELOPE_KEYS = {"code", "message", "error", "details", "request_id"}
PREFIXES = ["/api/v1/cascade", "/api/v1/wx/cascade"]


@pytest.fixture
def cascade_settings():
    return {"max_body_bytes": MAX_BODY}


# Bodies too large for MAX_BODY (deep nesting, huge numbers) need the default limit.
default_body_limit = pytest.mark.parametrize("cascade_settings", [{}], ids=["default-limit"])


def assert_error_envelope(response, status: int | None = None, error: str | None = None,
                          case: object = "") -> dict:
    """Assert a response is the contract's error envelope, and return its body."""
    raw = response.get_data()
    where = (case, response.status_code, raw[:500])
    assert response.status_code >= 400, where
    if status is not None:
        assert response.status_code == status, where
    assert response.mimetype == "application/json", where
    body = json.loads(raw)
    assert isinstance(body, dict) and set(body) == ENVELOPE_KEYS, where
    assert body["code"] == response.status_code, where
    assert isinstance(body["error"], str) and SNAKE_CASE.match(body["error"]), where
    if error is not None:
        assert body["error"] == error, where
    assert isinstance(body["message"], str) and body["message"].strip(), where
    assert body["details"] is None or isinstance(body["details"], dict), where
    assert isinstance(body["request_id"], str) and body["request_id"], where
    assert response.headers.get("X-Request-ID") == body["request_id"], where
    return body


def database_state(app) -> dict[str, list[tuple]]:
    """Every row of every table, in primary-key order."""
    with app.app_context():
        state = {}
        for table in db.metadata.sorted_tables:
            rows = db.session.execute(
                sa.select(table).order_by(*table.primary_key.columns)
            ).all()
            state[table.name] = [tuple(row) for row in rows]
        return state


def assert_nothing_written(app, before: dict, case: object = "") -> None:
    after = database_state(app)
    counts = {name: len(rows) for name, rows in after.items()}
    assert counts == {name: len(rows) for name, rows in before.items()}, case
    changed = [name for name in after if after[name] != before[name]]
    assert not changed, (case, changed)


def send_json(admin, method, path, body: bytes, **headers):
    return admin.open(method, path, data=body,
                      headers={"Content-Type": "application/json", **headers})


# --- the routes under test ---------------------------------------------------------------------

@pytest.fixture
def feed_id(admin):
    response = admin.post("/api/v1/feeds", json={"mp_name": "Feed", "faker_id": "MzA5NzAx"})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["data"]["id"]


@pytest.fixture
def task_id(admin):
    response = admin.post("/api/v1/message-tasks", json={"name": "Task", "cron_exp": "0 8 * * *"})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["data"]["id"]


@pytest.fixture
def routes(node, feed_id, task_id):
    """Admin routes that take a JSON object body, by name."""
    return {
        "node_create": ("POST", "/api/v1/cascade/nodes"),
        "node_create_wx": ("POST", "/api/v1/wx/cascade/nodes"),
        "node_update": ("PUT", f"/api/v1/cascade/nodes/{node.node_id}"),
        "test_connection": ("POST", f"/api/v1/cascade/nodes/{node.node_id}/test-connection"),
        "feed_create": ("POST", "/api/v1/feeds"),
        "feed_update": ("PUT", f"/api/v1/feeds/{feed_id}"),
        "task_create": ("POST", "/api/v1/message-tasks"),
        "task_update": ("PUT", f"/api/v1/message-tasks/{task_id}"),
        "dispatch": ("POST", "/api/v1/cascade/dispatch"),
        "feed_import": ("POST", "/api/v1/feeds/import"),
    }


OBJECT_ROUTES = ["node_create", "node_create_wx", "node_update", "test_connection",
                 "feed_create", "feed_update", "task_create", "task_update", "dispatch"]
ADMIN_ROUTES = OBJECT_ROUTES + ["feed_import"]
NODE_BODY_ROUTES = ["/heartbeat", "/report-result", "/claim", "/articles",
                    "/leases/no-such-lease/complete", "/leases/no-such-lease/fail"]
# Routes whose body must be a JSON object even when empty bodies are allowed.
NODE_REQUIRED_BODY_ROUTES = ["/report-result", "/articles"]

MALFORMED_BODIES = {
    "truncated": b"{",
    "single-quotes": b"{'name': 'x'}",
    "trailing-comma": b'{"name": "x",}',
    "two-documents": b'{"name": "x"} {"name": "y"}',
    "bare-word": b"nul",
    "not-utf8": b"\xff\xfe\xfa",
    "invalid-utf8-in-string": b'{"name": "\xc3\x28"}',
}
HUGE_MALFORMED_BODIES = {
    "nested-too-deep": b"[" * 100_000 + b"]" * 100_000,
    "object-nested-too-deep": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    "integer-too-long": b'{"capacity": 1' + b"0" * 5000 + b"}",
}
NON_OBJECT_BODIES = [b"[]", b'[{"name": "x"}]', b'"a string"', b"42", b"true"]


# --- malformed JSON, wrong shapes ---------------------------------------------------------

def test_malformed_json_on_admin_routes_is_400(app, admin, routes):
    before = database_state(app)
    for route in ADMIN_ROUTES:
        method, path = routes[route]
        for name, body in MALFORMED_BODIES.items():
            response = send_json(admin, method, path, body)
            assert_error_envelope(response, 400, "malformed_json", case=(route, name))
    assert_nothing_written(app, before)


def test_malformed_json_on_node_routes_is_400(app, client, node, clock):
    before = database_state(app)
    for prefix in PREFIXES:
        caller = NodeCaller(client, node, clock=clock, prefix=prefix)
        for route in NODE_BODY_ROUTES:
            for name, body in MALFORMED_BODIES.items():
                response = caller.post(route, data=body)
                assert_error_envelope(response, 400, "malformed_json", case=(prefix, route, name))
    assert_nothing_written(app, before)


@default_body_limit
def test_json_nested_too_deep_or_numbers_too_long_are_400(app, admin, routes, node, clock,
                                                          client):
    before = database_state(app)
    for name, body in HUGE_MALFORMED_BODIES.items():
        for route in ("node_create", "feed_import", "task_update"):
            method, path = routes[route]
            response = send_json(admin, method, path, body)
            assert_error_envelope(response, 400, "malformed_json", case=(route, name))
        for route in ("/heartbeat", "/report-result", "/articles"):
            response = NodeCaller(client, node, clock=clock).post(route, data=body)
            assert_error_envelope(response, 400, "malformed_json", case=(route, name))
    assert_nothing_written(app, before)


@default_body_limit
def test_a_json_string_hiding_deep_nesting_is_422(app, admin, routes):
    before = database_state(app)
    nested = "[" * 100_000 + "]" * 100_000
    for route in ("task_create", "task_update"):
        method, path = routes[route]
        for field in ("mps_id", "headers"):
            response = admin.open(method, path, json={"name": "t", "cron_exp": "* * * * *",
                                                      field: nested})
            details = assert_error_envelope(response, 422, "validation_failed",
                                            case=(route, field))["details"]
            assert field in details, details
    assert_nothing_written(app, before)


def test_malformed_json_on_login_is_400_and_not_counted_as_a_failure(app, admin, client):
    before = database_state(app)
    for name, body in MALFORMED_BODIES.items():
        response = client.post("/api/v1/auth/login", data=body, content_type="application/json")
        assert_error_envelope(response, 400, "malformed_json", case=name)
    assert_nothing_written(app, before)


def test_a_non_object_body_on_admin_routes_is_422(app, admin, routes):
    before = database_state(app)
    for route in OBJECT_ROUTES:
        method, path = routes[route]
        for body in NON_OBJECT_BODIES:
            response = send_json(admin, method, path, body)
            assert_error_envelope(response, 422, "validation_failed", case=(route, body))
    assert_nothing_written(app, before)


def test_feed_import_needs_a_list(app, admin):
    before = database_state(app)
    for body in [b'"a string"', b"42", b"true", b'{"feeds": "x"}', b'{"feeds": {"mp_name": "x"}}']:
        response = send_json(admin, "POST", "/api/v1/feeds/import", body)
        details = assert_error_envelope(response, 422, "validation_failed", case=body)["details"]
        assert "feeds" in details, body
    assert_nothing_written(app, before)


def test_a_non_object_body_on_node_routes_is_422(app, client, node, clock):
    before = database_state(app)
    for prefix in PREFIXES:
        caller = NodeCaller(client, node, clock=clock, prefix=prefix)
        for route in NODE_BODY_ROUTES:
            for body in NON_OBJECT_BODIES:
                response = caller.post(route, data=body)
                assert_error_envelope(response, 422, "validation_failed", case=(route, body))
    assert_nothing_written(app, before)


def test_a_missing_body_is_named_where_one_is_required(app, admin, routes, node_caller):
    before = database_state(app)
    for route in ("node_create", "feed_create", "task_create", "dispatch"):
        method, path = routes[route]
        response = admin.open(method, path)
        assert_error_envelope(response, 400, "malformed_json", case=route)
    for route in NODE_REQUIRED_BODY_ROUTES:
        assert_error_envelope(node_caller.post(route), 400, "malformed_json", case=route)
    assert_nothing_written(app, before)


# --- wrong types, each bad field named -----------------------------------------------------

WRONG_TYPES = {
    "node_create": {"name": None, "node_type": "1", "capacity": True, "description": 5,
                    "labels": "a", "api_url": 7},
    "node_create_wx": {"name": 3.5, "node_type": 1.5, "capacity": "4"},
    "node_update": {"name": None, "capacity": 4.5, "node_type": False, "is_active": "maybe",
                    "labels": [1]},
    "test_connection": {"api_url": 5, "api_key": ["k"], "api_secret": {"s": 1}},
    "feed_create": {"mp_name": None, "status": "1", "source_type": 1, "labels": {},
                    "faker_id": 12},
    "feed_update": {"mp_name": None, "status": True, "mp_intro": [], "source_url": 1},
    "task_create": {"name": None, "cron_exp": 5, "message_type": True, "status": 1.5,
                    "headers": [1], "mps_id": {"id": "x"}},
    "task_update": {"cron_exp": None, "status": "1", "message_type": 0.5, "cookies": 1},
    "dispatch": {"task_id": 7},
}

NODE_WRONG_TYPES = {
    "/heartbeat": {"version": 5, "hostname": ["h"], "capacity": "4", "running": True,
                   "capabilities": "rss", "callback_url": 7},
    "/report-result": {"task_id": None, "results": "x", "timestamp": True},
    "/claim": {"max": "1", "wait": 1.5},
    "/articles": {"lease_id": 5, "articles": {"id": "a"}},
    "/leases/no-such-lease/complete": {"results": "x"},
    "/leases/no-such-lease/fail": {"error": 5, "retryable": "perhaps",
                                   "rate_limited_until": [1]},
}


def test_wrong_types_on_admin_routes_name_each_field(app, admin, routes):
    before = database_state(app)
    for route, body in WRONG_TYPES.items():
        method, path = routes[route]
        response = admin.open(method, path, json=body)
        details = assert_error_envelope(response, 422, "validation_failed", case=route)["details"]
        assert set(body) <= set(details), (route, details)
    assert_nothing_written(app, before)


def test_missing_required_fields_are_named(app, admin, routes):
    required = {"node_create": {"name"}, "feed_create": {"mp_name"},
                "task_create": {"name", "cron_exp"}, "dispatch": {"task_id"}}
    for route, fields in required.items():
        method, path = routes[route]
        response = admin.open(method, path, json={})
        details = assert_error_envelope(response, 422, "validation_failed", case=route)["details"]
        assert fields <= set(details), (route, details)


def test_integers_out_of_range_are_422(app, admin):
    before = database_state(app)
    for value in [10**30, -(10**30), 2**31, 2**63, -1, 1e300]:
        response = admin.post("/api/v1/cascade/nodes",
                              json={"name": "n", "capacity": value, "node_type": value})
        details = assert_error_envelope(response, 422, "validation_failed", case=value)["details"]
        assert {"capacity", "node_type"} <= set(details), (value, details)
    assert_nothing_written(app, before)


def test_login_with_wrong_types_is_422_and_writes_nothing(app, admin, client):
    before = database_state(app)
    response = client.post("/api/v1/auth/login", json={"username": 5, "password": None})
    details = assert_error_envelope(response, 422, "validation_failed")["details"]
    assert {"username", "password"} <= set(details)
    assert_nothing_written(app, before)


def test_wrong_types_on_node_routes_name_each_field(app, node_caller):
    before = database_state(app)
    for route, body in NODE_WRONG_TYPES.items():
        response = node_caller.post(route, json=body, headers={"Idempotency-Key": "k" + route})
        details = assert_error_envelope(response, 422, "validation_failed", case=route)["details"]
        assert set(body) <= set(details), (route, details)
    assert_nothing_written(app, before)


def test_wrong_types_inside_lists_are_named_by_position(app, node_caller):
    before = database_state(app)
    body = {"task_id": "t1", "results": [
        {"mp_id": "ok", "article_count": 1},
        {"mp_id": 5, "article_count": "3", "success_count": 1.5, "timestamp": [1]},
    ]}
    response = node_caller.post("/report-result", json=body, headers={"Idempotency-Key": "k-1"})
    details = assert_error_envelope(response, 422, "validation_failed")["details"]
    assert set(details["results"]) == {"1"}, details
    assert {"mp_id", "article_count", "success_count", "timestamp"} <= set(details["results"]["1"])
    body = {"articles": [{"id": "a1", "mp_id": "f1"}, {"id": None, "publish_time": "now"}]}
    response = node_caller.post("/articles", json=body)
    details = assert_error_envelope(response, 422, "validation_failed")["details"]
    # Articles are judged one by one: the unknown feed of the first is named too.
    assert set(details["articles"]) == {"0", "1"}, details
    assert set(details["articles"]["0"]) == {"mp_id"}
    assert {"id", "mp_id", "publish_time"} <= set(details["articles"]["1"])
    assert_nothing_written(app, before)


def test_times_out_of_range_are_422(app, node_caller):
    before = database_state(app)
    for timestamp in ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00",
                      "1969-12-31T23:59:59Z", "2020-13-01T00:00:00Z", -1, 2**40, 1e300, "",
                      "x" * 65, True]:
        response = node_caller.post("/report-result",
                                    json={"task_id": "t", "results": [], "timestamp": timestamp})
        details = assert_error_envelope(response, 422, "validation_failed",
                                        case=timestamp)["details"]
        assert "timestamp" in details, (timestamp, details)
        response = node_caller.post("/leases/no-such-lease/fail",
                                    json={"rate_limited_until": timestamp})
        details = assert_error_envelope(response, 422, "validation_failed",
                                        case=timestamp)["details"]
        assert "rate_limited_until" in details, (timestamp, details)
    assert_nothing_written(app, before)


def test_bad_change_queries_name_each_field(app, client, node, clock):
    before = database_state(app)
    for route in ("/feeds/changes", "/message-tasks/changes"):
        path = "/api/v1/cascade" + route
        for query, fields in [("since=abc", {"since"}), ("since=-1", {"since"}),
                              ("limit=0", {"limit"}), ("limit=1001&since=1.5", {"limit", "since"}),
                              ("since=" + "9" * 30, {"since"}), ("since=%00", {"since"})]:
            header = signing.signed_authorization(node.api_key, node.api_secret, "GET", path,
                                                  query, b"", timestamp=clock.timestamp())
            response = client.get(f"{path}?{query}", headers={"Authorization": header})
            details = assert_error_envelope(response, 422, "validation_failed",
                                            case=(route, query))["details"]
            assert fields <= set(details), (route, query, details)
    assert_nothing_written(app, before)


def test_bad_admin_queries_name_each_field(app, admin):
    before = database_state(app)
    for path, query, fields in [
        ("/api/v1/cascade/nodes", "page=0&page_size=abc", {"page", "page_size"}),
        ("/api/v1/cascade/nodes", "node_type=2&status=gone", {"node_type", "status"}),
        ("/api/v1/feeds", "page_size=201&source_type=atom&status=x",
         {"page_size", "source_type", "status"}),
        ("/api/v1/message-tasks", "status=9&page=" + "1" * 25, {"status", "page"}),
        ("/api/v1/cascade/sync-logs", "limit=500&offset=-1&node_id=%00",
         {"limit", "offset", "node_id"}),
        ("/api/v1/cascade/reports", "limit=x&task_id=" + "t" * 65, {"limit", "task_id"}),
        ("/api/v1/cascade/allocations", "status=lost&page=-1", {"status", "page"}),
        ("/api/v1/cascade/feed-status", "freshness=old", {"freshness"}),
        ("/api/v1/articles", "since=-5&feed_id=%00", {"since", "feed_id"}),
        ("/api/v1/feeds", "pgae=2", {"pgae"}),
    ]:
        response = admin.get(f"{path}?{query}")
        details = assert_error_envelope(response, 422, "validation_failed",
                                        case=(path, query))["details"]
        assert fields <= set(details), (path, query, details)
    assert_nothing_written(app, before)


# --- unknown fields --------------------------------------------------------------------------

def test_unknown_fields_on_admin_routes_are_named(app, admin, routes):
    valid = {"node_create": {"name": "new"}, "node_create_wx": {"name": "new"},
             "feed_create": {"mp_name": "m", "faker_id": "f"},
             "task_create": {"name": "t", "cron_exp": "* * * * *"}}
    before = database_state(app)
    for route in OBJECT_ROUTES:
        method, path = routes[route]
        body = {**valid.get(route, {}), "nmae": "typo", "is_admin": True}
        response = admin.open(method, path, json=body)
        details = assert_error_envelope(response, 422, "validation_failed", case=route)["details"]
        assert {"nmae", "is_admin"} <= set(details), (route, details)
    response = admin.post("/api/v1/auth/login",
                          json={"username": "admin", "password": "x", "remember": True})
    details = assert_error_envelope(response, 422, "validation_failed")["details"]
    assert "remember" in details
    assert_nothing_written(app, before)


def test_unknown_field_names_that_are_not_valid_unicode_still_get_the_envelope(app, admin):
    before = database_state(app)
    response = send_json(admin, "POST", "/api/v1/cascade/nodes", b'{"name": "n", "\\ud800x": 1}')
    details = assert_error_envelope(response, 422, "validation_failed")["details"]
    assert list(details) == ["\\ud800x"]
    assert_nothing_written(app, before)


def test_node_payloads_ignore_unknown_fields(node_caller):
    response = node_caller.post("/heartbeat", json={"version": "1.0", "from_the_future": [1]})
    assert response.status_code == 200, response.get_json()


# --- values the database or HTTP cannot carry ------------------------------------------------

def test_values_the_database_or_http_cannot_carry_are_422(app, admin, routes):
    before = database_state(app)
    for route, body, field in [
        ("node_create", {"name": "n", "api_url": "http://example.com/" + "a" * 600}, "api_url"),
        ("node_update", {"api_url": "http://example.com/" + "a" * 600}, "api_url"),
        ("node_create", {"name": "n\x00"}, "name"),
        ("feed_create", {"mp_name": "m", "faker_id": "f", "labels": ["ok\n"]}, "labels"),
        ("feed_create", {"mp_name": "m", "id": "feed-1\n"}, "id"),
        ("task_create", {"name": "t", "cron_exp": "* * * * *", "headers": {"X-A\n": "v"}},
         "headers"),
        ("task_create", {"name": "t", "cron_exp": "* * * * *", "headers": {"X-A": "a\r\nb"}},
         "headers"),
    ]:
        method, path = routes[route]
        response = admin.open(method, path, json=body)
        details = assert_error_envelope(response, 422, "validation_failed",
                                        case=(route, body))["details"]
        assert field in details, (route, details)
    assert_nothing_written(app, before)


def test_lone_surrogates_are_422(app, admin, routes, client, node_caller):
    before = database_state(app)
    for route, raw, field in [
        ("node_create", b'{"name": "n\\ud800"}', "name"),
        ("feed_create", b'{"mp_name": "\\udfff", "faker_id": "f"}', "mp_name"),
        ("task_create", b'{"name": "t", "cron_exp": "* * * * *", "headers": {"X-A": "\\udc80"}}',
         "headers"),
        ("task_create", b'{"name": "t", "cron_exp": "* * * * *", "mps_id": [{"id": "\\ud800"}]}',
         "mps_id"),
    ]:
        method, path = routes[route]
        response = send_json(admin, method, path, raw)
        details = assert_error_envelope(response, 422, "validation_failed", case=raw)["details"]
        assert field in details, (route, details)
    response = client.post("/api/v1/auth/login", content_type="application/json",
                           data=b'{"username": "admin", "password": "\\udc80"}')
    assert "password" in assert_error_envelope(response, 422, "validation_failed")["details"]
    for route, raw, field in [
        ("/heartbeat", b'{"hostname": "\\ud800"}', "hostname"),
        ("/report-result", b'{"task_id": "t", "results": [{"mp_id": "\\udbff"}]}', "results"),
        ("/articles", b'{"articles": [{"id": "a", "mp_id": "m", "title": "\\ud800"}]}',
         "articles"),
    ]:
        response = node_caller.post(route, data=raw)
        details = assert_error_envelope(response, 422, "validation_failed", case=raw)["details"]
        assert field in details, (route, details)
    assert_nothing_written(app, before)


def test_heartbeat_values_the_database_cannot_store_are_422(app, node_caller):
    before = database_state(app)
    for body, field in [
        ({"callback_url": "http://example.com/" + "c" * 600}, "callback_url"),
        ({"hostname": "h\x00"}, "hostname"),
        ({"capabilities": {"sources": ["rss\x00"]}}, "capabilities"),
        ({"capabilities": {"wechat": {"expires_at": "0001-01-01T00:00:00+01:00"}}},
         "capabilities"),
    ]:
        response = node_caller.post("/heartbeat", json=body)
        details = assert_error_envelope(response, 422, "validation_failed", case=body)["details"]
        assert field in details, (body, details)
    assert_nothing_written(app, before)


def test_ids_the_database_cannot_store_are_not_server_errors(app, admin, node_caller):
    before = database_state(app)
    for collection in ("/api/v1/cascade/nodes", "/api/v1/feeds", "/api/v1/message-tasks"):
        for method in ("GET", "PUT", "DELETE"):
            response = admin.open(method, f"{collection}/a%00b",
                                  json={} if method == "PUT" else None)
            body = assert_error_envelope(response, case=(method, collection))
            assert response.status_code < 500, body
    for action in ("renew", "complete", "fail"):
        response = node_caller.post(f"/leases/a%00b/{action}")
        body = assert_error_envelope(response, case=action)
        assert response.status_code < 500, body
    assert_nothing_written(app, before)


# --- body limit ------------------------------------------------------------------------------

def test_an_oversized_admin_body_is_413(app, admin, routes):
    body = json.dumps({"name": "n", "description": "d" * (MAX_BODY * 2)}).encode()
    before = database_state(app)
    for route in ADMIN_ROUTES:
        method, path = routes[route]
        response = send_json(admin, method, path, body)
        envelope = assert_error_envelope(response, 413, "payload_too_large", case=route)
        assert str(MAX_BODY) in envelope["message"]
    assert_nothing_written(app, before)


def test_an_oversized_login_is_413_and_not_counted(app, admin, client):
    before = database_state(app)
    fields = {"username": "admin", "password": "p" * (MAX_BODY * 2)}
    for content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        response = client.post("/api/v1/auth/login", data=fields, content_type=content_type)
        assert_error_envelope(response, 413, "payload_too_large", case=content_type)
    response = client.post("/api/v1/auth/login", json=fields)
    assert_error_envelope(response, 413, "payload_too_large")
    assert_nothing_written(app, before)


def test_an_oversized_opml_import_is_413(app, admin):
    outline = '<outline text="x" xmlUrl="http://example.com/feed.xml"/>'
    document = f"<opml><body>{outline * 100}</body></opml>".encode()
    assert len(document) > MAX_BODY
    before = database_state(app)
    for content_type in ("text/x-opml", "application/xml"):
        response = admin.post("/api/v1/feeds/import", data=document, content_type=content_type)
        assert_error_envelope(response, 413, "payload_too_large", case=content_type)
    response = admin.post("/api/v1/feeds/import", content_type="multipart/form-data",
                          data={"file": (io.BytesIO(document), "feeds.opml")})
    assert_error_envelope(response, 413, "payload_too_large")
    assert_nothing_written(app, before)


def test_an_oversized_signed_node_body_is_413(app, client, node, clock):
    before = database_state(app)
    for prefix in PREFIXES:
        caller = NodeCaller(client, node, clock=clock, prefix=prefix)
        for route in NODE_BODY_ROUTES:
            response = caller.post(route, json={"version": "v" * (MAX_BODY * 2)})
            assert_error_envelope(response, 413, "payload_too_large", case=(prefix, route))
    assert_nothing_written(app, before)


def test_a_body_at_the_limit_is_accepted(node_caller):
    body = json.dumps({"hostname": "h"}).encode()
    body = body[:-1] + b" " * (MAX_BODY - len(body)) + b"}"
    assert len(body) == MAX_BODY
    response = node_caller.post("/heartbeat", data=body)
    assert response.status_code == 200, response.get_json()


# --- unknown routes, wrong methods -----------------------------------------------------------

UNKNOWN_PATHS = ["/nope", "/api", "/api/v1", "/api/v1/nope", "/api/v2/cascade/heartbeat",
                 "/api/v1/cascade/nope", "/api/v1/wx/cascade/nope", "/api/v1/cascade/",
                 "/api/v1/cascade/nodes/x/nope", "/api/v1/feeds/a/b",
                 "/api/v1/cascade/leases/x/explode", "/api/v1/cascade/heartbeat/x"]


def test_unknown_routes_are_404_in_the_envelope(client):
    for path in UNKNOWN_PATHS:
        for method in ("GET", "POST", "PUT", "DELETE", "PATCH"):
            response = client.open(path, method=method, json={"a": 1})
            assert_error_envelope(response, 404, "not_found", case=(method, path))


def test_unknown_routes_are_404_for_authenticated_callers_too(admin, node_caller):
    for path in UNKNOWN_PATHS:
        assert_error_envelope(admin.post(path, json={}), 404, "not_found", case=path)
        response = node_caller.client.post(path, json={}, headers={"Authorization": "AK-SK a:b"})
        assert_error_envelope(response, 404, "not_found", case=path)


def test_unknown_resources_are_404_in_the_envelope(admin):
    for path in ("/api/v1/cascade/nodes/missing", "/api/v1/feeds/missing",
                 "/api/v1/message-tasks/missing"):
        assert_error_envelope(admin.get(path), 404, "not_found", case=path)
        assert_error_envelope(admin.put(path, json={}), 404, "not_found", case=path)
        assert_error_envelope(admin.delete(path), 404, "not_found", case=path)


def test_a_wrong_method_is_405_with_allow(client):
    for method, path, allowed in [
        ("GET", "/api/v1/cascade/heartbeat", {"POST"}),
        ("DELETE", "/api/v1/wx/cascade/heartbeat", {"POST"}),
        ("PUT", "/api/v1/cascade/report-result", {"POST"}),
        ("POST", "/api/v1/cascade/feeds/changes", {"GET"}),
        ("GET", "/api/v1/cascade/claim", {"POST"}),
        ("GET", "/api/v1/cascade/leases/x/renew", {"POST"}),
        ("PATCH", "/api/v1/feeds", {"GET", "POST"}),
        ("POST", "/api/v1/feeds/x", {"GET", "PUT", "DELETE"}),
        ("PATCH", "/api/v1/cascade/nodes/x", {"GET", "PUT", "DELETE"}),
        ("GET", "/api/v1/cascade/nodes/x/credentials", {"POST"}),
        ("GET", "/api/v1/auth/login", {"POST"}),
        ("POST", "/healthz", {"GET"}),
    ]:
        response = client.open(path, method=method)
        assert_error_envelope(response, 405, "method_not_allowed", case=(method, path))
        allow = {item.strip() for item in response.headers["Allow"].split(",")}
        assert allowed <= allow and method not in allow, (method, path, allow)


# --- request ids -----------------------------------------------------------------------------

def test_a_request_id_is_generated_when_none_is_sent(client):
    first = assert_error_envelope(client.get("/nope"), 404)
    second = assert_error_envelope(client.get("/nope"), 404)
    assert first["request_id"] != second["request_id"]
    assert client.get("/healthz").headers["X-Request-ID"]


def test_a_sent_request_id_is_echoed_on_errors_and_successes(client, node_caller, admin):
    for request_id in ["abc-123", "0f" * 16, "req:1/2"]:
        headers = {"X-Request-ID": request_id}
        body = assert_error_envelope(client.get("/nope", headers=headers), 404)
        assert body["request_id"] == request_id
        body = assert_error_envelope(admin.post("/api/v1/feeds", json={}, headers=headers), 422)
        assert body["request_id"] == request_id
        response = node_caller.post("/heartbeat", headers=headers)
        assert response.status_code == 200
        assert response.headers["X-Request-ID"] == request_id
        assert client.get("/healthz", headers=headers).headers["X-Request-ID"] == request_id


def test_an_unusable_request_id_is_replaced(client):
    for request_id in ["x" * 200, "bad id\t", "ünïcode".encode().decode("latin-1"),
                       # Issue 8 item 15: quotes and spaces forged access-log fields.
                       'x" status=200 rid="forged', "a b", "a=b", "a'b", "a;b", "a,b"]:
        response = client.get("/nope", headers={"X-Request-ID": request_id})
        body = assert_error_envelope(response, 404, case=request_id)
        assert re.fullmatch(r"[0-9a-f]{32}", body["request_id"]), body


# --- authentication failures write nothing ---------------------------------------------------

NODE_REQUESTS = [
    ("POST", "/heartbeat", b'{"version": "1.0"}'),
    ("POST", "/report-result", b'{"task_id": "t", "results": []}'),
    ("POST", "/claim", b'{"max": 1, "wait": 0}'),
    ("POST", "/articles", b'{"articles": []}'),
    ("GET", "/feeds", b""),
    ("GET", "/message-tasks/changes", b""),
]


def _signed(creds: NodeCredentials, method, path, body, clock, **overrides):
    return signing.signed_authorization(
        overrides.get("api_key", creds.api_key), overrides.get("api_secret", creds.api_secret),
        method, path, "", body, timestamp=overrides.get("timestamp", clock.timestamp()),
        nonce=overrides.get("nonce"),
    )


AUTH_FAILURES = {
    "missing": (401, "authentication_required"),
    "blank": (401, "authentication_required"),
    "unknown_key": (401, "invalid_credentials"),
    "wrong_secret": (401, "invalid_credentials"),
    "wrong_secret_plain": (401, "invalid_credentials"),
    "unknown_key_plain": (401, "invalid_credentials"),
    "bad_signature": (401, "invalid_credentials"),
    "signed_for_another_path": (401, "invalid_credentials"),
    "malformed_signed": (401, "malformed_authorization"),
    "malformed_plain": (401, "malformed_authorization"),
    "other_scheme": (401, "malformed_authorization"),
    "admin_bearer": (401, "wrong_credential_type"),
    "expired": (401, "request_expired"),
}


def _failing_header(kind, creds, admin, method, path, body, clock):
    if kind == "missing":
        return None
    if kind == "blank":
        return "   "
    if kind == "unknown_key":
        return _signed(creds, method, path, body, clock, api_key="CN" + "x" * 32)
    if kind == "wrong_secret":
        return _signed(creds, method, path, body, clock, api_secret="CS" + "y" * 32)
    if kind == "wrong_secret_plain":
        return signing.plain_authorization(creds.api_key, "CS" + "y" * 32)
    if kind == "unknown_key_plain":
        return signing.plain_authorization("CN" + "x" * 32, creds.api_secret)
    if kind == "bad_signature":
        good = _signed(creds, method, path, body, clock)
        return good[:-64] + ("0" * 64 if not good.endswith("0" * 64) else "1" * 64)
    if kind == "signed_for_another_path":
        return _signed(creds, method, path + "x", body, clock)
    if kind == "malformed_signed":
        return f"AK-SK-HMAC-SHA256 Credential={creds.api_key}, Timestamp=soon"
    if kind == "malformed_plain":
        return f"AK-SK {creds.api_key}"
    if kind == "other_scheme":
        return "Basic YWRtaW46YWRtaW4="
    if kind == "admin_bearer":
        return f"Bearer {admin.token}"
    if kind == "expired":
        return _signed(creds, method, path, body, clock, timestamp=clock.timestamp() - 301)
    raise AssertionError(kind)


@pytest.mark.parametrize("prefix", PREFIXES)
def test_node_auth_failures_write_nothing(app, client, admin, node, clock, prefix):
    before = database_state(app)
    for kind, (status, error) in AUTH_FAILURES.items():
        for method, route, body in NODE_REQUESTS:
            path = prefix + route
            header = _failing_header(kind, node, admin, method, path, body, clock)
            headers = {"Content-Type": "application/json", "Idempotency-Key": f"key-{kind}"}
            if header is not None:
                headers["Authorization"] = header
            response = client.open(path, method=method, data=body, headers=headers)
            envelope = assert_error_envelope(response, status, error, case=(kind, route))
            if kind == "expired":
                assert envelope["details"]["server_timestamp"] == clock.timestamp()
                assert response.headers["Date"]
    assert_nothing_written(app, before)


def test_a_replayed_request_writes_nothing_more(app, client, node, clock):
    path = "/api/v1/cascade/heartbeat"
    body = b'{"version": "1.0"}'
    headers = {"Authorization": _signed(node, "POST", path, body, clock),
               "Content-Type": "application/json"}
    assert client.post(path, data=body, headers=headers).status_code == 200
    before = database_state(app)
    assert_error_envelope(client.post(path, data=body, headers=headers), 401, "replayed_request")
    assert_nothing_written(app, before)


def test_a_refused_request_does_not_burn_its_nonce(app, client, node, clock):
    path = "/api/v1/cascade/report-result"
    nonce = "n" * 32
    body = b'{"task_id": "t"}'
    header = _signed(node, "POST", path, body, clock, nonce=nonce)
    response = client.post(path, data=body, headers={"Authorization": header})
    assert_error_envelope(response, 422, "validation_failed")
    # The corrected request may reuse the nonce: the refused one left no trace.
    good = b'{"task_id": "t", "results": []}'
    header = _signed(node, "POST", path, good, clock, nonce=nonce)
    assert client.post(path, data=good, headers={"Authorization": header}).status_code == 200


@pytest.mark.parametrize("how", ["disabled", "deleted"])
def test_a_disabled_or_deleted_node_is_refused_and_nothing_written(app, client, admin, node,
                                                                   clock, how):
    if how == "disabled":
        response = admin.put(f"/api/v1/cascade/nodes/{node.node_id}", json={"is_active": False})
    else:
        response = admin.delete(f"/api/v1/cascade/nodes/{node.node_id}")
    assert response.status_code == 200, response.get_json()
    before = database_state(app)
    for mode in ("signed", "plain"):
        caller = NodeCaller(client, node, clock=clock, mode=mode)
        for method, route, body in NODE_REQUESTS:
            response = caller.request(method, route, data=body)
            assert_error_envelope(response, 403, "node_disabled", case=(mode, route))
    assert_nothing_written(app, before)


def test_a_bad_signed_heartbeat_body_changes_nothing(app, admin, node_caller, node):
    before = database_state(app)
    response = node_caller.post("/heartbeat", json={"capacity": "four", "version": "2.0"},
                                headers={"Idempotency-Key": "hb-1"})
    assert_error_envelope(response, 422, "validation_failed")
    assert_nothing_written(app, before)
    shown = admin.get(f"/api/v1/cascade/nodes/{node.node_id}").get_json()["data"]
    assert shown["status"] == "offline" and shown["last_heartbeat_at"] is None
    assert shown["version"] is None


def test_a_bad_idempotency_key_writes_nothing(app, node_caller):
    before = database_state(app)
    for key in ["k" * 256, "   "]:
        response = node_caller.post("/heartbeat", json={}, headers={"Idempotency-Key": key})
        details = assert_error_envelope(response, 422, "validation_failed", case=key)["details"]
        assert "Idempotency-Key" in details
    assert_nothing_written(app, before)


ADMIN_REQUESTS = [
    ("POST", "/api/v1/cascade/nodes", {"name": "sneaky"}),
    ("POST", "/api/v1/feeds", {"mp_name": "m", "faker_id": "f"}),
    ("POST", "/api/v1/message-tasks", {"name": "t", "cron_exp": "* * * * *"}),
    ("GET", "/api/v1/cascade/nodes", None),
]


def test_admin_auth_failures_write_nothing(app, client, admin, node, clock):
    before = database_state(app)
    # "revoked" last: it logs the admin out.
    for kind, status, error in [
        ("missing", 401, "authentication_required"),
        ("plain_node", 401, "wrong_credential_type"),
        ("signed_node", 401, "wrong_credential_type"),
        ("unknown_token", 401, "invalid_token"),
        ("empty_bearer", 401, "malformed_authorization"),
        ("other_scheme", 401, "malformed_authorization"),
        ("revoked", 401, "invalid_token"),
    ]:
        if kind == "revoked":
            assert admin.post("/api/v1/auth/logout").status_code == 200
            before = database_state(app)
        for method, path, body in ADMIN_REQUESTS:
            raw = json.dumps(body).encode() if body is not None else b""
            header = {
                "missing": None,
                "plain_node": signing.plain_authorization(node.api_key, node.api_secret),
                "signed_node": _signed(node, method, path, raw, clock),
                "unknown_token": "Bearer not-a-token",
                "empty_bearer": "Bearer ",
                "other_scheme": "Token abc",
                "revoked": f"Bearer {admin.token}",
            }[kind]
            headers = {"Content-Type": "application/json"}
            if header is not None:
                headers["Authorization"] = header
            response = client.open(path, method=method, data=raw, headers=headers)
            assert_error_envelope(response, status, error, case=(kind, path))
    assert_nothing_written(app, before)


def test_a_failed_login_writes_only_its_throttling_record(app, admin, client):
    before = database_state(app)
    response = client.post("/api/v1/auth/login", json={"username": "admin", "password": "wrong"})
    assert_error_envelope(response, 401, "invalid_login")
    after = database_state(app)
    changed = {name for name in after if after[name] != before[name]}
    assert changed == {"login_failures"}
    assert len(after["login_failures"]) > len(before["login_failures"])


def test_refused_admin_writes_leave_the_database_unchanged(app, admin, routes):
    create_node_with_credentials(admin, name="other")
    before = database_state(app)
    for route, body in [
        ("node_create", {"name": "child-1"}),
        ("node_update", {"name": "other"}),
        ("node_update", {"name": " "}),
        ("feed_create", {"mp_name": "m", "source_type": "rss"}),
        ("feed_create", {"mp_name": "m", "faker_id": "f", "labels": ["bad label"]}),
        ("feed_create", {"mp_name": "Feed", "faker_id": "MzA5NzAx"}),
        ("task_create", {"name": "t", "cron_exp": "61 * * * *"}),
        ("task_create", {"name": "t", "cron_exp": "* * * * *", "message_type": 1}),
        ("dispatch", {"task_id": "no-such-task"}),
    ]:
        method, path = routes[route]
        response = admin.open(method, path, json=body)
        envelope = assert_error_envelope(response, case=(route, body))
        assert 400 <= response.status_code < 500, envelope
    assert_nothing_written(app, before)


# --- known gaps whose fixes live outside the schemas and the error handler -------------------
def test_an_id_with_a_nul_is_not_found_on_every_backend(admin):
    for path in ("/api/v1/feeds/a%00b", "/api/v1/cascade/nodes/a%00b",
                 "/api/v1/message-tasks/a%00b"):
        assert_error_envelope(admin.get(path), 404, "not_found", case=path)


def test_a_nul_in_a_plain_api_key_is_refused_like_any_bad_key(client, node):
    response = client.get("/api/v1/cascade/feeds",
                          headers={"Authorization": f"AK-SK {node.api_key}\x00:x"})
    body = assert_error_envelope(response, 401)
    assert body["error"] in ("invalid_credentials", "malformed_authorization")


def test_a_doubled_slash_is_404_in_the_envelope(client):
    assert_error_envelope(client.post("/api/v1/cascade//heartbeat", json={}), 404, "not_found")
