"""The child's Python API for a manual sync, as the seed guide's example calls it.

The guide's "手动触发同步（Python）" snippet works with only its import line changed::

    import asyncio
    from child.cascade_sync import cascade_sync_service

    async def manual_sync():
        cascade_sync_service.initialize()
        await cascade_sync_service.full_sync()

    asyncio.run(manual_sync())

Without asyncio, ``cascade_sync_service.sync_now()`` does the same and returns the same
counts. Configuration is read as ``werss-child`` reads it (``CASCADE_*`` variables,
``CASCADE_CONFIG`` or ``./config.yaml``). See docs/CHILD.md ("A manual sync from Python").
"""

from __future__ import annotations

import asyncio
import threading

from .config import ChildConfig, ConfigError, load_config

__all__ = ["CascadeSyncService", "cascade_sync_service", "ConfigError"]


class CascadeSyncService:
    """One child's manual sync: a heartbeat, then every feed and message task cached."""

    def __init__(self):
        self.config: ChildConfig | None = None
        self._agent = None
        self._lock = threading.Lock()

    def initialize(self, config_file: str | None = None, environ=None) -> ChildConfig:
        """Read the configuration (again, if called twice).

        :raises ConfigError: one line naming the key and what is wrong.
        """
        config = load_config(config_file, environ)
        if not config.enabled:
            raise ConfigError("cascade is disabled (CASCADE_ENABLED / cascade.enabled is false)")
        with self._lock:
            self.close()
            self.config = config
        return config

    def _ensure_agent(self):
        from .agent import Agent

        with self._lock:
            if self.config is None:
                raise RuntimeError("call cascade_sync_service.initialize() first")
            if self._agent is None:
                self._agent = Agent(self.config)
            return self._agent

    def sync_now(self) -> dict:
        """Sync once, blocking: ``{feeds, tasks, cached_feeds, cached_tasks}``.

        :raises child.errors.ParentError: the parent refused or could not be reached.
        """
        return self._ensure_agent().sync_once(full=True)

    async def full_sync(self) -> dict:
        """Sync once without blocking the event loop (the HTTP calls run in a thread)."""
        return await asyncio.to_thread(self.sync_now)

    def close(self) -> None:
        """Release the local cache (initialize() and the next sync open it again)."""
        agent, self._agent = self._agent, None
        if agent is not None:
            agent.close()


cascade_sync_service = CascadeSyncService()
