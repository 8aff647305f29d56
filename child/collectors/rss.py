"""RSS 2.0, RSS 1.0 and Atom sources: fetched with requests, parsed with feedparser.

feedparser never fetches anything itself: it gets the body as a stream (a plain string
could make it open a URL or a local file). The fetch sends the cached ETag and
Last-Modified, follows at most ``max_redirects`` redirects, caps the body size and the
whole download time, and turns every failure into a CollectError saying whether a retry
can help.
"""

from __future__ import annotations

import calendar
import hashlib
import io
import logging
import re
import time
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser
from typing import Callable
from urllib.parse import urljoin, urlsplit

import feedparser
import requests
import urllib3
from feedparser.exceptions import ThingsNobodyCaresAboutButMe
from requests.structures import CaseInsensitiveDict

from .. import __version__
from ..addresses import PrivateAddressError, check_public_url, describe_url
from .base import MAX_ARTICLES, MAX_ID, CollectedArticle, CollectError

log = logging.getLogger(__name__)

MAX_BYTES = 10 * 1024 * 1024
MAX_REDIRECTS = 5
MAX_RATE_LIMIT = timedelta(days=1)  # a Retry-After beyond this is a misconfigured server
REDIRECT_STATUSES = {301, 302, 303, 307, 308}
RETRYABLE_CLIENT_STATUSES = {408, 425, 429}
ACCEPT = ("application/rss+xml, application/atom+xml, application/rdf+xml;q=0.9, "
          "application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5")


def build(cache, session, timeout, *, allow_private_addresses: bool = False, **_context):
    """The collector of ``rss`` feeds (``shared.sources.REGISTRY``)."""
    return RssCollector(cache, session, timeout, allow_private_addresses=allow_private_addresses)


class RssCollector:
    """Collect one RSS/Atom feed per call; conditional GET keeps repeated polls cheap."""

    source_type = "rss"

    def __init__(self, cache, session: requests.Session, timeout: float = 20, *,
                 max_bytes: int = MAX_BYTES, max_redirects: int = MAX_REDIRECTS,
                 total_timeout: float | None = None, allow_private_addresses: bool = False,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.cache = cache
        self.session = session
        self.timeout = timeout
        # The read timeout is per socket read: a server trickling bytes needs a total bound.
        self.total_timeout = total_timeout if total_timeout is not None else 3 * timeout
        self.max_bytes = max_bytes
        self.max_redirects = max_redirects
        self.allow_private_addresses = allow_private_addresses
        self.clock = clock

    def collect(self, feed: dict) -> list[CollectedArticle]:
        url = (feed.get("source_url") or "").strip()
        if urlsplit(url).scheme.lower() not in ("http", "https"):
            raise CollectError(f"feed {feed.get('id')} has no http(s) source_url",
                               retryable=False)
        etag, last_modified = self.cache.validators(url)
        fetched = self._fetch(url, etag, last_modified)
        if fetched is None:
            log.debug("%s not modified", _describe(url))
            return []
        body, headers = fetched
        body, replaced = _replace_impossible_characters(body)
        if replaced:
            # One such reference used to make the whole feed unparseable on every run.
            log.warning("%s: replaced %d character reference(s) to no character (e.g. a lone "
                        "surrogate) with U+FFFD", _describe(url), replaced)
        try:
            # Relative links (and RSS guids, which feedparser treats as links) resolve
            # against the configured URL, not the redirect target: ids must not change when
            # a child is sent to another mirror.
            parsed = feedparser.parse(io.BytesIO(body), response_headers={
                "content-type": headers.get("Content-Type", ""), "content-location": url})
        except Exception as exc:  # feedparser reports most problems as bozo, not all
            raise CollectError(f"{_describe(url)} could not be parsed: {_one_line(exc)}") from None
        # A truncated document can leave an empty shell of an entry: nothing to collect.
        entries = [e for e in parsed.get("entries") or []
                   if any(e.get(k) for k in ("title", "link", "id", "summary", "content"))]
        if not entries:
            problem = parsed.get("bozo_exception") if parsed.get("bozo") else None
            if problem is not None and not isinstance(problem, ThingsNobodyCaresAboutButMe):
                raise CollectError(f"{_describe(url)} is not a readable feed: {_one_line(problem)}")
            if not parsed.get("version"):
                raise CollectError(f"{_describe(url)} is not an RSS or Atom feed")
        articles = _articles(str(feed["id"]), entries, url)
        self.cache.set_validators(url, headers.get("ETag"), headers.get("Last-Modified"))
        return articles

    def _fetch(self, url: str, etag: str | None,
               last_modified: str | None) -> tuple[bytes, CaseInsensitiveDict] | None:
        """Return (body, headers), or None for 304 Not Modified."""
        headers = {"Accept": ACCEPT}
        if str(self.session.headers.get("User-Agent", "")).startswith("python-requests"):
            headers["User-Agent"] = f"werss-child/{__version__}"  # some hosts refuse the default
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        deadline = time.monotonic() + self.total_timeout
        current = url
        for _ in range(self.max_redirects + 1):
            if not self.allow_private_addresses:
                try:
                    check_public_url(current)
                except PrivateAddressError as exc:
                    what = "the source" if current == url else "a redirect"
                    raise CollectError(f"{_describe(current)} refused ({what}): {exc}",
                                       retryable=False) from None
            try:
                response = self.session.get(current, headers=headers, stream=True,
                                            allow_redirects=False,
                                            timeout=(self.timeout, self.timeout))
            except requests.Timeout:
                raise CollectError(f"{_describe(current)} timed out") from None
            except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema,
                    requests.exceptions.MissingSchema) as exc:
                raise CollectError(f"{_describe(current)} is not a usable URL: "
                                   f"{type(exc).__name__}", retryable=False) from None
            except requests.RequestException as exc:
                raise CollectError(f"{_describe(current)} could not be reached: "
                                   f"{type(exc).__name__}") from None
            with response:
                status = response.status_code
                if status in REDIRECT_STATUSES and response.headers.get("Location"):
                    target = urljoin(current, response.headers["Location"])
                    if urlsplit(target).scheme.lower() not in ("http", "https"):
                        raise CollectError(f"{_describe(current)} redirects to a non-HTTP URL",
                                           retryable=False)
                    current = target
                    continue
                if status == 304:
                    return None
                if 200 <= status < 300:
                    body = self._read(response, current, deadline)
                    return body, response.headers
                raise self._status_error(response, current)
        raise CollectError(f"{_describe(url)} redirected more than {self.max_redirects} times",
                           retryable=False)

    def _read(self, response: requests.Response, url: str, deadline: float) -> bytes:
        declared = response.headers.get("Content-Length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > self.max_bytes:
            raise CollectError(f"{_describe(url)} is larger than {self.max_bytes} bytes",
                               retryable=False)
        raw = response.raw
        # read1 returns what has arrived (urllib3 2), so a trickle cannot outlast the deadline.
        read = raw.read1 if hasattr(raw, "read1") else raw.read
        chunks, size = [], 0
        try:
            while True:
                # Decoded bytes are counted, so a small gzip bomb is caught too.
                chunk = read(64 * 1024, decode_content=True)
                if not chunk:
                    break
                size += len(chunk)
                if size > self.max_bytes:
                    raise CollectError(f"{_describe(url)} is larger than {self.max_bytes} bytes",
                                       retryable=False)
                if time.monotonic() > deadline:
                    raise CollectError(f"{_describe(url)} took longer than "
                                       f"{self.total_timeout:g} s to download")
                chunks.append(chunk)
        except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as exc:
            raise CollectError(f"{_describe(url)} broke off while downloading: "
                               f"{type(exc).__name__}") from None
        return b"".join(chunks)

    def _status_error(self, response: requests.Response, url: str) -> CollectError:
        status = response.status_code
        message = f"{_describe(url)} answered HTTP {status}"
        if status in (429, 503):
            until = _retry_after(response.headers.get("Retry-After"), self.clock())
            if until is not None:
                message += f"; retry after {until.isoformat()}"
            return CollectError(message, retryable=True, rate_limited_until=until)
        if status in (404, 410):
            return CollectError(message, retryable=False)
        if status >= 500 or status in RETRYABLE_CLIENT_STATUSES:
            return CollectError(message, retryable=True)
        return CollectError(message, retryable=False)


_CHAR_REFERENCE = re.compile(rb"&#(?:[xX]([0-9a-fA-F]{1,8})|([0-9]{1,10}));")


def _replace_impossible_characters(body: bytes) -> tuple[bytes, int]:
    """Replace references to lone surrogates, NUL and code points past U+10FFFF with U+FFFD.

    Only the bad character goes: the rest of its title or description, and every other
    item, are collected as usual.
    """
    if b"&#" not in body:
        return body, 0
    count = 0

    def replace(match: re.Match) -> bytes:
        nonlocal count
        hex_digits, decimal = match.groups()
        value = int(hex_digits, 16) if hex_digits else int(decimal)
        if value == 0 or 0xD800 <= value <= 0xDFFF or value > 0x10FFFF:
            count += 1
            return b"&#xFFFD;"
        return match.group(0)

    return _CHAR_REFERENCE.sub(replace, body), count


def _retry_after(value: str | None, now: datetime) -> datetime | None:
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        until = now + timedelta(seconds=int(value[:9]))
    else:
        try:
            until = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if until.tzinfo is None:
            until = until.replace(tzinfo=timezone.utc)
    return min(max(until, now), now + MAX_RATE_LIMIT)


def _articles(mp_id: str, entries: list, base_url: str) -> list[CollectedArticle]:
    articles, seen = [], set()
    for entry in entries:
        article = _article(mp_id, entry, base_url)
        if article.id not in seen:  # some feeds repeat an entry; push it once
            seen.add(article.id)
            articles.append(article)
    # Stable: entries without a date keep the feed's own order, after the dated ones.
    articles.sort(key=lambda a: a.publish_time, reverse=True)
    return articles[:MAX_ARTICLES]


def _article(mp_id: str, entry, base_url: str) -> CollectedArticle:
    title = entry.get("title") or ""
    link = entry.get("link") or ""
    content_list = entry.get("content") or []
    content = content_list[0].get("value") if content_list else None
    summary = entry.get("summary") or ""
    parsed_time = entry.get("published_parsed") or entry.get("updated_parsed")
    publish_time = calendar.timegm(parsed_time) if parsed_time else 0
    return CollectedArticle.fitted(
        id=_article_id(entry, title, link), mp_id=mp_id, title=title,
        url=urljoin(base_url, link) if link else "",
        pic_url=_picture(entry, content, summary, link or base_url),
        description=summary, content=content, publish_time=publish_time,
    )


def _article_id(entry, title: str, link: str) -> str:
    """Return an id every child derives alike: the guid, else the link, else a hash."""
    for candidate in ((entry.get("id") or "").strip(), link.strip()):
        if candidate and len(candidate) <= MAX_ID and "\x00" not in candidate:
            return candidate
        if candidate:
            return "sha256:" + hashlib.sha256(candidate.encode("utf-8")).hexdigest()
    published = entry.get("published") or entry.get("updated") or ""
    digest = hashlib.sha256(f"{title}\n{published}".encode("utf-8")).hexdigest()
    return "sha256:" + digest


def _picture(entry, content: str | None, summary: str, base_url: str) -> str:
    candidates = [item.get("url") for item in entry.get("media_thumbnail") or []]
    candidates += [item.get("url") for item in entry.get("media_content") or []
                   if item.get("medium") == "image"
                   or (item.get("type") or "").startswith("image/")]
    candidates += [item.get("href") for item in entry.get("enclosures") or []
                   if (item.get("type") or "").startswith("image/")]
    candidates += [_first_img(content or ""), _first_img(summary)]
    for candidate in candidates:
        if candidate:
            url = urljoin(base_url, candidate.strip())
            if urlsplit(url).scheme.lower() in ("http", "https"):
                return url
    return ""


class _FirstImage(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.src: str | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "img" and self.src is None:
            self.src = dict(attrs).get("src") or None


def _first_img(html: str) -> str | None:
    if "<img" not in html.lower():
        return None
    parser = _FirstImage()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # html.parser is lenient; a failure just means no picture
        return parser.src
    return parser.src


def _one_line(error) -> str:
    return " ".join(str(error or "unknown error").split())[:300]


def _describe(url: str) -> str:
    """Name a feed by scheme, host and path: private feeds carry keys in the query."""
    return describe_url(url, with_path=True, unknown="the source URL")
