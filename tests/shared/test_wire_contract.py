"""The wire contract of shared/: what the parent sends nodes is exactly what the schemas declare.

Payloads here are the parent's real answers (a fully populated feed and task, pulled, changed,
leased and packaged for WeRSS), and the child's client loads them from a real HTTP server.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
import requests
import responses
from marshmallow import fields
from sqlalchemy import inspect

from child import errors
from child.client import ParentClient
from child.collectors.base import CollectedArticle
from child.config import load_config
from child.notifiers import notifier_for
from child.notifiers.base import NotifyError
from child.notifiers.redact import WITHHELD
from child.notifiers.webhook import WebhookNotifier
from child.templates import render
from parent.extensions import db
from parent.models import Feed, MessageTask
from shared import paths
from shared.compat_schemas import WeRSSTaskPackageSchema
from shared.lease_schemas import TASK_SECRET_FIELDS, LeaseSchema, LeaseTaskSchema
from shared.schemas import (
    FeedChangesSchema, FeedSchema, MessageTaskChangesSchema, MessageTaskSchema, secret_fields,
)
from tests.support.local_server import LocalServer, Reply
from tests.conftest import create_node_with_credentials
from tests.helpers import NodeCaller

# Columns the parent keeps to itself, each with why: a new column must be put here or in a
# wire schema, so nothing reaches nodes (or is left out) without a decision.
FEED_PARENT_ONLY = {
    "sync_time": "collection bookkeeping, not changed by an admin (would break the ETag)",
    "update_time": "collection bookkeeping",
    "last_run_at": "collection bookkeeping",
    "last_run_node_id": "collection bookkeeping",
    "last_run_status": "collection bookkeeping",
    "last_run_error": "collection bookkeeping",
    "invalid_reason": "the parent stops scheduling the feed; nodes need not know why",
}
TASK_LEASE_ONLY = {"sign_secret": "write-only: a node gets it only inside its lease"}

HOOK = "https://oapi.dingtalk.com/robot/send?access_token=tok-url-0123456789abcdef"
SECRETS = {
    "web_hook_url": "tok-url-0123456789abcdef",
    "headers": "Bearer tok-header-5f4dcc3b5aa765d6",
    "cookies": "tok-cookie-8d969eef6ecad3c2",
    "sign_secret": "SECtok-sign-2c26b46b68ffc68f",
}
PARENT_ONLY_VALUES = ("4111111111", "4222222222", "node-only-on-parent", "run-status-x",
                      "run-error-on-parent", "invalid-reason-on-parent")


def columns(model) -> set[str]:
    return {attr.key for attr in inspect(model).column_attrs}


@pytest.mark.parametrize("model, wire, kept_back", [
    (Feed, FeedSchema, FEED_PARENT_ONLY),
    (MessageTask, MessageTaskSchema, TASK_LEASE_ONLY),
])
def test_every_model_column_is_in_the_contract_or_declared_parent_only(model, wire, kept_back):
    undecided = columns(model) - set(wire().fields) - set(kept_back)
    assert not undecided, f"{model.__name__} columns in no wire schema: {sorted(undecided)}"
    assert set(kept_back) <= columns(model)  # no stale entries
    assert not set(kept_back) & set(wire().fields)


def test_the_signing_secret_is_declared_only_for_leases():
    assert "sign_secret" in LeaseTaskSchema().fields
    assert "sign_secret" not in MessageTaskSchema().fields
    assert "has_sign_secret" in MessageTaskSchema().fields


def test_the_known_secrets_are_marked_in_the_schemas():
    assert set(SECRETS) <= set(TASK_SECRET_FIELDS)
    assert set(secret_fields(MessageTaskSchema)) == {"web_hook_url", "headers", "cookies"}
    assert set(secret_fields(WeRSSTaskPackageSchema)) == {"web_hook_url", "headers", "cookies"}


# -- the parent's real payloads ---------------------------------------------------------------
@pytest.fixture
def wire(app, client, admin, clock):
    """Every node-bound payload of one fully populated feed and task, as the parent sends them."""
    response = admin.post("/api/v1/feeds", json={
        "mp_name": "人民日报", "source_type": "rss", "source_url": "https://example.org/rss.xml",
        "labels": ["news"]})
    assert response.status_code == 201, response.get_json()
    feed_id = response.get_json()["data"]["id"]
    response = admin.post("/api/v1/message-tasks", json={
        "name": "早报", "message_type": 0, "message_template": "{{ feed.mp_name }}",
        "web_hook_url": HOOK, "headers": {"Authorization": SECRETS["headers"]},
        "cookies": f"sid={SECRETS['cookies']}", "mps_id": [{"id": feed_id, "mp_name": "人民日报"}],
        "cron_exp": "0 8 * * *", "labels": ["news"], "push_newest": 2, "channel": "dingtalk",
        "sign_secret": SECRETS["sign_secret"]})
    assert response.status_code == 201, response.get_json()
    task_id = response.get_json()["data"]["id"]
    with app.app_context():
        # What no admin route sets: the WeChat identity and the parent's bookkeeping.
        feed = db.session.get(Feed, feed_id)
        feed.faker_id, feed.mp_cover, feed.mp_intro = "MzA1MjM1ODk2MA==", "https://c/x.jpg", "简介"
        feed.sync_time, feed.update_time = 4111111111, 4222222222
        feed.last_run_at = datetime(2026, 1, 2, tzinfo=timezone.utc)
        feed.last_run_node_id, feed.last_run_status = "node-only-on-parent", "run-status-x"
        feed.last_run_error, feed.invalid_reason = "run-error-on-parent", "invalid-reason-on-parent"
        db.session.commit()
    creds = create_node_with_credentials(admin, "contract-node", labels=["news"])
    caller = NodeCaller(client, creds, clock=clock)
    return _collect(app, admin, caller, task_id, feed_id)


def _set_invalid_reason(app, feed_id, reason):
    with app.app_context():
        db.session.get(Feed, feed_id).invalid_reason = reason
        db.session.commit()


def _collect(app, admin, caller, task_id, feed_id):
    bodies = {}
    for name, route, params in (
            ("feeds", paths.FEEDS, None), ("feed_page", paths.FEEDS, {"limit": 10}),
            ("tasks", paths.MESSAGE_TASKS, None), ("task_page", paths.MESSAGE_TASKS, {"limit": 10}),
            ("feed_changes", paths.FEED_CHANGES, {"since": 0}),
            ("task_changes", paths.MESSAGE_TASK_CHANGES, {"since": 0})):
        response = caller.get(route, params=params)
        assert response.status_code == 200, response.get_json()
        bodies[name] = response
    _set_invalid_reason(app, feed_id, None)  # an invalid feed is not scheduled
    response = admin.post("/api/v1/cascade/dispatch", json={"task_id": task_id})
    assert response.status_code == 201, response.get_json()
    bodies["claim"] = caller.post(paths.CLAIM, json={"max": 1, "wait": 0})
    assert bodies["claim"].status_code == 200, bodies["claim"].get_json()
    _set_invalid_reason(app, feed_id, "invalid-reason-on-parent")
    bodies["package"] = caller.get("/pending-tasks")
    assert bodies["package"].get_json()["data"]["claimed"] is True
    return bodies


def fields_of(schema, payload: dict, where: str = "") -> list[str]:
    """Where payload and schema disagree: keys not declared, declared fields not sent, nulls."""
    problems = [f"{where}{key}: not in {type(schema).__name__}"
                for key in payload if key not in schema.fields]
    for name, field in schema.fields.items():
        if name not in payload:
            problems.append(f"{where}{name}: declared but not sent")
        elif payload[name] is None:
            problems.append(f"{where}{name}: sent as null by a fully populated row")
        elif isinstance(field, fields.Nested):
            problems += fields_of(field.schema, payload[name], f"{where}{name}.")
        elif isinstance(field, fields.List) and isinstance(field.inner, fields.Nested):
            for index, item in enumerate(payload[name]):
                problems += fields_of(field.inner.schema, item, f"{where}{name}[{index}].")
    return problems


def data(response):
    return response.get_json()["data"]


def test_pulled_feeds_and_tasks_carry_exactly_the_contract_fields(wire):
    for name, schema in (("feeds", FeedSchema()), ("feed_page", FeedSchema()),
                         ("tasks", MessageTaskSchema()), ("task_page", MessageTaskSchema())):
        (item,) = data(wire[name])
        assert fields_of(schema, item) == [], name


def test_changes_pages_carry_exactly_the_contract_fields(wire):
    feeds, tasks = data(wire["feed_changes"]), data(wire["task_changes"])
    assert fields_of(FeedChangesSchema(), feeds) == []
    assert fields_of(MessageTaskChangesSchema(), tasks) == []


def test_a_lease_and_the_werss_package_carry_exactly_the_contract_fields(wire):
    (lease,) = data(wire["claim"])["leases"]
    assert fields_of(LeaseSchema(), lease) == []
    assert fields_of(WeRSSTaskPackageSchema(), data(wire["package"])) == []


def test_parent_only_columns_never_reach_a_node(wire):
    for name, response in wire.items():
        text = response.get_data(as_text=True)
        assert not [value for value in PARENT_ONLY_VALUES if value in text], name


def test_the_signing_secret_reaches_a_node_only_inside_its_lease(wire):
    for name, response in wire.items():
        sent = SECRETS["sign_secret"] in response.get_data(as_text=True)
        assert sent == (name == "claim"), name
    assert data(wire["tasks"])[0]["has_sign_secret"] is True


# -- the child loads what the parent dumps -----------------------------------------------------
KEY, API_SECRET = "CN" + "a" * 32, "CS" + "b" * 32


def child_client(server) -> ParentClient:
    config = load_config(environ={"CASCADE_PARENT_URL": server.url(""), "CASCADE_API_KEY": KEY,
                                  "CASCADE_API_SECRET": API_SECRET})
    return ParentClient(config, sleep=lambda seconds: None)


def serve(server, route: str, response) -> None:
    headers = {name: value for name, value in response.headers.items()
               if name in ("ETag", "X-Cascade-Cursor", "X-Cascade-Next-After")}
    server.serve(paths.CASCADE_PREFIX + route, Reply(response.status_code,
                                                     response.get_data(), headers))


def test_the_child_loads_the_parents_payloads_unchanged(wire):
    with LocalServer() as server:
        for name, route in (("feeds", paths.FEEDS), ("tasks", paths.MESSAGE_TASKS),
                            ("feed_changes", paths.FEED_CHANGES),
                            ("task_changes", paths.MESSAGE_TASK_CHANGES), ("claim", paths.CLAIM)):
            serve(server, route, wire[name])
        client = child_client(server)
        assert client.pull(paths.FEEDS)[0] == data(wire["feeds"])
        assert client.pull(paths.MESSAGE_TASKS)[0] == data(wire["tasks"])
        assert client.pull_page(paths.FEEDS, 10).items == data(wire["feeds"])
        for name, route in (("feed_changes", paths.FEED_CHANGES),
                            ("task_changes", paths.MESSAGE_TASK_CHANGES)):
            loaded = client.changes(route, "0")
            assert {k: v for k, v in loaded.items() if k != "etag"} == data(wire[name])
        assert client.claim(1, 0, "key-1") == data(wire["claim"])["leases"]


def test_a_payload_that_breaks_the_contract_is_refused_by_the_child(wire):
    (lease,) = data(wire["claim"])["leases"]
    broken = {"code": 0, "message": "success",
              "data": {"leases": [{**lease, "expires_at": "soon", "lease_id": None}]}}
    with LocalServer() as server:
        server.serve(paths.CASCADE_PREFIX + paths.CLAIM, Reply(200, json.dumps(broken)))
        with pytest.raises(errors.ContractError) as caught:
            child_client(server).claim(1, 0, "key-1")
    assert "expires_at" in str(caught.value) and "lease_id" in str(caught.value)


# -- every secret-marked field is hidden ---------------------------------------------------------
NOW = datetime(2026, 5, 1, 4, 0, tzinfo=timezone.utc)
FEED = {"id": "feed-1", "mp_name": "技术周刊", "source_type": "rss"}
ARTICLES = [CollectedArticle(id="a1", mp_id="feed-1", title="第一篇", pic_url="",
                             url="https://example.org/1", description="", content=None,
                             publish_time=1714521600)]


def leased_task(wire) -> dict:
    return data(wire["claim"])["leases"][0]["task"]


@pytest.mark.parametrize("name", TASK_SECRET_FIELDS)
def test_a_secret_field_never_reaches_a_template(wire, name):
    task = leased_task(wire)
    assert task[name]  # the lease does carry it
    text = render("{{ task }} [{{ task." + name + " }}] {{ task | tojson }}", feed=FEED,
                  articles=[], task=task, now=NOW)
    assert SECRETS[name] not in text and "[]" in text


def task_echoing(name: str, url: str) -> dict:
    return {"id": "t1", "name": "推送", "message_type": 1, "message_template": "",
            "web_hook_url": url, "headers": {"Authorization": SECRETS["headers"]},
            "cookies": f"sid={SECRETS['cookies']}", "sign_secret": SECRETS["sign_secret"]}


@pytest.mark.parametrize("name", TASK_SECRET_FIELDS)
@responses.activate
def test_a_webhook_error_that_echoes_a_secret_field_is_withheld(name):
    url = "https://hooks.example.org/h?token=" + SECRETS["web_hook_url"]
    responses.post("https://hooks.example.org/h", status=500,
                   body=f"bad request: {SECRETS[name]} refused")
    notifier = WebhookNotifier(requests.Session(), clock=lambda: NOW)
    with pytest.raises(NotifyError) as caught:
        notifier.push(task_echoing(name, url), FEED, ARTICLES)
    assert SECRETS[name] not in str(caught.value) and WITHHELD in str(caught.value)


@pytest.mark.parametrize("name", TASK_SECRET_FIELDS)
@responses.activate
def test_a_channel_error_that_echoes_a_secret_field_is_withheld(name):
    responses.post("https://oapi.dingtalk.com/robot/send",
                   json={"errcode": 310000, "errmsg": f"keywords not in content {SECRETS[name]}"})
    task = {**task_echoing(name, HOOK), "message_type": 0, "channel": "dingtalk"}
    notifier = notifier_for(task, requests.Session(), 5)
    notifier.clock, notifier.sleep = (lambda: NOW), (lambda seconds: None)
    with pytest.raises(NotifyError) as caught:
        notifier.push(task, FEED, ARTICLES)
    assert SECRETS[name] not in str(caught.value) and WITHHELD in str(caught.value)


def test_a_fractional_send_limit_period_survives_the_wire():
    task = {"id": "t1", "send_limit": {"count": 5, "per": 0.5}}
    assert LeaseTaskSchema().load(LeaseTaskSchema().dump(task))["send_limit"] == \
        {"count": 5, "per": 0.5}
