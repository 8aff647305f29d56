"""Collectors turn a feed into articles; one per source type, chosen by ``collector_for``."""

from __future__ import annotations

import requests

from .base import CollectedArticle, CollectError, Collector

__all__ = ["CollectedArticle", "CollectError", "Collector", "collector_for", "COLLECTORS"]


def _rss(cache, session, timeout, *, allow_private_addresses: bool = False, **_context):
    from .rss import RssCollector

    return RssCollector(cache, session, timeout,
                        allow_private_addresses=allow_private_addresses)


def _wechat(cache, session, timeout, *, wechat=None, task_id=None, **_context):
    from .wechat import WechatCollector, task_wants_full_text

    if wechat is None:
        raise CollectError("this child has no WeChat login manager", retryable=False)
    return WechatCollector(wechat, full_text=task_wants_full_text(wechat, task_id))


# source_type -> factory(cache, session, timeout, **context): one line per collector.
COLLECTORS = {
    "rss": _rss,
    "wechat": _wechat,
}


def collector_for(source_type: str, cache, session: requests.Session,
                  timeout: float = 20, **context) -> Collector:
    """Return the collector for ``source_type``.

    :raises CollectError: (not retryable) for a source type this child cannot collect.
    """
    factory = COLLECTORS.get(source_type)
    if factory is None:
        raise CollectError(f"unsupported source type {source_type!r}", retryable=False)
    return factory(cache, session, timeout, **context)
