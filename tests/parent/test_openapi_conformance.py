"""Schemathesis against the in-process app: no 5xx, and every answer is what the document says.

Runs on SQLite and, when WERSS_TEST_DATABASE_URL is set, on PostgreSQL (the db_backend
parameter of tests/conftest.py). Admin routes get a real Bearer token; node routes a real
node's credentials: signed (AK-SK-HMAC-SHA256) under /api/v1/cascade, plain AK-SK under
/api/v1/wx/cascade, as WeRSS nodes send them.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode, urlsplit

import pytest
import responses
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    response_schema_conformance, status_code_conformance,
)

from shared import errors as codes, signing
from shared.paths import API_PREFIX, CASCADE_PREFIX, WX_CASCADE_PREFIX

from parent import create_app
from parent.extensions import db
from parent.openapi import build_openapi
from tests.conftest import (
    AdminClient, base_config, create_node_with_credentials, empty_database_url, make_admin_user,
)
from tests.helpers import (
    ADMIN_PASSWORD, ADMIN_USERNAME, SECRET_KEY, FakeClock, NodeCaller,
)

CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
# 5xx answers that are documented states, not parent faults: no node here has a WeChat
# session, so WeChat search and login relays answer wechat_unavailable; send_budget_busy is
# back-pressure the child retries.
NOT_FAULTS = {codes.WECHAT_UNAVAILABLE.code, codes.WECHAT_TIMEOUT.code, codes.WECHAT_FAILED.code,
              codes.SEND_BUDGET_BUSY.code}
# Small on purpose: ~110 operations x 2 backends stay within a minute or two.
MAX_EXAMPLES = 8


def _description() -> dict:
    """The document /api/v1/openapi.json serves (test_openapi.py checks it is served).

    Built here, not loaded from a fixture's app: schemathesis's lazy fixture loader does not
    run under pytest 9. The routes, hence the document, do not depend on the database.
    """
    return build_openapi(create_app({"db": "sqlite://", "secret_key": SECRET_KEY}, environ={}))


schema = schemathesis.openapi.from_dict(_description())


class Caller:
    """Send a case with the credentials its operation asks for, signing what is sent."""

    def __init__(self, client, admin, node, clock):
        self.client, self.admin, self.node, self.clock = client, admin, node, clock
        self.known: dict[str, str] = {}  # path parameter -> an id that exists

    def seed(self, other_node_id: str) -> None:
        """Make one of each thing routes name by id, so some examples get past the 404."""
        feed = self.admin.post(API_PREFIX + "/feeds",
                               json={"mp_name": "Seed feed", "source_type": "rss",
                                     "source_url": "https://example.com/feed.xml"})
        task = self.admin.post(API_PREFIX + "/message-tasks",
                               json={"name": "Seed task", "cron_exp": "0 8 * * *"})
        assert feed.status_code == task.status_code == 201, (feed.get_json(), task.get_json())
        task_id = task.get_json()["data"]["id"]
        dispatched = self.admin.post(CASCADE_PREFIX + "/dispatch", json={"task_id": task_id})
        assert dispatched.status_code == 201, dispatched.get_json()
        claim = NodeCaller(self.client, self.node, clock=self.clock).post(
            "/claim", json={"max": 1})
        assert claim.status_code == 200, claim.get_json()
        self.known = {"feed_id": feed.get_json()["data"]["id"], "task_id": task_id,
                      "node_id": other_node_id,
                      "lease_id": claim.get_json()["data"]["leases"][0]["lease_id"]}

    def _with_known_ids(self, case) -> None:
        # About half the examples (by the generated value, so shrinking keeps the choice)
        # name a real record; the rest a missing one.
        for name, value in (case.path_parameters or {}).items():
            if name in self.known and len(str(value)) % 2 == 0:
                case.path_parameters[name] = self.known[name]

    def _login(self) -> None:
        response = self.client.post(API_PREFIX + "/auth/login",
                                    json={"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD})
        assert response.status_code == 200, response.get_json()
        self.admin.headers = {"Authorization": "Bearer "
                              + response.get_json()["data"]["access_token"]}

    def send(self, case):
        self._with_known_ids(case)
        request = case.as_transport_kwargs(base_url="http://localhost")
        path = urlsplit(request["url"]).path
        headers = dict(request["headers"])
        body = request.get("data")
        if "json" in request:
            body = json.dumps(request["json"]).encode()
        body = body.encode() if isinstance(body, str) else (body or b"")
        query = urlencode(request.get("params") or {}, doseq=True)
        security = case.operation.definition.raw.get("security")
        if security and "adminBearer" in security[0]:
            headers.update(self.admin.headers)
        elif security:
            if path.startswith(WX_CASCADE_PREFIX):
                headers["Authorization"] = signing.plain_authorization(
                    self.node.api_key, self.node.api_secret)
            else:
                headers["Authorization"] = signing.signed_authorization(
                    self.node.api_key, self.node.api_secret, request["method"],
                    path, query, body, timestamp=self.clock.timestamp())
        response = self.client.open(path + (f"?{query}" if query else ""),
                                    method=request["method"], headers=headers, data=body)
        if case.operation.path == API_PREFIX + "/auth/logout" and response.status_code == 200:
            self._login()  # the run goes on with a live token
        return response


@pytest.fixture(scope="module")
def caller(request, db_backend, tmp_path_factory):
    """One app, admin and node for every operation of a backend: state builds up as it runs."""
    url = empty_database_url(request, db_backend, tmp_path_factory.mktemp("conformance"))
    clock = FakeClock()
    # claim_max_wait 0: a claim must not long-poll for up to 30 s per example.
    app = create_app(base_config(url, claim_max_wait=0), clock=clock, environ={})
    client = app.test_client()
    make_admin_user(app)
    caller = Caller(client, AdminClient(client, ""), None, clock)
    caller._login()
    caller.node = create_node_with_credentials(caller.admin)
    # Admin routes change and rotate this one, never the node the calls come from.
    caller.seed(create_node_with_credentials(caller.admin, name="other").node_id)
    # Nothing here may reach the network: an unregistered URL fails as unreachable.
    with responses.RequestsMock(assert_all_requests_are_fired=False):
        yield caller
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_every_answer_conforms_to_the_description(case, caller):
    response = caller.send(case)
    checks = CHECKS
    if response.status_code >= 500 and (response.get_json(silent=True) or {}).get(
            "error") in NOT_FAULTS:
        checks = [check for check in CHECKS if check is not not_a_server_error]
    case.validate_response(response, checks=checks)
