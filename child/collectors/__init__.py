"""Collectors turn a feed into articles; one per source type, chosen by ``collector_for``.

Adding a source type is one module here plus one line in ``shared.sources.REGISTRY``, which
names the module's factory; it is imported at the first collection (docs/DEVELOPING.md).
"""

from __future__ import annotations

import requests

from shared import sources
from shared.registry import Resolved

from .base import CollectedArticle, CollectError, Collector

__all__ = ["CollectedArticle", "CollectError", "Collector", "collector_for", "COLLECTORS"]


# source_type -> factory(cache, session, timeout, **context), from the shared registry.
COLLECTORS = Resolved(sources.REGISTRY, "collector")


def collector_for(source_type: str, cache, session: requests.Session,
                  timeout: float = 20, **context) -> Collector:
    """Return the collector for ``source_type``.

    :raises CollectError: (not retryable) for a source type this child cannot collect.
    """
    if source_type not in COLLECTORS:
        raise CollectError(f"unsupported source type {source_type!r}", retryable=False)
    return COLLECTORS[source_type](cache, session, timeout, **context)
