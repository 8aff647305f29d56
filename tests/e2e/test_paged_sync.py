"""A child's full pull streams into its cache page by page, holding one page at a time."""

from __future__ import annotations

import gc
import sqlite3
from datetime import datetime, timezone

import pytest

from child.agent import Agent
from child.cache import FEED_FIELDS
from child.config import load_config
from parent import create_app
from parent.extensions import db
from parent.models import Feed
from parent.models.replication import ENTITY_FEED
from parent.services import feeds as feed_service
from parent.services import replication
from tests.conftest import base_config
from tests.support.http_callers import AdminHttp

pytestmark = pytest.mark.e2e

FEEDS = 1050
PAGE = 100


def _seed(db_url: str, count: int) -> None:
    moment = datetime.now(timezone.utc)
    rows = [{"id": f"MP_WXS_{index:06d}", "faker_id": f"fk{index}", "mp_name": f"account {index}",
             "mp_cover": "https://mmbiz.qpic.cn/cover.png", "mp_intro": "x" * 200,
             "source_type": "wechat", "source_url": None, "status": 1, "sync_time": 0,
             "update_time": 0, "labels": [], "created_at": moment, "updated_at": moment}
            for index in range(count)]
    app = create_app(base_config(db_url), environ={})
    with app.app_context():
        db.session.execute(db.insert(Feed), rows)
        replication.record_upserts(ENTITY_FEED, [row["id"] for row in rows])
        db.session.commit()
        db.engine.dispose()


def _delete_feed(db_url: str, feed_id: str) -> None:
    app = create_app(base_config(db_url), environ={})
    with app.app_context():
        feed_service.delete_feed(feed_id)
        db.session.commit()
        db.engine.dispose()


def _live_feed_dicts() -> int:
    """Feed dicts alive in this process (each holds a list, so the collector tracks it)."""
    return sum(1 for obj in gc.get_objects()
               if type(obj) is dict and str(obj.get("id")).startswith("MP_WXS_")
               and "mp_name" in obj)


@pytest.fixture
def agent(parent, tmp_path):
    admin = AdminHttp.login(parent.base_url)
    creds = admin.create_node_with_credentials("paged")
    admin.close()
    config = load_config(environ={
        "CASCADE_PARENT_URL": parent.base_url, "CASCADE_API_KEY": creds.api_key,
        "CASCADE_API_SECRET": creds.api_secret, "CASCADE_DATA_DIR": str(tmp_path / "child")})
    agent = Agent(config)
    agent.syncer.page_size = PAGE
    agent.seen = []  # (method, path with query, status) of every parent call
    send = agent.client.session.send

    def recording_send(prepared, **kwargs):
        response = send(prepared, **kwargs)
        agent.seen.append((prepared.method, prepared.path_url, response.status_code))
        return response

    agent.client.session.send = recording_send
    yield agent
    agent.close()


def _feed_calls(agent) -> list[tuple[str, str, int]]:
    return [call for call in agent.seen if "/feeds" in call[1]]


def test_a_full_pull_holds_one_page_and_writes_each_page_in_one_transaction(
        agent, db_url, monkeypatch):
    _seed(db_url, FEEDS)
    pages, live, transactions = [], [], []
    write_page = agent.cache.write_page

    def counting_write_page(table, items, generation):
        if table == "feeds":
            pages.append(len(items))
            live.append(_live_feed_dicts())
        write_page(table, items, generation)

    monkeypatch.setattr(agent.cache, "write_page", counting_write_page)
    agent.cache._db.set_trace_callback(
        lambda sql: transactions.append(sql) if sql.startswith("BEGIN") else None)

    summary = agent.sync_once()

    assert summary["cached_feeds"] == FEEDS
    assert pages == [PAGE] * (FEEDS // PAGE) + [FEEDS % PAGE]
    # The page being written is the only one alive: the previous page has been let go.
    assert max(live) <= PAGE, live
    pulls = [call for call in _feed_calls(agent) if call[2] == 200]
    assert len(pulls) == len(pages) and all(f"limit={PAGE}" in path for _, path, _ in pulls)
    # One transaction per page, one to finish each table's pull (no tasks: no page), and
    # one for the heartbeat's last_contact.
    assert len(transactions) == len(pages) + 2 + 1, transactions
    stored = agent.cache._query("SELECT data FROM feeds LIMIT 1")[0][0]
    assert "mp_intro" not in stored and "mp_cover" not in stored
    assert set(agent.cache.all("feeds")[0]) <= set(FEED_FIELDS)


def test_a_sync_with_nothing_changed_is_one_304_per_table_and_writes_no_feed(agent, db_url):
    _seed(db_url, 250)
    agent.sync_once()
    agent.seen.clear()
    before = agent.cache._query("SELECT count(*), max(rowid) FROM feeds")

    summary = agent.sync_once()

    assert summary["cached_feeds"] == 250
    pulls = [call for call in agent.seen if "/heartbeat" not in call[1]]
    assert [status for _, _, status in pulls] == [304, 304], pulls
    assert agent.cache._query("SELECT count(*), max(rowid) FROM feeds") == before


def test_a_forced_full_pull_drops_feeds_the_parent_no_longer_has(agent, db_url):
    _seed(db_url, 250)
    agent.sync_once()
    _delete_feed(db_url, "MP_WXS_000007")

    agent.sync_once(full=True)

    ids = [row[0] for row in agent.cache._query("SELECT id FROM feeds")]
    assert len(ids) == 249 and "MP_WXS_000007" not in ids


def test_an_incremental_sync_applies_a_deletion(agent, db_url):
    _seed(db_url, 120)
    agent.sync_once()
    _delete_feed(db_url, "MP_WXS_000003")
    agent.seen.clear()

    agent.sync_once()

    assert agent.cache.count("feeds") == 119
    assert [call[2] for call in _feed_calls(agent)] == [200]
    assert "/feeds/changes" in _feed_calls(agent)[0][1]


def test_a_cache_of_the_previous_schema_is_upgraded_in_place(tmp_path):
    from child.cache import _MIGRATIONS, LocalCache

    path = tmp_path / "child-cache.db"
    old = sqlite3.connect(path)
    old.executescript(_MIGRATIONS[1] + "INSERT INTO feeds VALUES ('f1', '{\"id\": \"f1\"}');"
                      "PRAGMA user_version = 1;")
    old.close()
    cache = LocalCache(tmp_path)
    try:
        assert cache.count("feeds") == 1
        generation = cache.next_generation("feeds")
        cache.write_page("feeds", [{"id": "f2", "mp_name": "two"}], generation)
        cache.finish_full_pull("feeds", generation, 'W/"feeds-v1-2"', "2")
        assert [feed["id"] for feed in cache.all("feeds")] == ["f2"]
        assert cache.get_meta("feeds.cursor") == "2"
    finally:
        cache.close()
