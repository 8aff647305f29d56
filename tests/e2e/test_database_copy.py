"""A copy of the database alone authenticates nothing: the node secret is not in it."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import MetaData, create_engine, select

from tests.helpers import SECRET_KEY, assert_error
from tests.support.http_callers import AdminHttp, NodeHttp

pytestmark = pytest.mark.e2e

OTHER_SECRET_KEY = "another-deployment-secret-key-9876543210"


def _database_text(db_url: str) -> dict[str, list[str]]:
    """Every cell of every table, as text (bytes both decoded and as hex)."""
    engine = create_engine(db_url)
    metadata = MetaData()
    try:
        metadata.reflect(engine)
        cells: dict[str, list[str]] = {}
        with engine.connect() as connection:
            for table in metadata.sorted_tables:
                values = []
                for row in connection.execute(select(table)):
                    for value in row:
                        if isinstance(value, (bytes, bytearray, memoryview)):
                            raw = bytes(value)
                            values += [raw.decode("latin-1"), raw.hex()]
                        elif value is not None:
                            values.append(str(value))
                cells[table.name] = values
        return cells
    finally:
        engine.dispose()


def _digests(secret: str) -> set[str]:
    encoded = secret.encode("utf-8")
    return {hashlib.new(name, encoded).hexdigest() for name in ("sha256", "sha512", "sha1", "md5")}


def _heartbeats(parent, creds) -> dict[str, object]:
    return {mode: NodeHttp(parent.base_url, creds, mode=mode).post("/heartbeat", json={})
            for mode in ("plain", "signed")}


def test_database_copy_alone_authenticates_nothing(live_parent, db_url):
    original = live_parent()
    admin = AdminHttp.login(original.base_url)
    creds = admin.create_node_with_credentials()
    admin.close()
    for mode, response in _heartbeats(original, creds).items():
        assert response.status_code == 200, (mode, response.text, original.log_tail())

    cells = _database_text(db_url)
    everything = [value for values in cells.values() for value in values]
    # The scan sees the node's row: its key is stored in the clear.
    assert any(creds.api_key in value for value in cells["nodes"])
    leaks = {table: [v for v in values if creds.api_secret in v]
             for table, values in cells.items() if any(creds.api_secret in v for v in values)}
    assert leaks == {}
    digests = _digests(creds.api_secret)
    assert not [value for value in everything if any(d in value.lower() for d in digests)]

    copy = live_parent(secret_key=OTHER_SECRET_KEY)
    for response in _heartbeats(copy, creds).values():
        assert_error(response, 401, "invalid_credentials")

    for mode, response in _heartbeats(original, creds).items():
        assert response.status_code == 200, (mode, response.text, original.log_tail())

    for parent in (original, copy):
        log = parent.log_text()
        assert "/api/v1/cascade/heartbeat" in log  # the access log was captured
        assert creds.api_secret not in log


def test_admins_token_from_one_deployment_is_refused_by_a_copy(live_parent):
    original = live_parent()
    admin = AdminHttp.login(original.base_url)
    copy = live_parent(secret_key=OTHER_SECRET_KEY)

    assert admin.get("/api/v1/cascade/nodes").status_code == 200
    admin.base_url = copy.base_url
    assert_error(admin.get("/api/v1/cascade/nodes"), 401, "invalid_token")
    admin.close()


def test_credentials_survive_a_restart_with_the_same_secret_key(live_parent):
    first = live_parent()
    admin = AdminHttp.login(first.base_url)
    creds = admin.create_node_with_credentials()
    admin.close()
    first.stop()

    restarted = live_parent(secret_key=SECRET_KEY)
    for mode, response in _heartbeats(restarted, creds).items():
        assert response.status_code == 200, (mode, response.text, restarted.log_tail())
