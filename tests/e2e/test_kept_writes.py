"""What a worker keeps in memory (signs of life, unchanged pulls' log rows) reaches the
database with no request to carry it: within the flush interval, and when the worker stops."""

import time

import sqlalchemy as sa

from tests.support.http_callers import AdminHttp, NodeHttp


def _steady_node_with_a_kept_pull(parent):
    """A node that heartbeated, pulled, and then pulled unchanged (a 304 whose log row and
    last_sync_at the worker keeps)."""
    admin = AdminHttp.login(parent.base_url)
    admin.post("/api/v1/feeds", json={"mp_name": "one", "source_type": "rss",
                                      "source_url": "http://127.0.0.1:9/one.xml"})
    creds = admin.create_node_with_credentials("kept")
    node = NodeHttp(parent.base_url, creds)
    assert node.post("/heartbeat", json={"version": "0.3.0"}).status_code == 200
    etag = node.get("/feeds").headers["ETag"]
    assert node.get("/feeds", headers={"If-None-Match": etag}).status_code == 304
    admin.close()
    return creds.node_id


def _not_modified_rows(db_url, node_id) -> int:
    engine = sa.create_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as connection:
            return connection.execute(sa.text(
                "SELECT count(*) FROM sync_logs WHERE node_id = :id AND status = 'not_modified'"),
                {"id": node_id}).scalar_one()
    finally:
        engine.dispose()


def test_an_idle_workers_kept_pull_is_written_within_the_flush_interval(live_parent, db_url):
    parent = live_parent(workers=1, extra_env={"WERSS_CASCADE_PRESENCE_FLUSH_INTERVAL": "1"})
    node_id = _steady_node_with_a_kept_pull(parent)
    deadline = time.monotonic() + 10  # 1 s interval, a 1 s tick: well inside
    while _not_modified_rows(db_url, node_id) == 0:
        assert time.monotonic() < deadline, parent.log_tail()
        time.sleep(0.2)


def test_a_stopping_worker_writes_what_it_kept(live_parent, db_url):
    parent = live_parent(workers=1, extra_env={"WERSS_CASCADE_PRESENCE_FLUSH_INTERVAL": "3600",
                                               "WERSS_CASCADE_MAINTENANCE_INTERVAL": "3600"})
    node_id = _steady_node_with_a_kept_pull(parent)
    assert _not_modified_rows(db_url, node_id) == 0  # kept: nothing is due for an hour
    parent.stop()  # SIGTERM: a graceful stop
    assert parent.process.returncode == 0
    assert _not_modified_rows(db_url, node_id) == 1
