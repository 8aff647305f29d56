"""The child's local SQLite cache: what survives a restart, and what a full pull replaces."""

from __future__ import annotations

import pytest

from child.cache import LocalCache, TaskScopedValidators


@pytest.fixture
def cache(tmp_path):
    local = LocalCache(tmp_path)
    yield local
    local.close()


def _feed(ident: str, name: str = "") -> dict:
    return {"id": ident, "mp_name": name or ident, "source_type": "rss",
            "source_url": f"http://feeds.invalid/{ident}.xml"}


def test_outbox_entries_and_held_leases_survive_a_restart(tmp_path):
    first = LocalCache(tmp_path)
    first.enqueue("complete", "POST", "/leases/l-1/complete", {"results": []}, "key-1")
    first.hold_lease({"lease_id": "l-1", "expires_at": "2099-01-01T00:00:00Z"})
    first.close()

    again = LocalCache(tmp_path)
    try:
        [entry] = again.pending_outbox()
        assert (entry["route"], entry["body"], entry["key"]) == (
            "/leases/l-1/complete", {"results": []}, "key-1")
        assert [lease["lease_id"] for lease in again.held_leases()] == ["l-1"]
    finally:
        again.close()


def test_a_full_pull_drops_what_the_parent_no_longer_has(cache):
    first = cache.next_generation("feeds")
    cache.write_page("feeds", [_feed("a"), _feed("b")], first)
    cache.finish_full_pull("feeds", first, '"v1"', "1")

    second = cache.next_generation("feeds")
    cache.write_page("feeds", [_feed("b", "renamed")], second)
    cache.finish_full_pull("feeds", second, '"v2"', "2")

    assert [(f["id"], f["mp_name"]) for f in cache.all("feeds")] == [("b", "renamed")]
    assert (cache.get_meta("feeds.etag"), cache.get_meta("feeds.cursor")) == ('"v2"', "2")


def test_an_interrupted_full_pull_keeps_the_old_etag_so_the_next_sync_pulls_again(cache):
    first = cache.next_generation("feeds")
    cache.write_page("feeds", [_feed("a")], first)
    cache.finish_full_pull("feeds", first, '"v1"', "1")

    cut_short = cache.next_generation("feeds")
    cache.write_page("feeds", [_feed("c")], cut_short)  # ...and the child stops here

    assert cache.get_meta("feeds.etag") == '"v1"'
    assert sorted(f["id"] for f in cache.all("feeds")) == ["a", "c"]


def test_changes_update_and_delete_rows_and_move_the_cursor(cache):
    cache.replace_all("feeds", [_feed("a"), _feed("b")], '"v1"', "1")

    cache.apply_changes("feeds", [_feed("a", "new name")], ["b"], "2", etag='"v2"')

    assert [(f["id"], f["mp_name"]) for f in cache.all("feeds")] == [("a", "new name")]
    assert cache.get_meta("feeds.cursor") == "2"


def test_validators_are_kept_per_task(cache):
    url = "http://feeds.invalid/a.xml"
    one, other = TaskScopedValidators(cache, "task-1"), TaskScopedValidators(cache, "task-2")
    one.set_validators(url, '"etag-1"', "Mon, 30 Nov 2026 10:00:00 GMT")

    assert one.validators(url) == ('"etag-1"', "Mon, 30 Nov 2026 10:00:00 GMT")
    assert other.validators(url) == (None, None), "another task still gets every article"
    one.forget(url)
    assert one.validators(url) == (None, None)
