"""Property-based fuzzing of every admin, node and public route through the Flask test client.

The property, for any body, field value, query string, path id or header a client can
send: the parent never answers 5xx, every error is the contract's envelope, every success
is the success envelope, and every JSON it sends is strict JSON. Values are aimed at what
breaks backends (NUL, lone surrogates, lengths one past a column, huge integers, times that
overflow on the way to UTC, deep nesting); PostgreSQL is the stricter judge.

Outbound HTTP is blocked with `responses` for the whole module (test-connection would
otherwise contact whatever api_url the fuzzer writes); the one test that needs a remote
talks to a stub server on 127.0.0.1.
"""

from __future__ import annotations

import base64
import http.server
import io
import json
import threading
import uuid
from urllib.parse import quote, urlencode
from xml.sax.saxutils import quoteattr

import pytest
import responses
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from werkzeug.routing import AnyConverter

from parent.auth import admin_required, node_required
from shared import signing
from tests.conftest import create_node_with_credentials
from tests.helpers import ADMIN_PASSWORD, ADMIN_USERNAME
from tests.parent.test_envelope import assert_error_envelope

FUZZ = settings(
    max_examples=60, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.data_too_large, HealthCheck.large_base_example],
)
FEW = settings(FUZZ, max_examples=30)
MANY = settings(FUZZ, max_examples=150)


@pytest.fixture
def cascade_settings():
    # Claims must not long-poll: the fuzzer sends "wait": 30.
    return {"claim_max_wait": 0}


@pytest.fixture(autouse=True)
def no_outbound_http():
    """Every requests call fails as a connection error unless a test lets it through."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


# --- strategies ------------------------------------------------------------------------------

SURROGATES = st.integers(0xD800, 0xDFFF).map(chr)
HOSTILE_CHARS = st.sampled_from(["\x00", "\n", "\r", "\t", " ", "\u2028", "\ufeff", "\x7f",
                                 "%", "/", "?", "#", "\\", '"', "'", "<", "&", "é", "中", "🙂",
                                 "²", "١"])
wild_text = st.lists(st.one_of(st.characters(), SURROGATES, HOSTILE_CHARS),
                     max_size=24).map("".join)
# Column sizes of the schema (36, 64, 100, 120, 128, 255, 500, 1000, 2000) and one past each.
LENGTHS = [15, 16, 36, 37, 64, 65, 100, 101, 120, 121, 128, 129, 255, 256, 500, 501, 1000,
           1001, 2000, 2001, 4000, 4001, 8001, 20001]
sized_text = st.builds(lambda n, c: c * n, st.sampled_from(LENGTHS),
                       st.sampled_from(["a", "中", "1"]))
URL_PREFIX = "http://example.com/"
urls = st.one_of(
    st.builds(lambda scheme, n: f"{scheme}://example.com/" + "p" * n,
              st.sampled_from(["http", "https", "HTTP", "ftp"]),
              st.sampled_from([0, 1, 17, 480, 481, 482, 981, 982, 1981, 1982])),
    st.sampled_from(["http://127.0.0.1:9/", "https://a", "http://", "http://exa mple.com",
                     "http://例子.测试/路径", "http://[::1]:80/x", "http://user:pw@host/",
                     "javascript:alert(1)", "//example.com", "http://example.com/\x00",
                     "http://example.com:99999/", "  http://example.com  "]),
    st.builds(lambda s: URL_PREFIX + s, wild_text),
)
ISO_TIMES = ["1970-01-01T00:00:00Z", "0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00",
             "0001-01-01T00:00:00Z", "2200-12-31T23:59:59Z", "2201-01-01T00:00:00Z",
             "2024-02-30T00:00:00Z", "2024-01-01T00:00:00", "2024-01-01", "2024-01-01T25:00:00Z",
             "2024-01-01T00:00:00+24:00", "2024-01-01T00:00:00.123456789Z", "2024-W01-1",
             "1969-12-31T23:59:59Z", "2024-01-01T00:00:00zz"]
times = st.one_of(st.sampled_from(ISO_TIMES), st.integers(-10, 2**34),
                  st.sampled_from([2**33, 2**33 + 1, 2**63, 1e18, -0.5, 1.5e9, 0.0]))
CRONS = ["* * * * *", "0 8 * * *", "*/5 * * * * *", "61 * * * *", "* * * *", "* * * * * * *",
         "@daily", "0 0 31 2 *", "0 0 L * *", "0 0 * * 5#3", "0 0 ? * MON", "0 0 1W * *",
         "99999999999999999999 * * * *", "*/0 * * * *", "1-0 * * * *", "0-59/99999 * * * *",
         "* * * * MON-SUN", "0 0 29 2 *", "0 0 30 2 *"]
CRON_TOKENS = ["*", "0", "59", "60", "*/5", "1-5", "5-1", "L", "W", "#", "?", "MON", "-1",
               ",", "99999999999999999999", "*/0", "1,2,3", "JAN-DEC", "0/0"]
crons = st.one_of(st.sampled_from(CRONS),
                  st.lists(st.sampled_from(CRON_TOKENS), min_size=1, max_size=7).map(" ".join))
JSON_IN_TEXT = ["[]", "{}", '[{"id": "x"}]', '{"X-A": "1"}', "[[[", "null", "1e999", "NaN",
                '"x"', '{"a": {"b": 1}}', '[{"id": "\\u0000"}]', '{"X-A": "\\ud800"}', "",
                '[{"id": 1}]', '{"X-A": 1}']
HUGE_INTS = [2**31 - 1, 2**31, -(2**31) - 1, 2**53 + 1, 2**62, 2**63 - 1, 2**63, 2**64,
             -(2**63) - 1, 10**30, -(10**30)]
ints = st.one_of(st.integers(-3, 1002), st.integers(), st.sampled_from(HUGE_INTS))
floats = st.floats(allow_nan=False, allow_infinity=False)  # strict JSON cannot carry them
texts = st.one_of(wild_text, st.text(max_size=40), sized_text, urls, st.sampled_from(ISO_TIMES),
                  crons, st.sampled_from(JSON_IN_TEXT))
scalars = st.one_of(st.none(), st.booleans(), ints, floats, texts)
json_values = st.recursive(
    scalars,
    lambda kids: st.one_of(st.lists(kids, max_size=4),
                           st.dictionaries(st.one_of(st.text(max_size=8), wild_text), kids,
                                           max_size=4)),
    max_leaves=10,
)
LABELS = ["a", "ok", "gpu", "region:cn/sh", "bad label", "x" * 64, "x" * 65, "a\n", "", "ä"]
labels = st.lists(st.one_of(st.sampled_from(LABELS), wild_text, ints), max_size=40)
header_names = st.one_of(st.sampled_from(["X-A", "Authorization", "X-A\n", "bad name", "",
                                          "x" * 101, "Ä"]), wild_text)
headers_values = st.one_of(
    st.dictionaries(header_names, st.one_of(wild_text, sized_text, ints, st.none()), max_size=5),
    st.sampled_from(JSON_IN_TEXT),
    st.lists(st.sampled_from(["X-A", "v"]), max_size=3),
)
# "$FEED", "$TASK", "$NODE", "$LEASE", "$ALLOCATION": ids of real rows, put in when sending.
REAL_IDS = ["$FEED", "$TASK", "$NODE", "$LEASE", "$ALLOCATION"]
ids = st.one_of(st.sampled_from(REAL_IDS), texts, ints)


def record(optional: dict, required: dict | None = None):
    """An object with some of ``optional`` (and all of ``required``), or any JSON at all."""
    return st.one_of(st.fixed_dictionaries(required or {}, optional=optional), json_values)


def any_of(*strategies):
    return st.one_of(*strategies, scalars)


def records(optional: dict, required: dict | None = None, max_size: int = 4):
    return st.one_of(st.lists(record(optional, required), max_size=max_size), scalars)


mps_refs = st.one_of(records({"id": ids, "mp_name": texts}), st.sampled_from(JSON_IN_TEXT))
FAKER_IDS = ["MzA5NzAx", base64.b64encode("١٢٣".encode()).decode(),
             base64.b64encode(b"1" * 60).decode(), "!!!", "MzA5NzAx\n"]

FIELDS = {
    "node": {"node_type": any_of(ints), "name": any_of(texts), "description": any_of(texts),
             "api_url": any_of(urls), "labels": any_of(labels), "capacity": any_of(ints),
             "is_active": any_of(st.booleans(), st.sampled_from(["true", "no", "1"]))},
    "test_connection": {"api_url": any_of(urls), "api_key": any_of(texts),
                        "api_secret": any_of(texts)},
    "feed": {"id": any_of(ids, st.sampled_from(["feed-1", "a" * 64, "a" * 65, "ok\n"])),
             "faker_id": any_of(st.sampled_from(FAKER_IDS), texts),
             "mp_name": any_of(texts), "mp_cover": any_of(texts, urls), "mp_intro": any_of(texts),
             "status": any_of(ints), "source_type": any_of(st.sampled_from(["wechat", "rss"])),
             "source_url": any_of(urls), "labels": any_of(labels)},
    "task": {"name": any_of(texts), "message_type": any_of(ints),
             "message_template": any_of(texts), "web_hook_url": any_of(urls),
             "headers": any_of(headers_values), "cookies": any_of(texts), "mps_id": mps_refs,
             "cron_exp": any_of(crons), "status": any_of(ints), "labels": any_of(labels)},
    "dispatch": {"task_id": any_of(ids)},
    "login": {"username": any_of(st.just("admin"), texts), "password": any_of(texts)},
    "heartbeat": {"version": any_of(texts), "hostname": any_of(texts), "capacity": any_of(ints),
                  "running": any_of(ints), "callback_url": any_of(urls),
                  "capabilities": any_of(record({
                      "sources": any_of(st.lists(any_of(st.sampled_from(["rss", "wechat"]),
                                                        texts), max_size=20)),
                      "wechat": any_of(record({"session_valid": any_of(st.booleans()),
                                               "expires_at": any_of(times)}))}))},
    "report": {"task_id": any_of(ids), "allocation_id": any_of(ids), "timestamp": any_of(times),
               "results": records({"mp_name": any_of(texts), "article_count": any_of(ints),
                                   "success_count": any_of(ints), "timestamp": any_of(times)},
                                  {"mp_id": any_of(ids)})},
    "claim": {"max": any_of(ints), "wait": any_of(ints)},
    "articles": {"lease_id": any_of(ids),
                 "articles": records({"title": any_of(texts), "url": any_of(urls),
                                      "pic_url": any_of(texts, urls),
                                      "description": any_of(texts), "content": any_of(texts),
                                      "publish_time": any_of(times, ints)},
                                     {"id": any_of(ids), "mp_id": any_of(ids)})},
    "complete": {"results": records({"mp_name": any_of(texts), "article_count": any_of(ints),
                                     "new_count": any_of(ints), "pushed_count": any_of(ints),
                                     "success": any_of(st.booleans()), "error": any_of(texts)},
                                    {"mp_id": any_of(ids)})},
    "fail": {"error": any_of(texts), "retryable": any_of(st.booleans()),
             "rate_limited_until": any_of(times)},
    "deliveries": {"feed_id": any_of(ids), "article_ids": any_of(st.lists(any_of(ids),
                                                                         max_size=5))},
    "delivery_report": {"status": any_of(st.sampled_from(["sent", "failed"]), texts),
                        "attempts": any_of(ints), "retryable": any_of(st.booleans()),
                        "retry_after": any_of(ints), "vendor_code": any_of(texts),
                        "vendor_message": any_of(texts)},
}


def bodies(fields: str):
    """Objects using the real field names of a payload, plus now and then unknown ones."""
    known = st.fixed_dictionaries({}, optional=FIELDS[fields])
    extra = st.dictionaries(st.one_of(st.text(max_size=8), wild_text), json_values, max_size=2)
    return st.one_of(known, st.builds(lambda a, b: {**b, **a}, known, extra))


raw_bodies = st.one_of(
    st.binary(max_size=300),
    st.sampled_from([b"", b" ", b"null", b"{", b"[]", b'{"a": NaN}', b'{"capacity": Infinity}',
                     b'{"max": -Infinity}', b'{"timestamp": NaN}', b"\xef\xbb\xbf{}",
                     '{"name": "ü"}'.encode("utf-16"), b'{"name": "\xed\xa0\x80"}',
                     b'{"a": 1' + b"0" * 5000 + b"}", b"[" * 50_000, b'{"a":' * 50_000]),
)


def encode(value, ensure_ascii: bool) -> bytes:
    # surrogatepass: lone surrogates reach the server as raw (CESU-8) bytes, not as \\u escapes.
    return json.dumps(value, ensure_ascii=ensure_ascii).encode("utf-8", "surrogatepass")


encoded_bodies = st.builds(encode, json_values, st.booleans())
query_values = st.one_of(texts, ints.map(str), floats.map(str), st.just(""))


def query_strings(names: list[str]):
    """Raw query strings as a client puts them on the wire (ASCII, percent-encoded)."""
    pairs = st.lists(st.tuples(st.one_of(st.sampled_from(names), st.text(max_size=6)),
                               query_values), max_size=5)
    encoded = pairs.map(lambda items: urlencode(
        [(k.encode("utf-8", "surrogatepass"), v.encode("utf-8", "surrogatepass"))
         for k, v in items]))
    wire_chars = "abcdefghijklmnopqrstuvwxyz0123456789=&%+;._-~!$'()*,:@/?[]^`{|}\" ABCDEF"
    raw = st.text(alphabet=st.sampled_from(wire_chars), max_size=40)
    return st.one_of(encoded, raw, st.sampled_from(["%", "%zz", "a=%ff%fe", "a=%00", "=&=&",
                                                    "since=1e3", "limit=%EF%BC%91",
                                                    "page=" + "9" * 21, "since=-0", "limit=+5"]))


path_ids = st.one_of(st.sampled_from(REAL_IDS), st.text(max_size=70), wild_text.filter(
    lambda s: not any(0xD800 <= ord(c) <= 0xDFFF for c in s)), sized_text)


# --- the world the fuzzer talks to -----------------------------------------------------------

class World:
    """Real rows to aim at, and senders that authenticate like real callers."""

    def __init__(self, app, client, admin, caller, target, clock):
        self.app, self.client, self.admin, self.clock = app, client, admin, clock
        self.caller, self.target = caller, target
        self.ids = {"$NODE": target.node_id, "$LEASE": "no-lease", "$ALLOCATION": "no-allocation"}

    def put_ids(self, value):
        if isinstance(value, str):
            return self.ids.get(value, value)
        if isinstance(value, list):
            return [self.put_ids(item) for item in value]
        if isinstance(value, dict):
            return {key: self.put_ids(item) for key, item in value.items()}
        return value

    def admin_request(self, method, path, body: bytes = b"", query: str = "", headers=None,
                      token=None):
        auth = {"Authorization": f"Bearer {token or self.admin.token}"}
        return self.client.open(path, method=method, query_string=query or None, data=body,
                                headers={"Content-Type": "application/json", **auth,
                                         **(headers or {})})

    def node_request(self, method, path, body: bytes = b"", query: str = "", headers=None,
                     plain=False):
        creds = self.caller
        if plain:
            auth = signing.plain_authorization(creds.api_key, creds.api_secret)
        else:
            auth = signing.signed_authorization(creds.api_key, creds.api_secret, method, path,
                                                query, body, timestamp=self.clock.timestamp())
        return self.client.open(path, method=method, query_string=query or None, data=body,
                                headers={"Content-Type": "application/json",
                                         "Authorization": auth, **(headers or {})})

    def new_lease(self) -> str | None:
        """Dispatch the task and claim: a live lease of the caller node, when there is work."""
        response = self.admin.post("/api/v1/cascade/dispatch", json={"task_id": self.ids["$TASK"]})
        assert response.status_code in (201, 404), response.get_data()
        response = self.node_request("POST", "/api/v1/cascade/claim", b'{"max": 1}')
        assert response.status_code in (200, 204), response.get_data()
        if response.status_code == 204:
            return None
        lease = response.get_json()["data"]["leases"][0]
        self.ids["$LEASE"], self.ids["$ALLOCATION"] = lease["lease_id"], lease["allocation_id"]
        return lease["lease_id"]


@pytest.fixture
def world(app, client, admin, clock):
    caller = create_node_with_credentials(admin, name="caller", capacity=1000)
    target = create_node_with_credentials(admin, name="target")
    world = World(app, client, admin, caller, target, clock)
    response = admin.post("/api/v1/feeds", json={"mp_name": "Feed", "faker_id": "MzA5NzAx"})
    assert response.status_code == 201, response.get_json()
    world.ids["$FEED"] = response.get_json()["data"]["id"]
    response = admin.post("/api/v1/message-tasks", json={"name": "Task", "cron_exp": "0 8 * * *"})
    assert response.status_code == 201, response.get_json()
    world.ids["$TASK"] = response.get_json()["data"]["id"]
    world.new_lease()
    return world


def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")


OPENAPI_DOCUMENT = "/api/v1/openapi.json"


def assert_contract(response, case) -> None:
    """The property: no 5xx, and every response is the envelope in strict JSON."""
    status = response.status_code
    raw = response.get_data()
    event(f"HTTP {status}")  # --hypothesis-show-statistics: how deep the examples reach
    assert status < 500, (case, status, raw[:1000])
    assert response.headers.get("X-Request-ID"), case
    if status in (204, 304):
        assert raw == b"", (case, raw[:200])
        return
    if status >= 400:
        assert_error_envelope(response, case=case)
    if response.mimetype != "application/json":
        assert status < 300, (case, status, response.mimetype)
        return
    body = json.loads(raw, parse_constant=_reject_constant)
    if status < 300 and response.request.path == OPENAPI_DOCUMENT:
        # The one JSON answer outside the envelope: OpenAPI tools read the document raw.
        assert str(body.get("openapi", "")).startswith("3.1"), (case, str(body)[:200])
    elif status < 300:
        assert isinstance(body, dict) and body.get("code") == 0, (case, body)
        assert isinstance(body.get("message"), str) and "data" in body, (case, body)


# --- admin routes ----------------------------------------------------------------------------

ADMIN_BODY_ROUTES = {
    "node_create": ("POST", "/api/v1/cascade/nodes", "node"),
    "node_create_wx": ("POST", "/api/v1/wx/cascade/nodes", "node"),
    "node_update": ("PUT", "/api/v1/cascade/nodes/$NODE", "node"),
    "test_connection": ("POST", "/api/v1/cascade/nodes/$NODE/test-connection", "test_connection"),
    "feed_create": ("POST", "/api/v1/feeds", "feed"),
    "feed_update": ("PUT", "/api/v1/feeds/$FEED", "feed"),
    "task_create": ("POST", "/api/v1/message-tasks", "task"),
    "task_update": ("PUT", "/api/v1/message-tasks/$TASK", "task"),
    "dispatch": ("POST", "/api/v1/cascade/dispatch", "dispatch"),
}
# What a create needs to get past its required fields, so fuzzed values reach the database.
CREATE_BASES = {
    "node_create": lambda: {"name": "n-" + uuid.uuid4().hex[:8]},
    "node_create_wx": lambda: {"name": "n-" + uuid.uuid4().hex[:8]},
    "feed_create": lambda: {"mp_name": "m", "faker_id": "f-" + uuid.uuid4().hex[:8]},
    "task_create": lambda: {"name": "t", "cron_exp": "*/5 * * * *"},
    "dispatch": lambda: {"task_id": "$TASK"},
}


def _path(world, template: str) -> str:
    for marker, value in world.ids.items():
        template = template.replace(marker, quote(value, safe=""))
    return template


admin_cases = st.one_of(*[
    st.tuples(st.just(name), bodies(fields), st.booleans(), st.booleans())
    for name, (_, _, fields) in ADMIN_BODY_ROUTES.items()
])


@MANY
@given(case=admin_cases)
@example(case=("node_create", {"api_url": URL_PREFIX + "p" * 482}, True, True))
@example(case=("task_create", {"headers": {"X-A": "\ud800"}}, True, False))
@example(case=("feed_create", {"labels": ["a\n"]}, True, True))
def test_admin_bodies_never_break_the_contract(world, case):
    name, fields, with_base, ensure_ascii = case
    method, template, _ = ADMIN_BODY_ROUTES[name]
    base = CREATE_BASES.get(name, dict)() if with_base else {}
    body = world.put_ids({**base, **fields})
    response = world.admin_request(method, _path(world, template), encode(body, ensure_ascii))
    assert_contract(response, (name, body))


@FUZZ
@given(name=st.sampled_from(sorted(ADMIN_BODY_ROUTES) + ["feed_import", "login"]),
       body=st.one_of(encoded_bodies, raw_bodies),
       content_type=st.sampled_from(["application/json", "text/plain",
                                     "application/x-www-form-urlencoded", "text/xml", ""]))
def test_admin_routes_survive_any_body(world, name, body, content_type):
    if name == "login":
        method, path = "POST", "/api/v1/auth/login"
    elif name == "feed_import":
        method, path = "POST", "/api/v1/feeds/import"
    else:
        method, path = ADMIN_BODY_ROUTES[name][0], _path(world, ADMIN_BODY_ROUTES[name][1])
    response = world.admin_request(method, path, body, headers={"Content-Type": content_type})
    assert_contract(response, (name, body[:200], content_type))


@FUZZ
@given(body=bodies("login"), form=st.booleans())
def test_login_survives_any_credentials(world, body, form):
    if form:
        fields = {str(k).encode("utf-8", "surrogatepass").decode("latin-1"):
                  str(v).encode("utf-8", "surrogatepass").decode("latin-1")
                  for k, v in body.items()}
        response = world.client.post("/api/v1/auth/login", data=fields)
    else:
        response = world.client.post("/api/v1/auth/login", data=encode(body, False),
                                     content_type="application/json")
    assert_contract(response, body)


feed_rows = st.lists(record(FIELDS["feed"]), max_size=6)


@FUZZ
@given(payload=st.one_of(feed_rows, st.fixed_dictionaries({"feeds": feed_rows}), json_values),
       ensure_ascii=st.booleans())
def test_feed_import_survives_any_rows(world, payload, ensure_ascii):
    body = encode(world.put_ids(payload), ensure_ascii)
    response = world.admin_request("POST", "/api/v1/feeds/import", body)
    assert_contract(response, payload)


xml_text = st.text(alphabet=st.characters(exclude_categories=("Cs", "Cc")), max_size=30)


def _xml_legal(text: str) -> bool:
    return all(c in "\t\n\r" or 0x20 <= ord(c) <= 0xD7FF or 0xE000 <= ord(c) <= 0xFFFD
               or ord(c) >= 0x10000 for c in text)


def _opml(outlines) -> bytes:
    body = "".join(
        "<outline " + " ".join(f"{name}={quoteattr(value)}" for name, value in attrs.items())
        + "/>" for attrs in outlines)
    return f"<?xml version='1.0'?><opml version='2.0'><body>{body}</body></opml>".encode()


opml_documents = st.one_of(
    st.lists(st.fixed_dictionaries({}, optional={
        "xmlUrl": st.one_of(urls.filter(_xml_legal), xml_text),
        "title": st.one_of(xml_text, sized_text), "text": xml_text,
        "description": st.one_of(xml_text, sized_text)}), max_size=6).map(_opml),
    st.binary(max_size=200),
    st.sampled_from([b"<opml/>", b"<rss/>", b"<opml><body><outline xmlUrl=''/></body></opml>",
                     b'<!DOCTYPE x [<!ENTITY a "aaaa">]><opml>&a;</opml>', b"<opml>",
                     b"<?xml version='1.0' encoding='latin-1'?><opml/>"]),
)


@FEW
@given(document=opml_documents,
       how=st.sampled_from(["text/x-opml", "application/xml", "multipart"]))
def test_opml_import_survives_any_document(world, document, how):
    if how == "multipart":
        response = world.admin.post("/api/v1/feeds/import", content_type="multipart/form-data",
                                    data={"file": (io.BytesIO(document), "feeds.opml")})
    else:
        response = world.admin_request("POST", "/api/v1/feeds/import", document,
                                       headers={"Content-Type": how})
    assert_contract(response, document[:300])


ADMIN_LIST_ROUTES = {
    "/api/v1/cascade/nodes": ["page", "page_size", "node_type", "status"],
    "/api/v1/feeds": ["page", "page_size", "source_type", "status", "q"],
    "/api/v1/message-tasks": ["page", "page_size", "status"],
    "/api/v1/cascade/sync-logs": ["node_id", "operation", "status", "limit", "offset"],
    "/api/v1/cascade/reports": ["node_id", "task_id", "limit", "offset"],
    "/api/v1/cascade/allocations": ["page", "page_size", "status", "task_id", "node_id",
                                    "run_id"],
    "/api/v1/cascade/feed-status": ["page", "page_size", "freshness"],
    "/api/v1/articles": ["page", "page_size", "feed_id", "since", "q"],
}
admin_list_cases = st.one_of(*[st.tuples(st.just(path), query_strings(names))
                               for path, names in ADMIN_LIST_ROUTES.items()])


@MANY
@given(case=admin_list_cases)
@example(case=("/api/v1/feeds", "q=%00"))
@example(case=("/api/v1/cascade/nodes", "page=1000000&page_size=200"))
def test_admin_list_queries_never_break_the_contract(world, case):
    path, query = case
    assert_contract(world.admin_request("GET", path, query=query), case)


ADMIN_ID_ROUTES = [
    ("GET", "/api/v1/cascade/nodes/{}"), ("PUT", "/api/v1/cascade/nodes/{}"),
    ("DELETE", "/api/v1/cascade/nodes/{}"), ("POST", "/api/v1/cascade/nodes/{}/credentials"),
    ("POST", "/api/v1/cascade/nodes/{}/test-connection"),
    ("GET", "/api/v1/feeds/{}"), ("PUT", "/api/v1/feeds/{}"), ("DELETE", "/api/v1/feeds/{}"),
    ("GET", "/api/v1/message-tasks/{}"), ("PUT", "/api/v1/message-tasks/{}"),
    ("DELETE", "/api/v1/message-tasks/{}"),
]


@FUZZ
@given(route=st.sampled_from(ADMIN_ID_ROUTES), ident=path_ids)
@example(route=("GET", "/api/v1/feeds/{}"), ident="a\x00b")
def test_admin_path_ids_never_break_the_contract(world, route, ident):
    method, template = route
    path = template.format(quote(world.ids.get(ident, ident), safe=""))
    body = b'{"name": "renamed"}' if method == "PUT" and "nodes" in path else b"{}"
    response = world.admin_request(method, path, body if method != "GET" else b"")
    assert_contract(response, (method, path))


# --- node routes -----------------------------------------------------------------------------

NODE_BODY_ROUTES = {
    "heartbeat": ("POST", "/heartbeat", "heartbeat"),
    "report": ("POST", "/report-result", "report"),
    "claim": ("POST", "/claim", "claim"),
    "articles": ("POST", "/articles", "articles"),
    "complete": ("POST", "/leases/$LEASE/complete", "complete"),
    "fail": ("POST", "/leases/$LEASE/fail", "fail"),
    "deliveries": ("POST", "/leases/$LEASE/deliveries", "deliveries"),
    "delivery_report": ("POST", "/deliveries/no-such-delivery/report", "delivery_report"),
}
node_cases = st.one_of(*[
    st.tuples(st.just(name), bodies(fields), st.booleans(),
              st.sampled_from(["/api/v1/cascade", "/api/v1/wx/cascade"]))
    for name, (_, _, fields) in NODE_BODY_ROUTES.items()
])


@MANY
@given(case=node_cases)
@example(case=("report", {"task_id": "t", "results": [],
                          "timestamp": "0001-01-01T00:00:00+05:00"}, True, "/api/v1/cascade"))
@example(case=("heartbeat", {"callback_url": URL_PREFIX + "p" * 482}, True, "/api/v1/cascade"))
@example(case=("articles", {"lease_id": "$LEASE", "articles": [
    {"id": "a" * 255, "mp_id": "$FEED", "url": URL_PREFIX + "p" * 1981,
     "publish_time": 2**33}]}, True, "/api/v1/cascade"))
def test_node_bodies_never_break_the_contract(world, case):
    name, fields, ensure_ascii, prefix = case
    method, route, _ = NODE_BODY_ROUTES[name]
    leased = ("complete", "fail", "articles", "deliveries")
    if name in leased and world.ids["$LEASE"] == "no-lease":
        world.new_lease()
    body = world.put_ids(fields)
    response = world.node_request(method, _path(world, prefix + route), encode(body, ensure_ascii))
    assert_contract(response, (name, body))
    if name in ("complete", "fail") and response.status_code == 200:
        world.ids["$LEASE"] = "no-lease"


@FUZZ
@given(name=st.sampled_from(sorted(NODE_BODY_ROUTES)), body=st.one_of(encoded_bodies, raw_bodies),
       plain=st.booleans(), idempotency_key=st.one_of(st.none(), st.sampled_from(["k1", "k2"])))
def test_node_routes_survive_any_body(world, name, body, plain, idempotency_key):
    method, route, _ = NODE_BODY_ROUTES[name]
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    response = world.node_request(method, _path(world, "/api/v1/cascade" + route), body,
                                  headers=headers, plain=plain)
    assert_contract(response, (name, body[:200]))


NODE_QUERY_ROUTES = {
    "/feeds/changes": ["since", "limit"],
    "/message-tasks/changes": ["since", "limit"],
    "/feeds": ["since"],
    "/message-tasks": ["since"],
    "/whoami": ["x"],
}
node_query_cases = st.one_of(*[st.tuples(st.just(route), query_strings(names))
                               for route, names in NODE_QUERY_ROUTES.items()])


@MANY
@given(case=node_query_cases, prefix=st.sampled_from(["/api/v1/cascade", "/api/v1/wx/cascade"]))
@example(case=("/feeds/changes", "since=4611686018427387904"), prefix="/api/v1/cascade")
@example(case=("/feeds/changes", "since=4611686018427387903&limit=1000"), prefix="/api/v1/cascade")
def test_node_queries_never_break_the_contract(world, case, prefix):
    route, query = case
    response = world.node_request("GET", prefix + route, query=query)
    assert_contract(response, case)


latin1_text = st.text(alphabet=st.characters(max_codepoint=255, exclude_characters="\r\n"),
                      max_size=80)
authorizations = st.one_of(
    latin1_text,
    st.builds(lambda key, secret: f"AK-SK {key}:{secret}", latin1_text, latin1_text),
    st.builds(lambda fields: "AK-SK-HMAC-SHA256 " + ", ".join(f"{k}={v}" for k, v in fields),
              st.lists(st.tuples(st.sampled_from(["Credential", "Timestamp", "Nonce",
                                                  "Signature", "Other"]),
                                 st.one_of(latin1_text, st.integers().map(str))), max_size=5)),
    st.sampled_from(["Bearer", "Bearer x", "AK-SK", "AK-SK :", "AK-SK a:b:c", "ak-sk a:b",
                     "AK-SK-HMAC-SHA256", "AK-SK-HMAC-SHA256 Credential=a,,"]),
)


@FUZZ
@given(authorization=st.one_of(st.none(), authorizations),
       request_id=st.one_of(st.none(), latin1_text),
       idempotency_key=st.one_of(st.none(), latin1_text),
       if_none_match=st.one_of(st.none(), latin1_text, st.just("*")),
       route=st.sampled_from([("POST", "/heartbeat"), ("GET", "/feeds"),
                              ("GET", "/message-tasks"), ("POST", "/claim")]))
@example(authorization="AK-SK CN\x00x:secret", request_id=None, idempotency_key=None,
         if_none_match=None, route=("GET", "/feeds"))
def test_node_headers_never_break_the_contract(world, authorization, request_id,
                                               idempotency_key, if_none_match, route):
    method, path = route[0], "/api/v1/cascade" + route[1]
    headers = {name: value for name, value in [
        ("X-Request-ID", request_id), ("Idempotency-Key", idempotency_key),
        ("If-None-Match", if_none_match)] if value is not None}
    if authorization is None:
        response = world.node_request(method, path, headers=headers)
    else:
        response = world.client.open(path, method=method,
                                     headers={"Authorization": authorization, **headers})
    assert_contract(response, (authorization, headers))


# --- every route the app serves --------------------------------------------------------------

def _route_kind(app, rule) -> str:
    """admin, node or public, by the authentication decorator around the view."""
    view = app.view_functions[rule.endpoint]
    for kind, decorator in (("admin", admin_required), ("node", node_required)):
        if getattr(view, "__code__", None) is decorator(lambda: None).__code__:
            return kind
    return "public"


@MANY
@given(data=st.data())
def test_every_route_survives_arbitrary_requests(world, data):
    """Whatever rule the app has now (new ones included), with any ids, query and body."""
    app = world.app
    rules = sorted(
        ((rule, method) for rule in app.url_map.iter_rules()
         for method in sorted(rule.methods - {"HEAD", "OPTIONS"})),
        key=lambda item: (item[0].rule, item[1]),
    )
    rule, method = data.draw(st.sampled_from(rules), label="rule")
    values = {}
    for name in sorted(rule.arguments):
        converter = rule._converters[name]
        if isinstance(converter, AnyConverter):
            values[name] = data.draw(st.sampled_from(sorted(converter.items)), label=name)
        else:
            ident = data.draw(path_ids, label=name)
            values[name] = world.ids.get(ident, ident)
    _, path = rule.build(values, append_unknown=False)
    query = data.draw(st.one_of(st.just(""), query_strings(["page", "limit", "since", "q"])),
                      label="query")
    body = b""
    if method in ("POST", "PUT", "PATCH", "DELETE"):
        body = data.draw(st.one_of(encoded_bodies.map(world.put_ids), raw_bodies,
                                   st.sampled_from([b"{}", b""])), label="body")
    kind = _route_kind(app, rule)
    if kind == "admin":
        token = None
        if rule.endpoint.endswith("logout"):  # keep the fuzzing admin's own token alive
            token = world.client.post("/api/v1/auth/login", json={
                "username": ADMIN_USERNAME, "password": ADMIN_PASSWORD,
            }).get_json()["data"]["access_token"]
        response = world.admin_request(method, path, body, query, token=token)
    elif kind == "node":
        response = world.node_request(method, path, body, query)
    else:
        response = world.client.open(path, method=method, query_string=query or None, data=body)
    assert_contract(response, (method, path, query, body[:200]))


# --- test-connection against a real (local) remote -------------------------------------------

class _StubParent(http.server.BaseHTTPRequestHandler):
    """Answers /healthz, refuses anything else with an error envelope of its own."""

    def do_GET(self):  # noqa: N802 - the stdlib's name
        if self.path.endswith("/healthz"):
            body, status = b'{"code": 0, "message": "ok", "data": {}}', 200
        else:
            body, status = b'{"code": 401, "error": "invalid_credentials"}', 401
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def stub_parent(no_outbound_http):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _StubParent)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    no_outbound_http.add_passthru(url)
    yield url
    server.shutdown()
    server.server_close()
    thread.join()


@FEW
@given(api_key=any_of(texts, latin1_text), api_secret=any_of(texts, latin1_text),
       path=st.sampled_from(["", "/", "/sub", "/%00", "/中"]))
@example(api_key="密钥", api_secret="CS" + "s" * 32, path="")
@example(api_key="CN key", api_secret="CS\x85", path="")
def test_connectivity_survives_any_credentials(world, stub_parent, api_key, api_secret, path):
    body = {"api_url": stub_parent + path, "api_key": api_key, "api_secret": api_secret}
    response = world.admin_request(
        "POST", f"/api/v1/cascade/nodes/{world.target.node_id}/test-connection",
        encode(body, False))
    assert_contract(response, body)
    if response.status_code == 200:
        assert response.get_json()["data"]["reachable"] is True
