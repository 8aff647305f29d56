"""Keep the local cache's feeds and message tasks in step with the parent.

A first sync (or one after the cursor expired) pulls the whole list page by page; later
syncs ask only for the changes since the cursor (docs/PROTOCOL.md, "Sync").
"""

from __future__ import annotations

import logging

from shared import paths

from . import errors
from .cache import LocalCache
from .client import ParentClient

log = logging.getLogger("werss.child")
PULL_PAGE = 1000  # feeds per page of a full pull: the most the child holds at once


class Syncer:
    """Pull feeds and tasks into the cache: a paged full pull, then changes by cursor."""

    def __init__(self, cache: LocalCache, client: ParentClient, page_size: int = PULL_PAGE):
        self.cache = cache
        self.client = client
        self.page_size = page_size

    def sync(self, full: bool = False) -> dict:
        """Bring feeds, then tasks, up to date: ``{feeds, tasks, cached_feeds, cached_tasks}``.

        ``feeds``/``tasks`` count the rows written (a full pull) or changed (by cursor).
        """
        feeds = self._sync_table("feeds", paths.FEEDS, paths.FEED_CHANGES, full)
        tasks = self._sync_table("tasks", paths.MESSAGE_TASKS, paths.MESSAGE_TASK_CHANGES, full)
        return {"feeds": feeds, "tasks": tasks, "cached_feeds": self.cache.count("feeds"),
                "cached_tasks": self.cache.count("tasks")}

    def _sync_table(self, table: str, route: str, changes_route: str, full: bool) -> int:
        cursor = self.cache.get_meta(f"{table}.cursor")
        if full or not cursor:
            return self._full_pull(table, route)
        changed = 0
        etag = self.cache.get_meta(f"{table}.etag")
        while True:
            try:
                page = self.client.changes(changes_route, cursor, etag=etag)
            except errors.CursorExpiredError:
                log.info("%s cursor expired; doing a full pull", table)
                return self._sync_table(table, route, changes_route, full=True)
            if page is None:  # 304: still at the newest cursor
                return changed
            self.cache.apply_changes(table, page["items"], page["deleted"], page["cursor"],
                                     etag=page.get("etag"))
            changed += len(page["items"]) + len(page["deleted"])
            cursor, etag = page["cursor"], page.get("etag")
            if not page["has_more"]:
                return changed

    def _full_pull(self, table: str, route: str) -> int:
        """Pull the whole list page by page, writing each page in one transaction.

        Only one page is held at a time; rows the pull did not write are dropped at its
        end, and only then do its ETag and cursor replace the old ones, so an interrupted
        pull leaves a cache that the next sync repairs.
        """
        generation = self.cache.next_generation(table)
        page = self.client.pull_page(route, self.page_size,
                                     etag=self.cache.get_meta(f"{table}.etag"))
        if page.items is None:
            return self.cache.count(table)
        etag, cursor, count = page.etag, page.cursor, 0
        while True:
            if page.items:
                self.cache.write_page(table, page.items, generation)
            count += len(page.items)
            if not page.next_after:
                break
            after = page.next_after
            del page  # let the written page go before the next one arrives
            page = self.client.pull_page(route, self.page_size, after=after)
        self.cache.finish_full_pull(table, generation, etag, cursor)
        return count
