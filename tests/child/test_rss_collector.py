"""The RSS collector against real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import hashlib
import socket
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests

from child.cache import LocalCache
from child.collectors import collector_for
from child.collectors.base import CollectedArticle, CollectError
from child.collectors.rss import RssCollector
from tests.support.local_server import LocalServer, Recorded, Reply

RSS2 = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/"
     xmlns:content="http://purl.org/rss/1.0/modules/content/">
<channel><title>技术周刊</title><link>https://example.org/</link><description>周刊</description>
<item><title>第一篇</title><link>https://example.org/posts/1</link>
  <guid isPermaLink="false">post-1</guid><pubDate>Wed, 01 May 2024 08:00:00 +0800</pubDate>
  <description>&lt;p&gt;摘要 &lt;b&gt;一&lt;/b&gt;&lt;/p&gt;</description>
  <media:thumbnail url="https://img.example.org/1.jpg"/></item>
<item><title>第三篇</title><link>https://example.org/posts/3</link>
  <guid isPermaLink="false">post-3</guid><pubDate>Fri, 03 May 2024 00:00:00 GMT</pubDate>
  <description>三</description>
  <enclosure url="https://img.example.org/3.png" type="image/png" length="10"/></item>
<item><title>第二篇</title><link>https://example.org/posts/2</link>
  <guid isPermaLink="false">post-2</guid><pubDate>Thu, 02 May 2024 00:00:00 GMT</pubDate>
  <description>二</description>
  <content:encoded><![CDATA[<p>正文 <img src="/images/2.jpg"></p>]]></content:encoded></item>
</channel></rss>"""

ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>Atom 源</title><id>urn:feed</id>
<updated>2024-05-01T00:00:00Z</updated>
<entry><title>Atom 文章</title><id>urn:uuid:7f3c</id><link rel="alternate" href="/posts/a"/>
  <updated>2024-05-01T08:00:00+08:00</updated>
  <content type="html">&lt;p&gt;内容 &lt;img src="https://img.example.org/a.webp"&gt;&lt;/p&gt;
  </content>
</entry></feed>"""

RSS1 = """<?xml version="1.0"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/"
         xmlns:dc="http://purl.org/dc/elements/1.1/">
<channel rdf:about="https://example.net/"><title>RDF</title><link>https://example.net/</link>
  <description>d</description></channel>
<item rdf:about="https://example.net/story"><title>RDF story</title>
  <link>https://example.net/story</link><description>故事</description>
  <dc:date>2024-05-01T00:00:00Z</dc:date></item>
</rdf:RDF>"""

MAY_1, MAY_2, MAY_3 = 1714521600, 1714608000, 1714694400


def rss_with(items: str) -> str:
    return ("<?xml version='1.0'?><rss version='2.0'><channel><title>t</title>"
            f"<link>https://example.org/</link><description>d</description>{items}"
            "</channel></rss>")


@pytest.fixture
def server():
    with LocalServer() as running:
        yield running


@pytest.fixture
def session():
    with requests.Session() as s:
        s.trust_env = False  # no proxy between the test and 127.0.0.1
        yield s


@pytest.fixture
def cache(tmp_path):
    local = LocalCache(tmp_path / "child")
    yield local
    local.close()


@pytest.fixture
def collector(cache, session):
    return RssCollector(cache, session, timeout=5, allow_private_addresses=True)


def feed_for(url: str, feed_id: str = "feed-1") -> dict:
    return {"id": feed_id, "faker_id": "", "mp_name": "技术周刊", "mp_cover": "", "mp_intro": "",
            "status": 1, "source_type": "rss", "source_url": url}


def test_rss2_items_become_articles_newest_first(server, collector):
    url = server.serve("/feed.xml", Reply(body=RSS2,
                                          headers={"Content-Type": "application/rss+xml"}))

    articles = collector.collect(feed_for(url))

    assert [a.title for a in articles] == ["第三篇", "第二篇", "第一篇"]
    assert articles[2] == CollectedArticle(
        id="post-1", mp_id="feed-1", title="第一篇", url="https://example.org/posts/1",
        pic_url="https://img.example.org/1.jpg", description="<p>摘要 <b>一</b></p>",
        content=None, publish_time=MAY_1)
    assert articles[0].pic_url == "https://img.example.org/3.png"  # image enclosure
    assert articles[1].content == '<p>正文 <img src="%s" /></p>' % server.url("/images/2.jpg")
    assert articles[1].pic_url == server.url("/images/2.jpg")  # first <img>, made absolute
    assert [a.publish_time for a in articles] == [MAY_3, MAY_2, MAY_1]
    assert articles[2].to_wire() == {
        "id": "post-1", "mp_id": "feed-1", "title": "第一篇", "url": "https://example.org/posts/1",
        "pic_url": "https://img.example.org/1.jpg", "description": "<p>摘要 <b>一</b></p>",
        "publish_time": MAY_1}
    assert articles[1].to_wire()["content"].startswith("<p>正文")


def test_atom_entry_uses_its_id_updated_time_and_content(server, collector):
    url = server.serve("/atom.xml", Reply(body=ATOM,
                                          headers={"Content-Type": "application/atom+xml"}))

    [article] = collector.collect(feed_for(url))

    assert article.id == "urn:uuid:7f3c"
    assert article.url == server.url("/posts/a")
    assert article.publish_time == MAY_1
    assert article.content == '<p>内容 <img src="https://img.example.org/a.webp" /></p>'
    assert article.pic_url == "https://img.example.org/a.webp"
    assert "<p>内容" in article.description


def test_rss1_item_is_identified_by_its_link(server, collector):
    url = server.serve("/rdf", Reply(body=RSS1, headers={"Content-Type": "application/rdf+xml"}))

    [article] = collector.collect(feed_for(url))

    assert (article.id, article.url, article.publish_time) == (
        "https://example.net/story", "https://example.net/story", MAY_1)
    assert (article.description, article.pic_url, article.content) == ("故事", "", None)


def test_entry_without_guid_or_link_gets_the_same_hashed_id_on_every_child(server, session,
                                                                           tmp_path):
    url = server.serve("/feed.xml", Reply(body=rss_with(
        "<item><title>无链接</title><pubDate>Wed, 01 May 2024 00:00:00 GMT</pubDate></item>")))
    ids = []
    for child in ("a", "b"):  # two children, two caches
        cache = LocalCache(tmp_path / child)
        collector = RssCollector(cache, session, timeout=5, allow_private_addresses=True)
        ids.append(collector.collect(feed_for(url))[0].id)
        cache.close()

    expected = hashlib.sha256("无链接\nWed, 01 May 2024 00:00:00 GMT".encode()).hexdigest()
    assert ids == ["sha256:" + expected] * 2


def test_ids_do_not_change_when_the_feed_is_served_from_another_mirror(server, collector, cache):
    body = rss_with("<item><title>t</title><guid>12345</guid><link>item.html</link></item>")
    server.serve("/v1/feed.xml", Reply(body=body))
    server.serve("/v2/feed.xml", Reply(body=body))
    server.serve("/feed", Reply(302, headers={"Location": "/v1/feed.xml"}))
    first = collector.collect(feed_for(server.url("/feed")))
    server.serve("/feed", Reply(302, headers={"Location": "/v2/feed.xml"}))
    second = collector.collect(feed_for(server.url("/feed")))

    assert first == second
    assert first[0].id == server.url("/12345")  # an RSS guid is a permalink unless it says not


def test_second_poll_sends_validators_and_304_returns_nothing_new(server, collector):
    def conditional(request: Recorded) -> Reply:
        if request.headers.get("If-None-Match") == '"v1"':
            return Reply(304)
        return Reply(body=RSS2, headers={"ETag": '"v1"',
                                         "Last-Modified": "Fri, 03 May 2024 00:00:00 GMT"})

    url = server.serve("/feed.xml", conditional)

    assert len(collector.collect(feed_for(url))) == 3
    assert collector.collect(feed_for(url)) == []
    assert collector.collect(feed_for(url)) == []  # a 304 keeps the validators

    first, *later = server.requests_to("/feed.xml")
    assert first.headers.get("If-None-Match") is None
    for request in later:
        assert request.headers.get("If-None-Match") == '"v1"'
        assert request.headers.get("If-Modified-Since") == "Fri, 03 May 2024 00:00:00 GMT"


def test_changed_feed_replaces_the_stored_validators(server, collector, cache):
    url = server.serve("/feed.xml", Reply(body=RSS2, headers={"ETag": '"v1"'}))
    collector.collect(feed_for(url))
    server.serve("/feed.xml", Reply(body=RSS2, headers={"ETag": '"v2"'}))
    collector.collect(feed_for(url))

    assert cache.validators(url) == ('"v2"', None)


def test_validators_are_not_stored_when_the_document_cannot_be_parsed(server, collector, cache):
    url = server.serve("/feed.xml", Reply(body="<html><body>维护中</body></html>",
                                          headers={"ETag": '"maintenance"'}))

    with pytest.raises(CollectError):
        collector.collect(feed_for(url))
    with pytest.raises(CollectError):
        collector.collect(feed_for(url))

    assert cache.validators(url) == (None, None)
    assert server.requests_to("/feed.xml")[1].headers.get("If-None-Match") is None


@pytest.mark.parametrize("body", [b"\x00\xff not xml at all", b"", b"<rss><channel><item>"])
def test_unreadable_document_is_a_collect_error(server, collector, body):
    url = server.serve("/feed.xml", Reply(body=body))

    with pytest.raises(CollectError, match="not"):
        collector.collect(feed_for(url))


def test_body_naming_a_local_file_is_not_read_from_disk(server, collector, tmp_path):
    local = tmp_path / "local.xml"
    local.write_text(RSS2, encoding="utf-8")
    url = server.serve("/feed.xml", Reply(body=str(local)))

    with pytest.raises(CollectError):
        collector.collect(feed_for(url))


def test_feed_without_entries_is_empty_not_an_error(server, collector, cache):
    url = server.serve("/feed.xml", Reply(body=rss_with(""), headers={"ETag": '"empty"'}))

    assert collector.collect(feed_for(url)) == []
    assert cache.validators(url) == ('"empty"', None)


def test_at_most_fifty_newest_articles_and_duplicates_once(server, collector):
    first_day = datetime(2024, 1, 1, tzinfo=timezone.utc)
    items = "".join(
        f"<item><title>n{i}</title><guid isPermaLink='false'>g{i}</guid><pubDate>"
        f"{(first_day + timedelta(days=i)).strftime('%a, %d %b %Y %H:%M:%S GMT')}</pubDate></item>"
        for i in range(60))
    items += "<item><title>again</title><guid isPermaLink='false'>g59</guid></item>"
    url = server.serve("/feed.xml", Reply(body=rss_with(items)))

    articles = collector.collect(feed_for(url))

    assert [a.id for a in articles] == [f"g{i}" for i in range(59, 9, -1)]


def test_articles_are_fitted_to_what_the_parent_accepts(server, collector):
    long_guid = "https://example.org/" + "x" * 300
    url = server.serve("/feed.xml", Reply(body=rss_with(
        f"<item><title>{'长' * 1200}</title><guid>{long_guid}</guid>"
        "<link>javascript:alert(1)</link><description>d</description></item>")))

    [article] = collector.collect(feed_for(url))

    assert article.id == "sha256:" + hashlib.sha256(long_guid.encode()).hexdigest()
    assert len(article.title) == 1000
    assert article.url == ""


@pytest.mark.parametrize("status, retryable", [
    (404, False), (410, False), (401, False), (403, False), (500, True), (502, True)])
def test_http_errors_say_whether_a_retry_can_help(server, collector, status, retryable):
    url = server.serve("/feed.xml", Reply(status, b"nope"))

    with pytest.raises(CollectError) as caught:
        collector.collect(feed_for(url))

    assert caught.value.retryable is retryable
    assert caught.value.rate_limited_until is None
    assert f"HTTP {status}" in str(caught.value)


def test_429_with_retry_after_seconds_gives_the_time_to_come_back(server, collector):
    url = server.serve("/feed.xml", Reply(429, b"slow down", headers={"Retry-After": "120"}))
    before = datetime.now(timezone.utc)

    with pytest.raises(CollectError) as caught:
        collector.collect(feed_for(url))

    after = datetime.now(timezone.utc)
    assert caught.value.retryable is True
    until = caught.value.rate_limited_until
    assert before + timedelta(seconds=119) <= until <= after + timedelta(seconds=121)


def test_503_with_retry_after_date_gives_that_date(server, session, cache):
    now = datetime(2024, 5, 1, 0, 0, tzinfo=timezone.utc)
    collector = RssCollector(cache, session, timeout=5, clock=lambda: now,
                             allow_private_addresses=True)
    url = server.serve("/feed.xml", Reply(503, headers={
        "Retry-After": "Wed, 01 May 2024 00:10:00 GMT"}))

    with pytest.raises(CollectError) as caught:
        collector.collect(feed_for(url))

    assert caught.value.retryable is True
    assert caught.value.rate_limited_until == now + timedelta(minutes=10)


def test_429_without_retry_after_is_retryable_without_a_time(server, collector):
    url = server.serve("/feed.xml", Reply(429))

    with pytest.raises(CollectError) as caught:
        collector.collect(feed_for(url))

    assert (caught.value.retryable, caught.value.rate_limited_until) == (True, None)


def test_slow_server_times_out_and_can_be_retried(server, session, cache):
    url = server.serve("/feed.xml", Reply(body=RSS2, delay=3))
    started = time.monotonic()

    with pytest.raises(CollectError, match="timed out") as caught:
        RssCollector(cache, session, timeout=0.3,
                     allow_private_addresses=True).collect(feed_for(url))

    assert caught.value.retryable is True
    assert time.monotonic() - started < 2


def test_server_trickling_bytes_is_cut_off_at_the_total_timeout(server, session, cache):
    url = server.serve("/feed.xml", Reply(body=RSS2, drip=0.1))
    started = time.monotonic()

    with pytest.raises(CollectError, match="longer than") as caught:
        RssCollector(cache, session, timeout=0.5, total_timeout=1,
                     allow_private_addresses=True).collect(feed_for(url))

    assert caught.value.retryable is True
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("content_length", [True, False])
def test_oversized_body_is_refused(server, session, cache, content_length):
    huge = rss_with("<item><title>x</title><description>" + "长" * 100_000 + "</description></item>")
    url = server.serve("/feed.xml", Reply(body=huge, headers={"ETag": '"big"'},
                                          content_length=content_length))

    with pytest.raises(CollectError, match="larger than") as caught:
        RssCollector(cache, session, timeout=5, max_bytes=64 * 1024,
                     allow_private_addresses=True).collect(feed_for(url))

    assert caught.value.retryable is False
    assert cache.validators(url) == (None, None)


def test_redirects_are_followed_up_to_five(server, collector):
    server.serve("/feed.xml", Reply(body=RSS2))
    for hop, status in zip(range(1, 5), (301, 302, 307, 308)):
        target = f"/hop{hop + 1}" if hop < 4 else "/feed.xml"
        server.serve(f"/hop{hop}", Reply(status, headers={"Location": target}))
    server.serve("/start", Reply(303, headers={"Location": server.url("/hop1")}))

    assert len(collector.collect(feed_for(server.url("/start")))) == 3
    assert len(server.requests) == 6


def test_more_than_five_redirects_is_refused(server, collector):
    server.serve("/loop", Reply(302, headers={"Location": "/loop"}))

    with pytest.raises(CollectError, match="redirected more than 5 times") as caught:
        collector.collect(feed_for(server.url("/loop")))

    assert caught.value.retryable is False
    assert len(server.requests) == 6


def test_unreachable_server_is_retryable(collector):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there

    with pytest.raises(CollectError, match="could not be reached") as caught:
        collector.collect(feed_for(f"http://127.0.0.1:{port}/feed.xml"))

    assert caught.value.retryable is True


def test_error_messages_leave_out_the_query_with_its_key(server, collector):
    url = server.serve("/feed.xml", Reply(404)) + "?key=s3cret-feed-key"

    with pytest.raises(CollectError) as caught:
        collector.collect(feed_for(url))

    assert "s3cret" not in str(caught.value)
    assert server.url("/feed.xml") in str(caught.value)


def test_feed_without_source_url_is_not_retryable(collector):
    with pytest.raises(CollectError) as caught:
        collector.collect(feed_for(""))

    assert caught.value.retryable is False


def test_collector_for_rss_fetches_rss(server, cache, session):
    url = server.serve("/feed.xml", Reply(body=RSS2))

    collector = collector_for("rss", cache, session, allow_private_addresses=True)

    assert collector.source_type == "rss"
    assert len(collector.collect(feed_for(url))) == 3


@pytest.mark.parametrize("source_type, message", [
    ("wechat", "no WeChat login manager"), ("telegram", "unsupported source type 'telegram'")])
def test_collector_for_other_sources_is_refused_for_good(cache, session, source_type, message):
    with pytest.raises(CollectError, match=message) as caught:
        collector_for(source_type, cache, session)

    assert caught.value.retryable is False


@pytest.mark.parametrize("reference", ["&#xD800;", "&#xdfff;", "&#55296;", "&#0;", "&#x110000;"])
def test_one_impossible_character_does_not_break_the_feed(server, collector, reference):
    """Issue 8 item 4: a lone surrogate reference made the whole feed fail on every run."""
    url = server.serve("/feed.xml", Reply(body=rss_with(
        "<item><title>好的</title><link>https://example.org/1</link><guid isPermaLink='false'>g1</guid></item>"
        f"<item><title>坏{reference}字</title><link>https://example.org/2</link><guid isPermaLink='false'>g2</guid>"
        f"<description>描{reference}述</description></item>"),
        headers={"Content-Type": "application/rss+xml"}))

    articles = {a.id: a for a in collector.collect(feed_for(url))}

    assert set(articles) == {"g1", "g2"}
    assert articles["g1"].title == "好的"
    assert articles["g2"].title == "坏\ufffd字" and articles["g2"].description == "描\ufffd述"
    articles["g2"].to_wire()["title"].encode("utf-8")  # sendable to the parent


# --- issue 8 item 12: no internal addresses unless allowed --------------------------------

def test_a_source_on_a_loopback_address_is_refused_by_default(server, cache, session):
    url = server.serve("/feed.xml", Reply(body=RSS2))

    with pytest.raises(CollectError, match="refused .the source.*allow_private_addresses") as caught:
        RssCollector(cache, session, timeout=5).collect(feed_for(url))

    assert caught.value.retryable is False
    assert server.requests_to("/feed.xml") == [], "nothing was fetched"


def test_a_redirect_to_an_internal_address_is_not_followed(cache, session, monkeypatch):
    """The child followed a feed's 302 to 127.0.0.1:.../metrics."""
    import socket

    import responses

    real_getaddrinfo = socket.getaddrinfo

    def resolve(host, *args, **kwargs):
        if host == "feeds.example.com":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 80))]
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    with responses.RequestsMock() as mocked:
        mocked.get("http://feeds.example.com/feed.xml", status=302,
                   headers={"Location": "http://127.0.0.1:8001/metrics"})
        with pytest.raises(CollectError, match="refused .a redirect.") as caught:
            RssCollector(cache, session, timeout=5).collect(
                feed_for("http://feeds.example.com/feed.xml"))
        assert [call.request.url for call in mocked.calls] == [
            "http://feeds.example.com/feed.xml"]
    assert "127.0.0.1" in str(caught.value)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "10.1.2.3", "192.168.0.1",
                                  "172.16.0.9", "169.254.169.254", "[::1]", "[fe80::1]",
                                  "0.0.0.0", "[::ffff:127.0.0.1]"])
def test_internal_hosts_are_refused(host):
    from child.addresses import PrivateAddressError, check_public_url

    with pytest.raises(PrivateAddressError):
        check_public_url(f"http://{host}:8001/metrics")


def test_public_addresses_pass():
    from child.addresses import check_public_url

    check_public_url("http://93.184.216.34/feed.xml")
    check_public_url("https://[2606:4700::1111]/feed.xml")
