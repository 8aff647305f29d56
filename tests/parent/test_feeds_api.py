"""Admin CRUD of feeds, and how every change reaches nodes (ETag and /feeds/changes)."""

from __future__ import annotations

import pytest

from parent.extensions import db
from parent.models.replication import ENTITY_FEED
from parent.services import replication
from shared.envelope import CURSOR_HEADER
from tests.helpers import assert_error

FEEDS = "/api/v1/feeds"
# A WeChat biz as WeRSS sees it: base64 of the account's numeric id.
BIZ = "MzA5MjE4NjA2Nw=="  # "3092186067"
OTHER_BIZ = "Mzk0MTIzNDU2Nw=="  # "3941234567"
RSS_URL = "https://blog.example.com/feed.xml"

WERSS_FIELDS = {"id", "faker_id", "mp_name", "mp_cover", "mp_intro", "status", "sync_time",
                "update_time", "created_at", "updated_at"}
SOURCE_FIELDS = {"source_type", "source_url", "labels"}


def wechat(**fields) -> dict:
    return {"faker_id": BIZ, "mp_name": "人民日报", "mp_cover": "https://mmbiz.qpic.cn/cover.jpg",
            "mp_intro": "参与、沟通、记录时代。", **fields}


def rss(**fields) -> dict:
    return {"source_type": "rss", "source_url": RSS_URL, "mp_name": "A blog", **fields}


def create(admin, payload: dict) -> dict:
    response = admin.post(FEEDS, json=payload)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["data"]


def total_feeds(admin) -> int:
    response = admin.get(FEEDS)
    assert response.status_code == 200
    return response.get_json()["data"]["total"]


def node_feeds(node_caller):
    response = node_caller.get("/feeds")
    assert response.status_code == 200, response.get_json()
    return response


def changes(node_caller, since, **params):
    return node_caller.get("/feeds/changes", params={"since": since, **params})


# --- create ---------------------------------------------------------------------------


def test_wechat_feed_gets_werss_id_from_its_faker_id(admin):
    response = admin.post(FEEDS, json=wechat(labels=["news"]))

    assert response.status_code == 201
    body = response.get_json()
    assert body["code"] == 0
    feed = body["data"]
    assert WERSS_FIELDS | SOURCE_FIELDS <= set(feed)
    assert feed["id"] == "MP_WXS_3092186067"
    assert feed["faker_id"] == BIZ
    assert feed["mp_name"] == "人民日报"
    assert feed["mp_cover"] == "https://mmbiz.qpic.cn/cover.jpg"
    assert feed["mp_intro"] == "参与、沟通、记录时代。"
    assert feed["status"] == 1
    assert feed["source_type"] == "wechat"
    assert feed["source_url"] is None
    assert feed["labels"] == ["news"]
    assert isinstance(feed["sync_time"], int) and isinstance(feed["update_time"], int)
    assert feed["created_at"].endswith("Z") and feed["updated_at"].endswith("Z")


def test_faker_id_without_padding_gives_the_same_id(admin):
    feed = create(admin, wechat(faker_id=BIZ.rstrip("=")))

    assert feed["id"] == "MP_WXS_3092186067"


def test_faker_id_that_is_not_base64_digits_still_gets_a_stable_id(admin):
    first = create(admin, wechat(faker_id="not-base64!"))

    assert first["id"].startswith("MP_WXS_")
    assert admin.get(f"{FEEDS}/{first['id']}").status_code == 200


def test_explicit_id_is_kept(admin):
    feed = create(admin, wechat(id="MP_WXS_123"))

    assert feed["id"] == "MP_WXS_123"


def test_rss_feed_id_is_derived_from_its_url(admin):
    feed = create(admin, rss())
    other = create(admin, rss(source_url="https://other.example.com/atom.xml", mp_name="Other"))

    assert feed["source_type"] == "rss"
    assert feed["source_url"] == RSS_URL
    assert feed["faker_id"] is None
    assert feed["id"].startswith("RSS_")
    assert other["id"].startswith("RSS_") and other["id"] != feed["id"]


def test_rss_feed_ids_do_not_depend_on_the_database(admin):
    """The same URL gets the same id on every parent, so exports and imports line up."""
    first = create(admin, rss())
    assert admin.delete(f"{FEEDS}/{first['id']}").status_code == 200

    again = create(admin, rss(mp_name="Renamed"))

    assert again["id"] == first["id"]


@pytest.mark.parametrize("payload, field", [
    pytest.param({"source_type": "rss", "mp_name": "no url"}, "source_url", id="rss-without-url"),
    pytest.param({"source_type": "rss", "mp_name": "x", "source_url": "ftp://x.example/f"},
                 "source_url", id="rss-non-http-url"),
    pytest.param({"mp_name": "no faker id"}, "faker_id", id="wechat-without-faker-id"),
    pytest.param({"faker_id": BIZ}, "mp_name", id="no-name"),
    pytest.param({"faker_id": BIZ, "mp_name": "   "}, "mp_name", id="blank-name"),
    pytest.param(wechat(status=2), "status", id="status-out-of-range"),
    pytest.param(wechat(status="1"), "status", id="status-as-string"),
    pytest.param(wechat(source_type="atom"), "source_type", id="unknown-source-type"),
    pytest.param(wechat(labels=["has space"]), "labels", id="bad-label"),
    pytest.param(wechat(id="bad id!"), "id", id="bad-id"),
    pytest.param(wechat(colour="red"), "colour", id="unknown-field"),
    pytest.param(wechat(mp_name="nul\x00name"), "mp_name", id="nul-character"),
])
def test_invalid_feed_is_refused_naming_the_field(admin, payload, field):
    response = admin.post(FEEDS, json=payload)

    body = assert_error(response, 422, "validation_failed")
    assert field in body["details"]
    assert total_feeds(admin) == 0


def test_malformed_json_is_refused(admin):
    response = admin.post(FEEDS, data=b"{not json", headers={"Content-Type": "application/json"})

    assert_error(response, 400, "malformed_json")
    assert total_feeds(admin) == 0


@pytest.mark.parametrize("second", [
    pytest.param(wechat(mp_name="same faker id"), id="same-faker-id"),
    pytest.param(wechat(id="MP_WXS_3092186067", faker_id=OTHER_BIZ), id="same-id"),
    pytest.param({"faker_id": "bWlzYw==", "id": "MP_WXS_3092186067", "mp_name": "x"},
                 id="same-id-explicit"),
])
def test_duplicate_wechat_feed_is_409_and_nothing_written(admin, node_caller, second):
    first = create(admin, wechat())
    etag = node_feeds(node_caller).headers["ETag"]

    response = admin.post(FEEDS, json=second)

    assert_error(response, 409, "already_exists")
    assert total_feeds(admin) == 1
    assert admin.get(f"{FEEDS}/{first['id']}").get_json()["data"]["mp_name"] == "人民日报"
    assert node_feeds(node_caller).headers["ETag"] == etag


def test_duplicate_source_url_is_409_and_nothing_written(admin):
    create(admin, rss())

    # Another source type with the same URL is still the same source.
    response = admin.post(FEEDS, json=wechat(source_url=RSS_URL))

    assert_error(response, 409, "already_exists")
    assert total_feeds(admin) == 1


def test_feeds_without_faker_id_or_source_url_do_not_collide(admin):
    """Empty optional fields are not identities: two such feeds are not duplicates."""
    create(admin, wechat(id="MP_WXS_1", faker_id=""))
    create(admin, wechat(id="MP_WXS_2", faker_id=""))
    create(admin, wechat(id="MP_WXS_3", faker_id=None, source_url=""))
    create(admin, wechat(id="MP_WXS_4", faker_id=None, source_url=""))

    assert total_feeds(admin) == 4


# --- read and list ----------------------------------------------------------------------


def test_get_returns_the_feed(admin):
    created = create(admin, wechat())

    response = admin.get(f"{FEEDS}/{created['id']}")

    assert response.status_code == 200
    assert response.get_json()["data"] == created


@pytest.mark.parametrize("method", ["get", "put", "delete"])
def test_unknown_feed_is_404_envelope(admin, method):
    kwargs = {"json": {"mp_name": "x"}} if method == "put" else {}

    response = getattr(admin, method)(f"{FEEDS}/MP_WXS_404", **kwargs)

    body = assert_error(response, 404, "not_found")
    assert "MP_WXS_404" in body["message"]


def seed_list(admin):
    create(admin, wechat(id="MP_WXS_1", faker_id="Zm9vMQ==", mp_name="Alpha news"))
    create(admin, wechat(id="MP_WXS_2", faker_id="Zm9vMg==", mp_name="Beta daily", status=0))
    create(admin, wechat(id="MP_WXS_3", faker_id="Zm9vMw==", mp_name="100% Gamma"))
    create(admin, rss(mp_name="Alpha blog"))
    create(admin, rss(source_url="https://x.example/rss", mp_name="Delta", status=0))


def listed(admin, **params) -> dict:
    response = admin.get(FEEDS, query_string=params)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]


def test_list_pages_through_every_feed_once(admin):
    seed_list(admin)

    first = listed(admin, page=1, page_size=2)
    second = listed(admin, page=2, page_size=2)
    third = listed(admin, page=3, page_size=2)
    beyond = listed(admin, page=4, page_size=2)

    assert (first["total"], first["page"], first["page_size"]) == (5, 1, 2)
    ids = [f["id"] for page in (first, second, third) for f in page["items"]]
    assert [len(p["items"]) for p in (first, second, third)] == [2, 2, 1]
    assert len(set(ids)) == 5
    assert beyond["items"] == [] and beyond["total"] == 5


@pytest.mark.parametrize("params, names", [
    ({"source_type": "rss"}, {"Alpha blog", "Delta"}),
    ({"source_type": "wechat"}, {"Alpha news", "Beta daily", "100% Gamma"}),
    ({"status": 0}, {"Beta daily", "Delta"}),
    ({"status": 1, "source_type": "wechat"}, {"Alpha news", "100% Gamma"}),
    ({"q": "Alpha"}, {"Alpha news", "Alpha blog"}),
    ({"q": "100%"}, {"100% Gamma"}),
    ({"q": "%"}, {"100% Gamma"}),
    ({"q": "_"}, set()),
    ({"q": "nothing like it"}, set()),
])
def test_list_filters(admin, params, names):
    seed_list(admin)

    data = listed(admin, **params)

    assert {f["mp_name"] for f in data["items"]} == names
    assert data["total"] == len(names)


@pytest.mark.parametrize("params, field", [
    ({"page_size": 201}, "page_size"),
    ({"page": 0}, "page"),
    ({"status": 5}, "status"),
    ({"source_type": "atom"}, "source_type"),
    ({"page": "x"}, "page"),
    ({"unknown": "1"}, "unknown"),
])
def test_bad_list_query_is_422(admin, params, field):
    body = assert_error(admin.get(FEEDS, query_string=params), 422, "validation_failed")
    assert field in body["details"]


def test_feeds_need_an_admin(client, node_caller, admin):
    assert_error(client.get(FEEDS), 401, "authentication_required")
    assert_error(client.post(FEEDS, json=wechat()), 401, "authentication_required")
    refused = node_caller.client.get(FEEDS, headers={
        "Authorization": node_caller.authorization("GET", FEEDS, "", b"")})
    assert_error(refused, 401, "wrong_credential_type")
    assert total_feeds(admin) == 0


# --- update and delete ------------------------------------------------------------------


def test_update_changes_only_the_given_fields(admin, clock):
    created = create(admin, wechat(labels=["a"]))
    clock.advance(60)

    response = admin.put(f"{FEEDS}/{created['id']}", json={"mp_name": "新名字", "status": 0})

    assert response.status_code == 200
    feed = response.get_json()["data"]
    assert feed["mp_name"] == "新名字" and feed["status"] == 0
    assert feed["mp_intro"] == created["mp_intro"] and feed["labels"] == ["a"]
    assert feed["created_at"] == created["created_at"]
    assert feed["updated_at"] > created["updated_at"]
    assert admin.get(f"{FEEDS}/{created['id']}").get_json()["data"] == feed


def test_update_cannot_change_the_id(admin):
    created = create(admin, wechat())

    response = admin.put(f"{FEEDS}/{created['id']}", json={"id": "MP_WXS_other"})

    assert response.status_code in (400, 422), response.get_json()
    assert admin.get(f"{FEEDS}/{created['id']}").status_code == 200
    assert admin.get(f"{FEEDS}/MP_WXS_other").status_code == 404


def test_update_to_another_feeds_identity_is_409(admin):
    a = create(admin, wechat())
    b = create(admin, rss())

    assert_error(admin.put(f"{FEEDS}/{b['id']}", json={"faker_id": BIZ}), 409, "already_exists")
    assert_error(admin.put(f"{FEEDS}/{a['id']}", json={"source_url": RSS_URL}),
                 409, "already_exists")
    assert admin.get(f"{FEEDS}/{b['id']}").get_json()["data"]["faker_id"] is None


def test_update_may_keep_its_own_identity(admin):
    feed = create(admin, rss())

    response = admin.put(f"{FEEDS}/{feed['id']}", json={"source_url": RSS_URL, "mp_name": "Same"})

    assert response.status_code == 200, response.get_json()


def test_rss_feed_cannot_lose_its_url(admin):
    feed = create(admin, rss())

    body = assert_error(admin.put(f"{FEEDS}/{feed['id']}", json={"source_url": None}),
                        422, "validation_failed")
    assert "source_url" in body["details"]
    assert admin.get(f"{FEEDS}/{feed['id']}").get_json()["data"]["source_url"] == RSS_URL


def test_invalid_update_writes_nothing(admin):
    feed = create(admin, wechat())

    body = assert_error(admin.put(f"{FEEDS}/{feed['id']}", json={"mp_name": "ok", "status": 9}),
                        422, "validation_failed")
    assert "status" in body["details"]
    assert admin.get(f"{FEEDS}/{feed['id']}").get_json()["data"]["mp_name"] == "人民日报"


def test_delete_removes_the_feed(admin):
    feed = create(admin, wechat())

    response = admin.delete(f"{FEEDS}/{feed['id']}")

    assert response.status_code == 200
    assert response.get_json()["data"] == {"id": feed["id"], "deleted": True}
    assert_error(admin.get(f"{FEEDS}/{feed['id']}"), 404, "not_found")
    assert_error(admin.delete(f"{FEEDS}/{feed['id']}"), 404, "not_found")
    # Its identity is free again.
    assert admin.post(FEEDS, json=wechat()).status_code == 201


# --- what nodes see ---------------------------------------------------------------------

# The parent's collection bookkeeping stays admin-side; nodes get the replicated fields.
BOOKKEEPING = ("sync_time", "update_time", "last_run_at", "last_run_node_id", "last_run_status",
               "invalid_reason")


def as_node_sees_it(feed: dict) -> dict:
    return {key: value for key, value in feed.items() if key not in BOOKKEEPING}


def test_node_pulls_feeds_in_the_werss_shape(admin, node_caller):
    created = create(admin, wechat())

    response = node_feeds(node_caller)

    assert response.get_json()["data"] == [as_node_sees_it(created)]
    assert set(created) >= set(BOOKKEEPING)
    assert response.headers["ETag"]


def test_node_gets_304_until_a_feed_changes(admin, node_caller):
    etag = node_feeds(node_caller).headers["ETag"]
    unchanged = node_caller.get("/feeds", headers={"If-None-Match": etag})
    assert unchanged.status_code == 304
    assert unchanged.headers["ETag"] == etag

    feed = create(admin, wechat())
    after_create = node_caller.get("/feeds", headers={"If-None-Match": etag})
    assert after_create.status_code == 200
    assert [f["id"] for f in after_create.get_json()["data"]] == [feed["id"]]
    etag_created = after_create.headers["ETag"]
    assert etag_created != etag

    admin.put(f"{FEEDS}/{feed['id']}", json={"mp_name": "renamed"})
    after_update = node_caller.get("/feeds", headers={"If-None-Match": etag_created})
    assert after_update.status_code == 200
    assert after_update.get_json()["data"][0]["mp_name"] == "renamed"
    etag_updated = after_update.headers["ETag"]
    assert etag_updated not in (etag, etag_created)

    admin.delete(f"{FEEDS}/{feed['id']}")
    after_delete = node_caller.get("/feeds", headers={"If-None-Match": etag_updated})
    assert after_delete.status_code == 200
    assert after_delete.get_json()["data"] == []
    assert after_delete.headers["ETag"] not in (etag, etag_created, etag_updated)


def test_node_follows_create_update_delete_through_changes(admin, node_caller):
    start = changes(node_caller, 0)
    assert start.status_code == 200
    cursor = start.get_json()["data"]["cursor"]

    feed = create(admin, wechat())
    created = changes(node_caller, cursor).get_json()["data"]
    assert created["items"] == [as_node_sees_it(feed)]
    assert created["deleted"] == [] and created["has_more"] is False

    admin.put(f"{FEEDS}/{feed['id']}", json={"mp_intro": "updated"})
    updated = changes(node_caller, created["cursor"]).get_json()["data"]
    assert [f["mp_intro"] for f in updated["items"]] == ["updated"]
    assert updated["deleted"] == []

    admin.delete(f"{FEEDS}/{feed['id']}")
    deleted = changes(node_caller, updated["cursor"]).get_json()["data"]
    assert deleted["items"] == [] and deleted["deleted"] == [feed["id"]]

    quiet = changes(node_caller, deleted["cursor"]).get_json()["data"]
    assert quiet == {"items": [], "deleted": [], "cursor": deleted["cursor"], "has_more": False}


def test_changes_page_with_limit_and_has_more(admin, node_caller):
    ids = [create(admin, rss(source_url=f"https://s{i}.example/rss", mp_name=f"s{i}"))["id"]
           for i in range(3)]

    first = changes(node_caller, 0, limit=2).get_json()["data"]
    second = changes(node_caller, first["cursor"], limit=2).get_json()["data"]

    assert first["has_more"] is True and len(first["items"]) == 2
    assert second["has_more"] is False and len(second["items"]) == 1
    assert sorted(f["id"] for f in first["items"] + second["items"]) == sorted(ids)


def test_full_pull_cursor_header_starts_incremental_pulls(admin, node_caller):
    create(admin, wechat())
    cursor = node_feeds(node_caller).headers[CURSOR_HEADER]

    assert changes(node_caller, cursor).get_json()["data"]["items"] == []
    later = create(admin, rss())
    assert changes(node_caller, cursor).get_json()["data"]["items"] == [as_node_sees_it(later)]


def test_refused_write_is_not_a_change(admin, node_caller):
    create(admin, wechat())
    cursor = node_feeds(node_caller).headers[CURSOR_HEADER]

    assert admin.post(FEEDS, json=wechat()).status_code == 409
    assert admin.put(f"{FEEDS}/MP_WXS_3092186067", json={"status": 7}).status_code == 422

    assert changes(node_caller, cursor).get_json()["data"]["items"] == []


def prune_feed_changes(app, clock):
    clock.advance(31 * 86400)
    with app.app_context():
        replication.prune_change_log(ENTITY_FEED, retention_days=30)
        db.session.commit()


def test_cursor_older_than_the_pruned_log_is_410(app, admin, node_caller, clock):
    create(admin, wechat())
    create(admin, rss())
    prune_feed_changes(app, clock)

    response = changes(node_caller, 0)

    body = assert_error(response, 410, "cursor_expired")
    assert "full pull" in body["message"]
    # The way out the message points to still works.
    assert len(node_feeds(node_caller).get_json()["data"]) == 2


def test_up_to_date_cursor_survives_pruning(app, admin, node_caller, clock):
    """A child that saw every change before a quiet month must not be told to start over."""
    create(admin, wechat())
    before = node_feeds(node_caller)
    cursor = before.headers[CURSOR_HEADER]
    prune_feed_changes(app, clock)

    response = changes(node_caller, cursor)

    assert response.status_code == 200, response.get_json()
    assert response.get_json()["data"]["items"] == []


def test_etag_after_pruning_never_matches_an_older_state(app, admin, node_caller, clock):
    """A child holding the ETag of the empty list must not get 304 once feeds exist."""
    empty_etag = node_feeds(node_caller).headers["ETag"]
    create(admin, wechat())
    prune_feed_changes(app, clock)

    response = node_caller.get("/feeds", headers={"If-None-Match": empty_etag})

    assert response.status_code == 200
    assert len(response.get_json()["data"]) == 1


def test_cursor_ahead_of_the_log_is_410(admin, node_caller):
    create(admin, wechat())

    assert_error(changes(node_caller, 10**9), 410, "cursor_expired")


@pytest.mark.parametrize("since", ["-1", "abc", "1" * 30])
def test_unparseable_cursor_is_422(node_caller, since):
    assert_error(node_caller.get("/feeds/changes", params={"since": since}),
                 422, "validation_failed")
