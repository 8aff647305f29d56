"""The durable outbox: every write to the parent is stored first, then sent until it lands.

Each entry keeps one Idempotency-Key for its whole life, so a retry after a timeout, a
parent restart or a ``kill -9`` of the child is applied once. Entries drain in order,
which keeps a lease's article uploads ahead of its completion.
"""

from __future__ import annotations

import logging
import threading

from shared import paths

from . import errors
from .cache import LocalCache
from .client import ParentClient, RetryPolicy, new_idempotency_key

log = logging.getLogger(__name__)
# Drain attempts are quick; the agent loop itself retries a failed drain later.
_DRAIN_RETRY = RetryPolicy(max_attempts=2, base_delay=0.2, max_delay=2.0)


class Outbox:
    def __init__(self, cache: LocalCache, client: ParentClient):
        self.cache = cache
        self.client = client
        # Lease threads and the flush job all drain: one at a time, or each would send the
        # same pending entries (harmless thanks to Idempotency-Key, but paid for twice).
        self._draining = threading.Lock()

    def add(self, kind: str, method: str, route: str, body, key: str) -> None:
        self.cache.enqueue(kind, method, route, body, key)

    def complete(self, lease_id: str, results: list[dict]) -> None:
        """Queue a lease's completion with the result of each of its feeds."""
        self.add("complete", "POST", paths.LEASE_COMPLETE.format(lease_id=lease_id), {"results": results},
                 new_idempotency_key())

    def fail(self, lease_id: str, error: str, *, retryable: bool = True, release: bool = False,
             rate_limited_until: str | None = None) -> None:
        """Queue a lease's failure; ``release`` hands it back unspent (no attempt used).

        ``rate_limited_until`` (ISO 8601) asks the parent to hold the work until then.
        """
        body: dict = {"error": error, "retryable": retryable}
        if release:
            body["release"] = True
        if rate_limited_until is not None:
            body["rate_limited_until"] = rate_limited_until
        self.add("fail", "POST", paths.LEASE_FAIL.format(lease_id=lease_id), body, new_idempotency_key())

    def depth(self) -> int:
        return self.cache.outbox_depth().get("pending", 0)

    def drain(self, limit: int = 200) -> int:
        """Send pending entries in order; stop at the first transient failure.

        Returns how many entries were settled (sent or given up on).

        :raises errors.AuthenticationError | errors.PermissionDeniedError: fatal for the agent.
        """
        with self._draining:
            return self._drain(limit)

    def _drain(self, limit: int) -> int:
        settled = 0
        for entry in self.cache.pending_outbox(limit):
            try:
                self.client.send_write(entry["method"], entry["route"], entry["body"],
                                       entry["key"], retry=_DRAIN_RETRY)
            except errors.ParentUnavailableError as exc:
                self.cache.outbox_retry_later(entry["id"], str(exc))
                return settled
            except errors.ConflictError as exc:
                settled += self._on_conflict(entry, exc)
                continue
            except (errors.AuthenticationError, errors.PermissionDeniedError) as exc:
                if errors.is_fatal(exc):
                    raise
                # e.g. 403 for a lease of another node (the data directory outlived its
                # node): it will never be accepted, and must not block what follows.
                log.error("parent refused %s %s for good: %s", entry["kind"], entry["route"], exc)
                self.cache.outbox_reject(entry["id"], str(exc))
                settled += 1
                continue
            except errors.ParentError as exc:
                # 4xx other than the above: it will never be accepted as it is.
                log.error("parent rejected %s %s for good: %s", entry["kind"], entry["route"], exc)
                self.cache.outbox_reject(entry["id"], str(exc))
                settled += 1
                continue
            self.cache.outbox_done(entry["id"])
            settled += 1
        return settled

    def _on_conflict(self, entry: dict, exc: errors.ConflictError) -> int:
        if entry["kind"] == "articles" and entry["body"].get("lease_id"):
            # The lease is gone but the articles are real: store them without it.
            body = {key: value for key, value in entry["body"].items() if key != "lease_id"}
            self.cache.outbox_rewrite(entry["id"], entry["route"], body, entry["key"] + "-unleased")
            log.warning("lease lost before its articles were uploaded; uploading them unleased")
            return 0
        log.warning("%s for a lost lease dropped (another node redoes the work): %s",
                    entry["kind"], exc)
        self.cache.outbox_done(entry["id"])
        return 1
