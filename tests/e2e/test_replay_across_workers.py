"""A signed request is accepted once, whichever gunicorn worker a replay reaches."""

from __future__ import annotations

import email.utils
import re
import time
import uuid

import pytest

from shared.timeutil import parse_iso
from tests.helpers import assert_error
from tests.support.http_callers import AdminHttp, NodeHttp

pytestmark = pytest.mark.e2e

WORKERS = 4
REPLAYS = 30
LOG_WAIT_SECONDS = 10.0
# parent/gunicorn_app.py: '%(h)s pid=%(p)s "%(r)s" %(s)s %(B)s %(M)sms rid=%({x-request-id}o)s'
ACCESS_LINE_RE = re.compile(
    r'pid=<?(?P<pid>\d+)>?\s"(?P<method>[A-Z]+) (?P<path>\S+) [^"]*" (?P<status>\d{3}) '
    r'.*rid=(?P<rid>\S+)')


def _access_log_entries(parent, request_ids: set[str]) -> dict[str, tuple[int, str, int]]:
    """Map each request id to (pid, path, status) from the access log, waiting for late lines."""
    deadline = time.monotonic() + LOG_WAIT_SECONDS
    while True:
        found = {}
        for line in parent.log_text().splitlines():
            match = ACCESS_LINE_RE.search(line)
            if match and match["rid"] in request_ids:
                found[match["rid"]] = (int(match["pid"]), match["path"], int(match["status"]))
        if len(found) == len(request_ids) or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


@pytest.fixture
def four_worker_parent(live_parent):
    return live_parent(workers=WORKERS)


@pytest.fixture
def node(four_worker_parent):
    admin = AdminHttp.login(four_worker_parent.base_url)
    creds = admin.create_node_with_credentials()
    admin.close()
    return NodeHttp(four_worker_parent.base_url, creds, mode="signed")


def test_replays_are_refused_by_every_worker(four_worker_parent, node):
    prepared = node.prepare("POST", "/heartbeat", json={"version": "e2e-replay"},
                            headers={"Connection": "close"})
    first = node.send(prepared)
    assert first.status_code == 200, first.text

    request_ids = set()
    for attempt in range(REPLAYS):
        replay = prepared.copy()
        request_id = f"replay-{attempt}-{uuid.uuid4().hex[:8]}"
        replay.headers["X-Request-ID"] = request_id
        request_ids.add(request_id)
        response = node.send(replay)  # a new Session, so a new TCP connection
        body = assert_error(response, 401, "replayed_request")
        assert body["request_id"] == request_id

    entries = _access_log_entries(four_worker_parent, request_ids)
    assert set(entries) == request_ids, four_worker_parent.log_text()[-4000:]
    assert {(path, status) for _, path, status in entries.values()} == {
        ("/api/v1/cascade/heartbeat", 401)}
    pids = {pid for pid, _, _ in entries.values()}
    assert len(pids) >= 2, f"all {REPLAYS} replays reached worker(s) {pids}"


def test_stale_timestamp_is_refused_with_server_time(four_worker_parent, node):
    stale = int(time.time()) - 301
    response = node.send(node.prepare("POST", "/heartbeat", json={}, timestamp=stale))

    body = assert_error(response, 401, "request_expired")
    details = body["details"]
    assert details["server_time"].endswith("Z")
    assert details["server_timestamp"] - stale >= 301
    assert abs(parse_iso(details["server_time"]).timestamp() - details["server_timestamp"]) < 1
    dates = response.raw.headers.getlist("Date")
    assert len(dates) == 1, dates
    assert email.utils.parsedate_to_datetime(dates[0]).tzinfo is not None

    fresh = node.send(node.prepare("POST", "/heartbeat", json={}))
    assert fresh.status_code == 200, fresh.text
