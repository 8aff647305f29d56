"""Source types of feeds: what a feed is collected from, and which collector does it.

The parent validates and schedules feeds by these names; the child builds the collector
named here at the feed's first collection. Adding a source type is a module in
``child/collectors/`` plus one line in ``REGISTRY`` (docs/DEVELOPING.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from .registry import Names

WECHAT = "wechat"
RSS = "rss"


@dataclass(frozen=True)
class Source:
    # "module:function" of the factory, called as factory(cache, session, timeout, **context).
    collector: str
    # The feed field that says what to collect: the feed cannot be saved without it.
    identity: str = "source_url"


# One line per source type; the first is a feed's default.
REGISTRY: dict[str, Source] = {
    WECHAT: Source("child.collectors.wechat:build", identity="faker_id"),
    RSS: Source("child.collectors.rss:build"),
}
SOURCE_TYPES = Names(REGISTRY)


def identity_of(source_type: str | None) -> str | None:
    """The field a feed of ``source_type`` is identified by, or None for an unknown type."""
    source = REGISTRY.get(source_type or "")
    return source.identity if source else None
