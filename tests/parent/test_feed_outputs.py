"""Public feeds of collected articles: RSS 2.0, Atom 1.0, JSON Feed 1.1 (docs/FEEDS.md)."""

import calendar
import json
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from xml.etree import ElementTree as ET

import feedparser
import pytest
from sqlalchemy import event

from parent.extensions import db
from parent.services.outputs import clean_text
from tests.helpers import assert_error

BASE_TIME = 1764300000  # 2025-11-28T03:20:00Z
XML_KINDS = {"rss": "rss20", "atom": "atom10"}
CONTENT_TYPES = {
    "rss": "application/rss+xml; charset=utf-8",
    "atom": "application/atom+xml; charset=utf-8",
    "json": "application/feed+json",
}
TRICKY_TITLE = '蜂鸟 <b>&amp; "quotes" 🚀 Tom & Jerry</b>'


def make_feed(admin, name, url):
    response = admin.post("/api/v1/feeds", json={
        "mp_name": name, "mp_intro": f"{name} intro", "source_type": "rss",
        "source_url": url, "mp_cover": "https://example.com/cover.png"})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["data"]["id"]


def article(feed_id, number, **fields):
    return {"id": f"art-{number}", "mp_id": feed_id, "title": f"Article {number}",
            "url": f"https://mp.weixin.qq.com/s/{number}",
            "pic_url": f"https://mmbiz.qpic.cn/{number}/0?wx_fmt=png",
            "description": f"Summary {number}", "publish_time": BASE_TIME + number * 60,
            **fields}


def hold_lease(node_caller, feed_ids):
    """Give the node a live lease on these feeds: only such nodes may upload their articles."""
    from datetime import timedelta

    from parent.clock import now
    from parent.models import Allocation

    with node_caller.client.application.app_context():
        db.session.add(Allocation(run_id="run", task_id="task", feed_ids=sorted(feed_ids),
                                  status="leased", leased_to=node_caller.creds.node_id,
                                  lease_expires_at=now() + timedelta(days=1)))
        db.session.commit()


def upload(node_caller, articles):
    hold_lease(node_caller, {a["mp_id"] for a in articles})
    response = node_caller.post("/articles", json={"articles": articles})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]


def fetch(client, path, status=200, **kwargs):
    response = client.get(path, **kwargs)
    assert response.status_code == status, (path, response.status_code, response.data[:500])
    return response


def parse(response, kind):
    """Parse a feed as a reader would and insist the reader had nothing to complain about."""
    assert response.headers["Content-Type"] == CONTENT_TYPES[kind]
    if kind == "json":
        document = json.loads(response.data.decode("utf-8"))
        assert document["version"] == "https://jsonfeed.org/version/1.1"
        assert isinstance(document["title"], str) and isinstance(document["items"], list)
        for item in document["items"]:
            assert isinstance(item["id"], str) and item["id"]
            assert "content_html" in item or "content_text" in item
        return document
    parsed = feedparser.parse(response.data)
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.version == XML_KINDS[kind]
    return parsed


def entries(parsed, kind):
    """(id, title, link, published unix seconds) of every item, in document order."""
    if kind == "json":
        return [(item["id"], item["title"], item.get("url"),
                 int(datetime.fromisoformat(item["date_published"].replace("Z", "+00:00"))
                     .timestamp()))
                for item in parsed["items"]]
    return [(entry.id, entry.title, entry.get("link"),
             calendar.timegm(entry.published_parsed)) for entry in parsed.entries]


def expected_id(kind, feed_id, article_id, qualified=False):
    if kind == "atom":
        return f"urn:werss:article:{feed_id}:{article_id}"
    return f"{feed_id}:{article_id}" if qualified else article_id


@pytest.fixture
def feeds(admin):
    return [make_feed(admin, "科技日报", "http://127.0.0.1:1/a.xml"),
            make_feed(admin, "Second & <Co>", "http://127.0.0.1:1/b.xml")]


@pytest.mark.parametrize("kind", ["rss", "atom", "json"])
def test_feed_lists_uploaded_articles_newest_first(client, node_caller, feeds, kind):
    # Uploaded out of order: the feed sorts by publish_time, not by arrival.
    upload(node_caller, [article(feeds[0], n) for n in (2, 5, 1, 4, 3)])
    parsed = parse(fetch(client, f"/feed/{feeds[0]}.{kind}"), kind)
    assert entries(parsed, kind) == [
        (expected_id(kind, feeds[0], f"art-{n}"), f"Article {n}",
         f"https://mp.weixin.qq.com/s/{n}", BASE_TIME + n * 60)
        for n in (5, 4, 3, 2, 1)
    ]
    title = parsed["title"] if kind == "json" else parsed.feed.title
    assert title == "科技日报"


@pytest.mark.parametrize("kind", ["rss", "atom", "json"])
def test_all_feed_merges_feeds_and_names_each_source(client, node_caller, feeds, kind):
    upload(node_caller, [article(feeds[0], 1), article(feeds[1], 2),
                         article(feeds[0], 3), article(feeds[1], 1)])
    parsed = parse(fetch(client, f"/feed/all.{kind}"), kind)
    title = parsed["title"] if kind == "json" else parsed.feed.title
    assert title == "WeRSS Cascade"
    got = [(item_id, name) for item_id, name, _, _ in entries(parsed, kind)]
    # The same article id in two feeds stays two distinct items.
    assert got == [
        (expected_id(kind, feeds[0], "art-3", qualified=True), "Article 3"),
        (expected_id(kind, feeds[1], "art-2", qualified=True), "Article 2"),
        (expected_id(kind, feeds[1], "art-1", qualified=True), "Article 1"),
        (expected_id(kind, feeds[0], "art-1", qualified=True), "Article 1"),
    ]
    if kind == "json":
        authors = [item["authors"][0]["name"] for item in parsed["items"]]
    else:
        authors = [entry.author for entry in parsed.entries]
    assert authors == ["科技日报", "Second & <Co>", "Second & <Co>", "科技日报"]


def test_rss_item_shape(client, node_caller, feeds):
    upload(node_caller, [article(feeds[0], 1, content="<p>全文 full text</p>"),
                         article(feeds[0], 2, pic_url="")])
    body = fetch(client, f"/feed/{feeds[0]}.rss?limit=10").data
    root = ET.fromstring(body)
    channel = root.find("channel")
    assert channel.findtext("link") == f"http://localhost/feed/{feeds[0]}.rss"
    assert channel.find("image/url").text == "https://example.com/cover.png"
    newest, oldest = channel.findall("item")
    guid = newest.find("guid")
    assert guid.text == "art-2" and guid.get("isPermaLink") == "false"
    assert newest.find("enclosure") is None
    assert newest.find("{http://purl.org/rss/1.0/modules/content/}encoded") is None
    assert newest.findtext("description") == "Summary 2"
    assert oldest.findtext("{http://purl.org/rss/1.0/modules/content/}encoded") == \
        "<p>全文 full text</p>"
    assert oldest.findtext("description") == "Summary 1"
    enclosure = oldest.find("enclosure")
    assert enclosure.get("url") == "https://mmbiz.qpic.cn/1/0?wx_fmt=png"
    assert enclosure.get("type") == "image/png"
    # RFC 822 dates in GMT.
    assert oldest.findtext("pubDate") == "Fri, 28 Nov 2025 03:21:00 GMT"
    assert parsedate_to_datetime(channel.findtext("lastBuildDate")).tzinfo is not None


def test_full_text_is_preferred_in_atom_and_json(client, node_caller, feeds):
    upload(node_caller, [article(feeds[0], 1, content="<p>全文 full text</p>"),
                         article(feeds[0], 2)])
    atom = parse(fetch(client, f"/feed/{feeds[0]}.atom"), "atom")
    without, with_content = atom.entries
    assert with_content.content[0].value == "<p>全文 full text</p>"
    assert with_content.content[0].type == "text/html"
    assert with_content.summary == "Summary 1"
    assert without.content[0].value == "Summary 2"
    assert [link.href for link in with_content.links if link.rel == "enclosure"] == [
        "https://mmbiz.qpic.cn/1/0?wx_fmt=png"]
    assert with_content.published == "2025-11-28T03:21:00Z"

    document = parse(fetch(client, f"/feed/{feeds[0]}.json"), "json")
    without, with_content = document["items"]
    assert with_content["content_html"] == "<p>全文 full text</p>"
    assert with_content["summary"] == "Summary 1"
    assert with_content["image"] == "https://mmbiz.qpic.cn/1/0?wx_fmt=png"
    assert with_content["date_published"] == "2025-11-28T03:21:00Z"
    assert without["content_html"] == "Summary 2" and "summary" not in without
    assert document["feed_url"] == f"http://localhost/feed/{feeds[0]}.json"


@pytest.mark.parametrize("kind", ["rss", "atom", "json"])
def test_chinese_and_xml_special_characters_survive(client, node_caller, feeds, kind):
    upload(node_caller, [article(feeds[0], 1, title=TRICKY_TITLE,
                                 description="a < b && c > d ]]> 表情😀")])
    response = fetch(client, f"/feed/{feeds[0]}.{kind}")
    parse(response, kind)
    if kind == "json":
        item = json.loads(response.data)["items"][0]
        assert item["title"] == TRICKY_TITLE
        assert item["content_html"] == "a < b && c > d ]]> 表情😀"
        return
    # Exact round trip through a strict XML parser (feedparser rewrites HTML-looking text).
    root = ET.fromstring(response.data)
    if kind == "rss":
        item = root.find("channel/item")
        assert item.findtext("title") == TRICKY_TITLE
        assert item.findtext("description") == "a < b && c > d ]]> 表情😀"
    else:
        entry = root.find("{http://www.w3.org/2005/Atom}entry")
        assert entry.findtext("{http://www.w3.org/2005/Atom}title") == TRICKY_TITLE
    assert "Second &amp; &lt;Co&gt;" not in response.data.decode()  # other feed not shown


@pytest.mark.parametrize("kind", ["rss", "atom", "json"])
def test_characters_xml_forbids_are_dropped(client, node_caller, feeds, kind):
    upload(node_caller, [article(feeds[0], 1, title="bell\x07 tab\tvt\x0b esc\x1b\ufffe end",
                                 description="form\x0cfeed", content="<p>x\x01y</p>")])
    response = fetch(client, f"/feed/{feeds[0]}.{kind}")
    parsed = parse(response, kind)
    item = parsed["items"][0] if kind == "json" else parsed.entries[0]
    assert item["title"] == "bell tab\tvt esc end"
    if kind == "json":
        assert item["content_html"] == "<p>xy</p>"
    else:
        ET.fromstring(response.data)  # well-formed XML 1.0


def test_clean_text_drops_what_xml_forbids_and_keeps_the_rest():
    kept = "中文 😀 tab\t nl\n cr\r \x85 \ud7ff \ue000 \ufffd"
    assert clean_text(kept) == kept
    assert clean_text("a\x00b\x08c\x1fd\ud800e\udfffg\ufffeh\uffff") == "abcdegh"
    assert clean_text(None) == ""


@pytest.mark.parametrize("kind", ["rss", "atom", "json"])
def test_limit_defaults_to_50_and_caps_at_200(client, node_caller, feeds, kind):
    upload(node_caller, [article(feeds[0], n) for n in range(1, 211)])
    count = (lambda parsed: len(parsed["items"])) if kind == "json" else (
        lambda parsed: len(parsed.entries))
    assert count(parse(fetch(client, f"/feed/{feeds[0]}.{kind}"), kind)) == 50
    small = parse(fetch(client, f"/feed/{feeds[0]}.{kind}?limit=3"), kind)
    assert [e[0] for e in entries(small, kind)] == [
        expected_id(kind, feeds[0], f"art-{n}") for n in (210, 209, 208)]
    assert count(parse(fetch(client, f"/feed/all.{kind}?limit=200"), kind)) == 200


@pytest.mark.parametrize("limit", ["0", "201", "abc"])
def test_limit_out_of_range_is_refused(client, feeds, limit):
    body = assert_error(client.get(f"/feed/{feeds[0]}.rss?limit={limit}"), 422,
                        "validation_failed")
    assert "limit" in body["details"]


def test_cache_busting_parameters_are_ignored(client, feeds):
    fetch(client, f"/feed/{feeds[0]}.rss?_=1712345678")


@pytest.mark.parametrize("kind", ["rss", "atom", "json"])
def test_conditional_get_round_trip(client, clock, node_caller, feeds, kind):
    upload(node_caller, [article(feeds[0], 1)])
    path = f"/feed/{feeds[0]}.{kind}"
    first = fetch(client, path)
    etag, last_modified = first.headers["ETag"], first.headers["Last-Modified"]
    assert etag and last_modified

    again = fetch(client, path, status=304, headers={"If-None-Match": etag})
    assert again.data == b"" and again.headers["ETag"] == etag
    fetch(client, path, status=304, headers={"If-Modified-Since": last_modified})

    clock.advance(5)
    upload(node_caller, [article(feeds[0], 2)])
    changed = fetch(client, path, headers={"If-None-Match": etag})
    assert changed.headers["ETag"] != etag
    assert parsedate_to_datetime(changed.headers["Last-Modified"]) > \
        parsedate_to_datetime(last_modified)
    assert len(entries(parse(changed, kind), kind)) == 2
    fetch(client, path, status=200, headers={"If-Modified-Since": last_modified})


def test_etag_differs_per_format_and_limit(client, node_caller, feeds):
    upload(node_caller, [article(feeds[0], 1)])
    tags = {fetch(client, path).headers["ETag"] for path in (
        f"/feed/{feeds[0]}.rss", f"/feed/{feeds[0]}.atom", f"/feed/{feeds[0]}.json",
        f"/feed/{feeds[0]}.rss?limit=10", "/feed/all.rss")}
    assert len(tags) == 5


def test_renaming_a_feed_invalidates_its_etag(admin, client, clock, node_caller, feeds):
    upload(node_caller, [article(feeds[0], 1)])
    etag = fetch(client, f"/feed/{feeds[0]}.rss").headers["ETag"]
    clock.advance(5)
    assert admin.put(f"/api/v1/feeds/{feeds[0]}", json={"mp_name": "新名字"}).status_code == 200
    renamed = fetch(client, f"/feed/{feeds[0]}.rss", headers={"If-None-Match": etag})
    assert parse(renamed, "rss").feed.title == "新名字"


def test_all_feed_revalidates_after_an_upload(client, clock, node_caller, feeds):
    upload(node_caller, [article(feeds[0], 1)])
    etag = fetch(client, "/feed/all.atom").headers["ETag"]
    fetch(client, "/feed/all.atom", status=304, headers={"If-None-Match": etag})
    clock.advance(5)
    upload(node_caller, [article(feeds[1], 1)])
    assert len(parse(fetch(client, "/feed/all.atom", headers={"If-None-Match": etag}),
                     "atom").entries) == 2


@pytest.mark.parametrize("kind", ["rss", "atom", "json"])
def test_feed_without_articles_is_a_valid_empty_feed(client, feeds, kind):
    parsed = parse(fetch(client, f"/feed/{feeds[1]}.{kind}"), kind)
    assert entries(parsed, kind) == []
    parse(fetch(client, f"/feed/all.{kind}"), kind)


def test_feeds_need_no_credentials_and_refuse_writes(client, feeds):
    fetch(client, f"/feed/{feeds[0]}.rss")
    assert client.head(f"/feed/{feeds[0]}.rss").status_code == 200
    assert_error(client.post(f"/feed/{feeds[0]}.rss"), 405, "method_not_allowed")


@pytest.mark.parametrize("path", ["/feed/NOPE.rss", "/feed/NOPE.atom", "/feed/NOPE.json"])
def test_unknown_feed_is_404_envelope(client, feeds, path):
    body = assert_error(client.get(path), 404, "not_found")
    assert "NOPE" in body["message"]


@pytest.mark.parametrize("suffix", [".xml", ".html", "", ".rss.bak"])
def test_unknown_extension_is_404_envelope(client, feeds, suffix):
    assert_error(client.get(f"/feed/{feeds[0]}{suffix}"), 404, "not_found")
    assert_error(client.get(f"/feed/all{suffix}"), 404, "not_found")


def test_deleted_feed_disappears_from_every_output(admin, client, node_caller, feeds):
    upload(node_caller, [article(feeds[0], 1), article(feeds[1], 2)])
    assert admin.delete(f"/api/v1/feeds/{feeds[1]}").status_code in (200, 204)
    assert_error(client.get(f"/feed/{feeds[1]}.rss"), 404, "not_found")
    parsed = parse(fetch(client, "/feed/all.rss"), "rss")
    assert [entry.id for entry in parsed.entries] == [f"{feeds[0]}:art-1"]


def test_article_without_publish_time_is_dated_by_collection(client, clock, node_caller, feeds):
    upload(node_caller, [article(feeds[0], 1, publish_time=0)])
    document = parse(fetch(client, f"/feed/{feeds[0]}.json"), "json")
    collected = clock.current.astimezone(timezone.utc).replace(microsecond=0)
    assert document["items"][0]["date_published"] == collected.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_feed_ids_with_dots_are_served(admin, client, node_caller):
    response = admin.post("/api/v1/feeds", json={
        "id": "my.feed", "mp_name": "Dotted", "source_type": "rss",
        "source_url": "http://127.0.0.1:1/dotted.xml"})
    assert response.status_code == 201, response.get_json()
    upload(node_caller, [article("my.feed", 1)])
    parsed = parse(fetch(client, "/feed/my.feed.rss"), "rss")
    assert [entry.id for entry in parsed.entries] == ["art-1"]


@pytest.fixture
def statements(app):
    """Count the SQL statements the app runs."""
    seen = []

    def record(conn, cursor, statement, *args):
        if not statement.lstrip().upper().startswith(("BEGIN", "PRAGMA")):
            seen.append(statement)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine, "before_cursor_execute", record)


@pytest.mark.parametrize("path", ["/feed/{feed}.rss", "/feed/all.atom"])
def test_statements_do_not_grow_with_items_and_304_skips_the_rows(
        client, node_caller, feeds, statements, path):
    path = path.format(feed=feeds[0])
    upload(node_caller, [article(feeds[0], 1)])
    statements.clear()
    etag = fetch(client, path).headers["ETag"]
    one_item = len(statements)

    upload(node_caller, [article(feeds[0], n) for n in range(2, 151)])
    statements.clear()
    etag = fetch(client, path + "?limit=150").headers["ETag"]
    assert len(statements) == one_item

    statements.clear()
    fetch(client, path + "?limit=150", status=304, headers={"If-None-Match": etag})
    assert len(statements) == one_item - 1  # validators only: the rows are never read


def test_a_forged_host_is_not_cached_publicly_without_a_public_base_url(admin, client):
    """Issue 8 item 15: the Host header went into links served with Cache-Control: public."""
    feed_id = make_feed(admin, "hosted", "http://127.0.0.1:1/h.xml")
    response = fetch(client, f"/feed/{feed_id}.rss", headers={"Host": "evil.example"})

    assert "public" not in response.headers["Cache-Control"]
    assert "private" in response.headers["Cache-Control"]
    assert "Host" in response.headers["Vary"]


@pytest.mark.parametrize("cascade_settings", [{"public_base_url": "https://rss.example.com/"}])
def test_links_use_the_public_base_url_whatever_the_host(admin, client, cascade_settings):
    feed_id = make_feed(admin, "hosted", "http://127.0.0.1:1/h.xml")
    response = fetch(client, f"/feed/{feed_id}.rss", headers={"Host": "evil.example"})

    assert b"evil.example" not in response.data
    assert f"https://rss.example.com/feed/{feed_id}.rss".encode() in response.data
    assert response.headers["Cache-Control"] == "public, max-age=60"
