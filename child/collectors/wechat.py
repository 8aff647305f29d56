"""WeChat official accounts (公众号), listed as WeRSS lists them.

``appmsgpublish`` ("web" mode, WeRSS's default) or ``appmsg`` ("api" mode), five items a
page. A feed this child never collected gets up to ``wechat_max_pages`` pages; afterwards
``wechat_pages_per_run``, and paging stops after the first page holding an article it
already has. Articles keep WeRSS's ids (``aid``) so every node stores an article once.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

from ..wechat.api import (
    PAGE_SIZE, WechatError, WechatInvalidAccountError, WechatRateLimitedError,
    WechatSessionExpiredError,
)
from .base import MAX_ARTICLES, CollectedArticle, CollectError

log = logging.getLogger(__name__)


def _rate_limited(manager, error: Exception) -> CollectError:
    until = datetime.fromtimestamp(manager.block(), timezone.utc)
    return CollectError(f"{error}; this node pauses WeChat work until {until.isoformat()}",
                        rate_limited_until=until)


def session_lost(reason: str) -> CollectError:
    return CollectError(f"WeChat session expired on this node ({reason}); handed to another node",
                        action="release")


def build(cache, session, timeout, *, wechat=None, task_id=None, **_context):
    """The collector of ``wechat`` feeds (``shared.sources.REGISTRY``): this child's login."""
    if wechat is None:
        raise CollectError("this child has no WeChat login manager", retryable=False)
    return WechatCollector(wechat, full_text=task_wants_full_text(wechat, task_id))


class WechatCollector:
    source_type = "wechat"

    def __init__(self, manager, full_text: bool | None = None):
        self.manager = manager
        self.config = manager.config
        self.cache = manager.cache
        self.full_text = self.config.wechat_full_text if full_text is None else full_text

    def _session(self):
        session = self.manager.session()
        if session is None:
            raise session_lost("no valid login")
        if self.manager.blocked():
            until = datetime.fromtimestamp(self.manager.blocked_until, timezone.utc)
            raise CollectError("this node is cooling down after WeChat's frequency control",
                               rate_limited_until=until)
        return session

    def collect(self, feed: dict) -> list[CollectedArticle]:
        fakeid = (feed.get("faker_id") or "").strip()
        if not fakeid:
            raise CollectError(f"feed {feed.get('id')} has no faker_id", retryable=False,
                               result_extra={"feed_invalid": True})
        self._session()
        with self.manager.collecting:
            self._session()  # it may have expired or cooled down while this lease waited
            self.manager.pause("account")
            try:
                return self._collect(feed, fakeid)
            finally:
                self.manager.account_done()

    def _collect(self, feed: dict, fakeid: str) -> list[CollectedArticle]:
        feed_id = str(feed["id"])
        scope = f"wechat:{feed_id}"
        first = self.cache.get_meta(f"wechat.collected.{feed_id}") is None
        pages = self.config.wechat_max_pages if first else self.config.wechat_pages_per_run
        items: list[dict] = []
        for page in range(pages):
            session = self._session()
            self.manager.pause("page")
            try:
                found = self.manager.api.list_page(session, fakeid, page, self.config.wechat_mode)
            except WechatRateLimitedError as exc:
                raise _rate_limited(self.manager, exc) from None
            except WechatSessionExpiredError as exc:
                self.manager.mark_expired(str(exc))
                raise session_lost(str(exc)) from None
            except WechatInvalidAccountError as exc:
                raise CollectError(str(exc), retryable=False,
                                   result_extra={"feed_invalid": True}) from None
            except WechatError as exc:
                raise CollectError(str(exc), action="fail") from None
            fresh = [item for item in found if item.get("aid") and not item.get("is_deleted")]
            items.extend(fresh)
            ids = [str(item["aid"]) for item in fresh]
            if len(found) < PAGE_SIZE:
                break  # the account has no older articles
            if ids and self.cache.unseen(scope, ids) != set(ids):
                break  # this page holds an article already collected: the rest are older
        articles = self._articles(feed_id, items)
        self.cache.mark_seen(scope, [a.id for a in articles])
        self.cache.set_meta(f"wechat.collected.{feed_id}", "1")
        return articles

    def _articles(self, feed_id: str, items: list[dict]) -> list[CollectedArticle]:
        articles, seen = [], set()
        for item in items:
            aid = str(item["aid"])
            if aid in seen:
                continue
            seen.add(aid)
            content = None
            if self.full_text and item.get("link"):
                content = self._content(item["link"])
            articles.append(CollectedArticle.fitted(
                id=aid, mp_id=feed_id, title=str(item.get("title") or ""),
                url=str(item.get("link") or ""), pic_url=str(item.get("cover") or ""),
                description=str(item.get("digest") or ""), content=content,
                publish_time=int(item.get("update_time") or item.get("create_time") or 0),
                wechat=_wechat_fields(item)))
        articles.sort(key=lambda a: a.publish_time, reverse=True)
        return articles[:MAX_ARTICLES]

    def _content(self, link: str) -> str | None:
        session = self._session()
        try:
            content = self.manager.api.article_content(session, link)
        except WechatRateLimitedError as exc:
            raise _rate_limited(self.manager, exc) from None
        self.manager.pause("article")
        return content


def _wechat_fields(item: dict) -> dict:
    fields = {}
    for name in ("item_show_type", "copyright_stat", "create_time", "update_time"):
        value = item.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 2**33:
            fields[name] = value
    return fields


def task_wants_full_text(manager, task_id: str | None) -> bool:
    """Full text when the child's setting says so, or the task's template shows ``content``."""
    if manager.config.wechat_full_text:
        return True
    task = manager.cache.one("tasks", task_id) if task_id else None
    return "content" in str((task or {}).get("message_template") or "")
