"""Public feed documents of collected articles: RSS 2.0, Atom 1.0 and JSON Feed 1.1.

See docs/FEEDS.md. Every document is answered conditionally: the validators (ETag,
Last-Modified) come from aggregates over the articles, so a 304 costs no rendering.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import re
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from urllib.parse import parse_qs, quote, urlsplit
from xml.etree import ElementTree as ET

from sqlalchemy import func
from werkzeug.sansio.http import is_resource_modified

from shared.timeutil import from_unix, isoformat_z

from ..clock import now
from ..extensions import db
from ..models import Article, Feed
from .feeds import get_feed

RSS = "rss"
ATOM = "atom"
JSON_FEED = "json"
CONTENT_TYPES = {
    RSS: "application/rss+xml; charset=utf-8",
    ATOM: "application/atom+xml; charset=utf-8",
    JSON_FEED: "application/feed+json",
}

ALL_FEEDS_TITLE = "WeRSS Cascade"
GENERATOR = "WeRSS Cascade"
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
# Part of every ETag: bump it when the rendering changes so caches let go of old bodies.
RENDER_VERSION = "1"

ATOM_NS = "http://www.w3.org/2005/Atom"
CONTENT_NS = "http://purl.org/rss/1.0/modules/content/"
DC_NS = "http://purl.org/dc/elements/1.1/"
JSON_FEED_VERSION = "https://jsonfeed.org/version/1.1"

# Everything XML 1.0 does not allow in a document (C0 controls other than tab, LF, CR;
# lone surrogates; U+FFFE and U+FFFF). Dropped from every format so they all agree.
_FORBIDDEN = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def clean_text(value: str | None) -> str:
    """Drop the characters XML 1.0 forbids; None becomes ""."""
    if not value:
        return ""
    return _FORBIDDEN.sub("", value)


@dataclass(frozen=True)
class FeedDocument:
    """A rendered feed, or only its validators when the client's copy is current."""

    body: bytes | None
    content_type: str
    etag: str
    last_modified: datetime | None

    @property
    def not_modified(self) -> bool:
        return self.body is None


@dataclass(frozen=True)
class _Channel:
    feed_id: str | None  # None: every feed
    title: str
    description: str
    image: str
    updated: datetime


@dataclass(frozen=True)
class _Item:
    guid: str
    atom_id: str
    title: str
    url: str
    image: str
    description: str
    content: str | None
    published: datetime
    source_id: str
    source_name: str


def build_feed_document(
    feed_id: str | None, kind: str, limit: int, *, base_url: str, self_url: str,
    if_none_match: str | None = None, if_modified_since: str | None = None,
) -> FeedDocument:
    """Render one feed (or every feed when feed_id is None), or say the client's copy is current.

    :raises NotFoundError: the feed does not exist.
    """
    feed = get_feed(feed_id) if feed_id is not None else None
    etag, last_modified = _validators(feed, kind, limit, base_url)
    content_type = CONTENT_TYPES[kind]
    if not is_resource_modified(http_if_none_match=if_none_match,
                                http_if_modified_since=if_modified_since,
                                etag=etag, last_modified=last_modified):
        return FeedDocument(None, content_type, etag, last_modified)

    channel = _channel(feed, last_modified)
    items = [_item(article, mp_name, qualify=feed is None)
             for article, mp_name in _recent_articles(feed, limit)]
    render = {RSS: render_rss, ATOM: render_atom, JSON_FEED: render_json_feed}[kind]
    return FeedDocument(render(channel, items, base_url, self_url), content_type, etag,
                        last_modified)


def _validators(feed: Feed | None, kind: str, limit: int, base_url: str):
    """Derive the ETag and Last-Modified from aggregates, never from the rendered body."""
    articles = db.select(func.count(Article.id), func.max(Article.id),
                         func.max(Article.updated_at))
    if feed is None:
        # Only articles of feeds that still exist are shown, so only they count.
        articles = articles.join(Feed, Feed.id == Article.feed_id)
        feeds_changed = db.session.execute(db.select(func.max(Feed.updated_at))).scalar_one()
    else:
        articles = articles.where(Article.feed_id == feed.id)
        feeds_changed = feed.updated_at
    count, max_id, articles_changed = db.session.execute(articles).one()
    moments = [moment for moment in (articles_changed, feeds_changed) if moment is not None]
    last_modified = max(moments).replace(microsecond=0) if moments else None
    seed = "|".join(str(part) for part in (
        RENDER_VERSION, kind, limit, base_url, feed.id if feed else "*", count, max_id,
        isoformat_z(articles_changed), isoformat_z(feeds_changed),
    ))
    # Weak: the tag stands for the data behind the document, not its exact bytes.
    return 'W/"' + hashlib.sha256(seed.encode("utf-8")).hexdigest()[:32] + '"', last_modified


def _recent_articles(feed: Feed | None, limit: int) -> list[tuple[Article, str]]:
    query = (db.select(Article, Feed.mp_name).join(Feed, Feed.id == Article.feed_id)
             .order_by(Article.publish_time.desc(), Article.id.desc()).limit(limit))
    if feed is not None:
        query = query.where(Article.feed_id == feed.id)
    return [(article, mp_name) for article, mp_name in db.session.execute(query).all()]


def _channel(feed: Feed | None, last_modified: datetime | None) -> _Channel:
    updated = last_modified or now().replace(microsecond=0)
    if feed is None:
        return _Channel(None, ALL_FEEDS_TITLE,
                        "Articles collected from every feed of this WeRSS Cascade parent.",
                        "", updated)
    title = clean_text(feed.mp_name) or feed.id
    description = clean_text(feed.mp_intro) or f"Articles collected from {title}."
    return _Channel(feed.id, title, description, _http_url(feed.mp_cover), updated)


def _item(article: Article, mp_name: str, qualify: bool) -> _Item:
    # Article ids are unique only within a feed: the all-feeds document qualifies them.
    guid = f"{article.feed_id}:{article.article_id}" if qualify else article.article_id
    published = (from_unix(article.publish_time) if article.publish_time
                 else article.created_at.replace(microsecond=0))
    return _Item(
        guid=clean_text(guid),
        atom_id=f"urn:werss:article:{quote(article.feed_id, safe='')}:"
                f"{quote(article.article_id, safe='')}",
        title=clean_text(article.title),
        url=_http_url(article.url),
        image=_http_url(article.pic_url),
        description=clean_text(article.description),
        content=clean_text(article.content) or None,
        published=published,
        source_id=article.feed_id,
        source_name=clean_text(mp_name) or article.feed_id,
    )


def _http_url(value: str | None) -> str:
    """Keep only absolute http(s) URLs: anything else would be a broken or unsafe link."""
    value = clean_text(value).strip()
    return value if value.lower().startswith(("http://", "https://")) else ""


def _image_type(url: str) -> str:
    """Guess an image's media type; WeChat puts it in ?wx_fmt=, others in the extension."""
    parts = urlsplit(url)
    wx_fmt = (parse_qs(parts.query).get("wx_fmt") or [""])[0].lower()
    if wx_fmt:
        return "image/jpeg" if wx_fmt == "jpg" else f"image/{wx_fmt}"
    guessed, _ = mimetypes.guess_type(parts.path)
    return guessed if guessed and guessed.startswith("image/") else "image/jpeg"


def _feed_url(base_url: str, feed_id: str, kind: str) -> str:
    return f"{base_url.rstrip('/')}/feed/{quote(feed_id, safe='')}.{kind}"


def _rfc822(moment: datetime) -> str:
    return format_datetime(moment, usegmt=True)


def _rfc3339(moment: datetime) -> str:
    return isoformat_z(moment)


def _add(parent: ET.Element, tag: str, text: str | None = None, **attrib: str) -> ET.Element:
    element = ET.SubElement(parent, tag, {name: clean_text(v) for name, v in attrib.items()})
    if text is not None:
        element.text = clean_text(text)
    return element


def _xml(root: ET.Element) -> bytes:
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def render_rss(channel: _Channel, items: list[_Item], base_url: str, self_url: str) -> bytes:
    """Render RSS 2.0 with content:encoded for full text and atom:link to itself."""
    # Prefixed names with their xmlns declared on the root keep ElementTree's global
    # namespace registry untouched and the output readable.
    root = ET.Element("rss", {"version": "2.0", "xmlns:atom": ATOM_NS,
                              "xmlns:content": CONTENT_NS, "xmlns:dc": DC_NS})
    head = _add(root, "channel")
    _add(head, "title", channel.title)
    _add(head, "link", self_url)
    _add(head, "description", channel.description)
    _add(head, "atom:link", href=self_url, rel="self", type="application/rss+xml")
    _add(head, "generator", GENERATOR)
    _add(head, "lastBuildDate", _rfc822(channel.updated))
    if channel.image:
        image = _add(head, "image")
        _add(image, "url", channel.image)
        _add(image, "title", channel.title)
        _add(image, "link", self_url)
    for item in items:
        entry = _add(head, "item")
        _add(entry, "title", item.title)
        if item.url:
            _add(entry, "link", item.url)
        _add(entry, "guid", item.guid, isPermaLink="false")
        _add(entry, "pubDate", _rfc822(item.published))
        _add(entry, "dc:creator", item.source_name)
        if item.description or not item.content:
            _add(entry, "description", item.description)
        if item.content:
            _add(entry, "content:encoded", item.content)
        if item.image:
            _add(entry, "enclosure", url=item.image, length="0", type=_image_type(item.image))
        if channel.feed_id is None:
            _add(entry, "source", item.source_name,
                 url=_feed_url(base_url, item.source_id, RSS))
    return _xml(root)


def render_atom(channel: _Channel, items: list[_Item], base_url: str, self_url: str) -> bytes:
    """Render Atom 1.0; entries carry the full text as HTML content when there is one."""
    root = ET.Element("feed", {"xmlns": ATOM_NS})
    _add(root, "id", f"urn:werss:feed:{quote(channel.feed_id, safe='')}"
         if channel.feed_id is not None else "urn:werss:feed:all")
    _add(root, "title", channel.title)
    _add(root, "subtitle", channel.description)
    _add(root, "updated", _rfc3339(channel.updated))
    _add(root, "link", rel="self", type="application/atom+xml", href=self_url)
    author = _add(root, "author")
    _add(author, "name", channel.title)
    _add(root, "generator", GENERATOR)
    if channel.image:
        _add(root, "icon", channel.image)
        _add(root, "logo", channel.image)
    for item in items:
        entry = _add(root, "entry")
        _add(entry, "id", item.atom_id)
        _add(entry, "title", item.title, type="text")
        _add(entry, "published", _rfc3339(item.published))
        _add(entry, "updated", _rfc3339(item.published))
        if item.url:
            _add(entry, "link", rel="alternate", type="text/html", href=item.url)
        if item.image:
            _add(entry, "link", rel="enclosure", type=_image_type(item.image), href=item.image)
        writer = _add(entry, "author")
        _add(writer, "name", item.source_name)
        if item.content and item.description:
            _add(entry, "summary", item.description, type="html")
        if item.content or item.description:
            _add(entry, "content", item.content or item.description, type="html")
        if channel.feed_id is None:
            source = _add(entry, "source")
            _add(source, "id", f"urn:werss:feed:{quote(item.source_id, safe='')}")
            _add(source, "title", item.source_name)
            _add(source, "link", rel="self", type="application/atom+xml",
                 href=_feed_url(base_url, item.source_id, ATOM))
    return _xml(root)


def render_json_feed(channel: _Channel, items: list[_Item], base_url: str,
                     self_url: str) -> bytes:
    """Render JSON Feed 1.1; content_html is the full text, else the description."""
    document: dict = {
        "version": JSON_FEED_VERSION,
        "title": channel.title,
        "feed_url": self_url,
        "description": channel.description,
        "authors": [{"name": channel.title}],
    }
    if channel.image:
        document["icon"] = channel.image
    document["items"] = [_json_item(item) for item in items]
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _json_item(item: _Item) -> dict:
    entry: dict = {"id": item.guid}
    if item.url:
        entry["url"] = item.url
    entry["title"] = item.title
    entry["content_html"] = item.content or item.description
    if item.content and item.description:
        entry["summary"] = item.description
    if item.image:
        entry["image"] = item.image
    entry["date_published"] = _rfc3339(item.published)
    entry["authors"] = [{"name": item.source_name}]
    return entry
