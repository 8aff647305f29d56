"""What every collector returns and raises: the article as uploaded, and CollectError."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

MAX_ARTICLES = 50

# The parent refuses a whole batch when one article breaks these (shared/lease_schemas.py
# ArticleSchema), so collectors fit articles to them instead.
MAX_ID = 255
MAX_TITLE = 1000
MAX_URL = 2000
MAX_DESCRIPTION = 20_000
MAX_CONTENT = 2_000_000
MAX_PUBLISH_TIME = 2**33


class CollectError(Exception):
    """A source could not be collected; ``retryable`` says whether trying again may help."""

    retryable: bool = True
    rate_limited_until: datetime | None = None

    def __init__(self, message: str, retryable: bool = True,
                 rate_limited_until: datetime | None = None, *, action: str | None = None,
                 result_extra: dict | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.rate_limited_until = rate_limited_until
        # "release": hand the lease back unspent (another node takes it, no attempt
        # counted); "fail": fail the whole allocation; None: report it in the feed's result.
        self.action = action
        # Extra fields of the feed's result (e.g. feed_invalid for the parent).
        self.result_extra = result_extra or {}


@dataclass(frozen=True)
class CollectedArticle:
    id: str
    mp_id: str
    title: str
    url: str
    pic_url: str
    description: str
    content: str | None
    publish_time: int
    wechat: dict | None = None  # item_show_type, copyright_stat, create/update time

    @classmethod
    def fitted(cls, *, id: str, mp_id: str, title: str = "", url: str = "", pic_url: str = "",
               description: str = "", content: str | None = None,
               publish_time: int = 0, wechat: dict | None = None) -> CollectedArticle:
        """Build an article trimmed to what the parent accepts (no NULs, bounded lengths)."""
        url = _clean(url).strip()
        if len(url) > MAX_URL or not url.lower().startswith(("http://", "https://")):
            url = ""
        pic_url = _clean(pic_url).strip()
        if len(pic_url) > MAX_URL:
            pic_url = ""
        content = _clean(content) if content else None
        if content is not None and len(content) > MAX_CONTENT:
            content = None  # a cut HTML document is worse than none; the url still leads to it
        return cls(
            id=_clean(id)[:MAX_ID], mp_id=str(mp_id), title=_clean(title)[:MAX_TITLE], url=url,
            pic_url=pic_url, description=_clean(description)[:MAX_DESCRIPTION],
            content=content, publish_time=min(max(int(publish_time or 0), 0), MAX_PUBLISH_TIME),
            wechat=wechat,
        )

    def to_wire(self) -> dict:
        """Return the article as ``POST /cascade/articles`` takes it."""
        wire = {"id": self.id, "mp_id": self.mp_id, "title": self.title, "url": self.url,
                "pic_url": self.pic_url, "description": self.description,
                "publish_time": self.publish_time}
        if self.content is not None:
            wire["content"] = self.content
        if self.wechat is not None:
            wire["wechat"] = self.wechat
        return wire


class Collector(Protocol):
    source_type: str

    def collect(self, feed: dict) -> list[CollectedArticle]:
        """Return the feed's current articles, newest first, at most ``MAX_ARTICLES``.

        :raises CollectError: when the source cannot be fetched or read.
        """
        ...


def _clean(text: str | None) -> str:
    return (text or "").replace("\x00", "")
