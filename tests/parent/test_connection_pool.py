"""PostgreSQL connections in the pool: no ping per request, yet a dead idle one is never used.

The pool does not ping on every checkout (a round trip per request); a connection that sat
idle longer than parent.PING_AFTER_IDLE_SECONDS is pinged first and replaced if the server
dropped it (a restart, an idle timeout), so the node never sees that.
"""

import pytest
from sqlalchemy import create_engine, text

import parent


def _drop_the_apps_connections(db_url) -> int:
    """Terminate every other session on the test database, as a server restart would."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as connection:
            return len(connection.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()")).all())
    finally:
        engine.dispose()


@pytest.mark.parametrize("idle_after, status", [(0.0, 200), (3600.0, 503)])
def test_a_connection_dropped_while_idle_is_replaced_only_when_it_sat_idle(
        db_backend, db_url, plain_caller, monkeypatch, idle_after, status):
    if db_backend != "postgresql":
        pytest.skip("SQLite has no server that could drop a pooled connection")
    monkeypatch.setattr(parent, "PING_AFTER_IDLE_SECONDS", idle_after)
    assert plain_caller.get("/whoami").status_code == 200
    assert _drop_the_apps_connections(db_url) >= 1
    # Idle past the threshold: pinged, found dead, replaced, answered. Within it: not pinged
    # (what a busy pool saves), so the request meets the dead connection and gets the 503
    # a child retries, and the pool is renewed for the next one.
    assert plain_caller.get("/whoami").status_code == status
    assert plain_caller.get("/whoami").status_code == 200


def test_a_steady_heartbeat_meeting_a_dropped_connection_is_answered_by_the_app(
        db_backend, db_url, plain_caller, monkeypatch, caplog):
    if db_backend != "postgresql":
        pytest.skip("SQLite has no server that could drop a pooled connection")
    monkeypatch.setattr(parent, "PING_AFTER_IDLE_SECONDS", 3600.0)  # no ping: it meets it
    assert plain_caller.post("/heartbeat", json={}).status_code == 200  # online: now steady
    assert _drop_the_apps_connections(db_url) >= 1
    # The fast lane's read meets the dead connection, the pool is renewed, and the app
    # answers the heartbeat on a new one (parent/node_lane.py): the node sees no error.
    assert plain_caller.post("/heartbeat", json={}).status_code == 200
    assert plain_caller.post("/heartbeat", json={}).status_code == 200
    assert "fast lane failed" not in caplog.text
