"""Collectors turn a feed into articles; one per source type, chosen by ``collector_for``."""

from __future__ import annotations

import requests

from .base import CollectedArticle, CollectError, Collector

__all__ = ["CollectedArticle", "CollectError", "Collector", "collector_for"]


def collector_for(source_type: str, cache, session: requests.Session,
                  timeout: float = 20, *, allow_private_addresses: bool = False) -> Collector:
    """Return the collector for ``source_type``.

    :raises CollectError: (not retryable) for a source type this child cannot collect.
    """
    if source_type == "rss":
        from .rss import RssCollector

        return RssCollector(cache, session, timeout,
                            allow_private_addresses=allow_private_addresses)
    if source_type == "wechat":
        raise CollectError("WeChat (公众号) sources are not supported by this child yet; "
                           "the WeChat collector comes in a later release", retryable=False)
    raise CollectError(f"unsupported source type {source_type!r}", retryable=False)
