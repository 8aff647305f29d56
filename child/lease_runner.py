"""Run one lease: collect each feed, upload, ask the parent what to push, push, report.

Whether a task already pushed an article is the parent's to say (docs/WORK.md, "Push
each new article once"): the child uploads what it collected, the parent answers with the
deliveries to make (new articles, plus deliveries another child left unfinished), the
child pushes each with its delivery id as idempotency key and reports the outcome
through the outbox. Nothing is pushed that the parent did not hand out, so a child that
joins late, or takes a feed over, pushes no history.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Callable
from urllib.parse import quote, urlsplit, urlunsplit

from shared import paths
from shared.timeutil import isoformat_z

from . import errors
from .cache import LocalCache, TaskScopedValidators
from .client import ParentClient, RetryPolicy, new_idempotency_key
from .collectors.base import CollectedArticle, CollectError, Collector
from .outbox import Outbox

if TYPE_CHECKING:  # the notifiers (and jinja2) load with the first push, not at start
    from .notifiers.base import Notifier

log = logging.getLogger("werss.child")
ARTICLE_BATCH = 500
PUSH_ATTEMPTS = 3          # per run; the parent schedules further attempts
PUSH_BACKOFF_CAP = 30.0    # seconds between attempts within a run
_PARENT_RETRY = RetryPolicy(max_attempts=3, base_delay=0.5, max_delay=5.0)
_URL_SAFE = "!#$%&'()*+,/:;=?@[]~"


@dataclass
class LeaseWork:
    """One lease in hand: renewed past half its life, ``lost`` once the parent says so."""

    lease: dict
    claimed_at: float
    expires_at: float
    lost: threading.Event = field(default_factory=threading.Event)


class LeaseLostError(Exception):
    """The parent says this lease is no longer ours: stop without reporting."""


def repair_url(url: str) -> str:
    """Percent-encode what a URL may not hold as it is (spaces, non-ASCII), IDNA the host."""
    if not url:
        return url
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
        netloc = parts.netloc
        if host and not host.isascii():
            netloc = netloc.replace(host, host.encode("idna").decode("ascii"))
    except (ValueError, UnicodeError):
        return url
    return urlunsplit((parts.scheme, quote(netloc, safe=_URL_SAFE),
                       quote(parts.path, safe=_URL_SAFE), quote(parts.query, safe=_URL_SAFE),
                       quote(parts.fragment, safe=_URL_SAFE)))


def repaired_wire(article: CollectedArticle) -> dict:
    """The article as uploaded, with links the parent would refuse mended where possible."""
    wire = article.to_wire()
    for name in ("url", "pic_url"):
        wire[name] = repair_url(wire[name])
    return wire


@dataclass(kw_only=True)
class LeaseRunner:
    """Execute leases, one per call (called from the agent's lease threads).

    ``collector_for(source_type, task_id)`` and ``notifier_for(task)`` build the collector
    and notifier of each feed and task; ``flush()`` drains the outbox, so a report is sent
    as soon as it is stored; ``sleep`` (default: a stop cuts it short) paces retries.
    """

    cache: LocalCache
    client: ParentClient
    outbox: Outbox
    collector_for: Callable[[str, str], Collector]
    notifier_for: Callable[[dict], Notifier]
    flush: Callable[[], object]
    stop_event: threading.Event
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], object] | None = None

    def _pause(self, seconds: float) -> None:
        (self.sleep or self.stop_event.wait)(seconds)

    def run(self, work: LeaseWork) -> None:
        """Execute ``work``; an unexpected error fails the lease (retryable), never the thread."""
        try:
            self.execute(work)
        except Exception:  # noqa: BLE001 - one lease failing must not stop the others
            log.exception("lease %s failed unexpectedly", work.lease["lease_id"])
            self.fail(work, "the child hit an internal error", retryable=True)

    def fail(self, work: LeaseWork, error: str, retryable: bool, release: bool = False,
             rate_limited_until: datetime | None = None) -> None:
        """Report the lease failed (or handed back) and send the report now."""
        self.outbox.fail(work.lease["lease_id"], error, retryable=retryable, release=release,
                         rate_limited_until=(isoformat_z(rate_limited_until)
                                             if rate_limited_until else None))
        self.flush()

    def execute(self, work: LeaseWork) -> None:
        """Collect each leased feed, upload, push what the parent hands out, complete."""
        lease = work.lease
        task, lease_id = lease["task"], lease["lease_id"]
        results = []
        for feed in lease["feeds"]:
            if work.lost.is_set():
                log.warning("lease %s lost; stopping its work without reporting", lease_id)
                return
            try:
                articles = self.collector_for(feed.get("source_type", "rss"),
                                              task["id"]).collect(feed)
            except CollectError as exc:
                if exc.action in ("release", "fail"):
                    # release: the WeChat session expired, another node takes it unspent.
                    self.fail(work, str(exc), retryable=True, release=exc.action == "release")
                    return
                if exc.rate_limited_until:
                    self.fail(work, str(exc), retryable=True,
                              rate_limited_until=exc.rate_limited_until)
                    return
                results.append({**_result(feed, error=str(exc)), **exc.result_extra})
                continue
            try:
                results.append(self._feed(work, task, feed, articles))
            except LeaseLostError:
                work.lost.set()
                log.warning("lease %s lost; stopping its work without reporting", lease_id)
                return
        if work.lost.is_set():
            return
        self.outbox.complete(lease_id, results)
        self.flush()

    # -- one feed ------------------------------------------------------------------------------
    def _feed(self, work: LeaseWork, task: dict, feed: dict,
              articles: list[CollectedArticle]) -> dict:
        new, refused, deferred = self._upload(work, articles)
        plan = None
        if not deferred:
            plan = self._plan(work, feed["id"], [a.id for a in articles])
        if plan is None:
            # The parent did not take everything or could not answer: nothing is pushed
            # now, and the next run must see these articles again (no 304 from the source).
            self._forget_validators(task, feed)
            return _result(feed, articles=len(articles), new=new, refused=refused,
                           error="push deferred: the parent could not be reached; "
                                 "the next run pushes these articles")
        collected = {a.id: a for a in articles}
        pushed, errors_seen = 0, []
        for delivery in plan["deliveries"]:
            if work.lost.is_set():
                raise LeaseLostError()
            found = [collected.get(article_id) or _from_parent(delivery, article_id)
                     for article_id in delivery["article_ids"]]
            batch = [a for a in found if a is not None]
            sent, error = self._push(task, feed, delivery, batch)
            pushed += sent
            if error:
                errors_seen.append(error)
        if errors_seen:
            self._forget_validators(task, feed)
        return _result(feed, articles=len(articles), new=new, pushed=pushed, refused=refused,
                       error="; ".join(errors_seen)[:4000] if errors_seen else None)

    def _until_answered(self, work: LeaseWork, call):
        """Call the parent until it answers, while the lease lasts; None if it never did."""
        delay = 0.5
        while True:
            try:
                return call()
            except errors.ParentUnavailableError as exc:
                remaining = work.expires_at - self.clock()
                if (remaining <= delay + 1 or work.lost.is_set()
                        or self.stop_event.is_set()):
                    log.warning("the parent did not answer in the lease's time: %s", exc)
                    return None
                log.info("parent unavailable (%s); retrying in %.1fs", exc, delay)
                self._pause(delay)
                delay = min(10.0, delay * 2)

    def _upload(self, work: LeaseWork, articles: list[CollectedArticle]
                ) -> tuple[int, list[dict], bool]:
        """Upload in batches: (new, refused, deferred). A batch the parent cannot take in
        the lease's time waits in the outbox; refused articles are named, the rest of a
        batch is stored."""
        new, refused, deferred = 0, [], False
        for start in range(0, len(articles), ARTICLE_BATCH):
            batch = [repaired_wire(a) for a in articles[start:start + ARTICLE_BATCH]]
            body = {"lease_id": work.lease["lease_id"], "articles": batch}
            key = new_idempotency_key()
            try:
                response = self._until_answered(
                    work, lambda body=body, key=key: self.client.send_write(
                        "POST", paths.ARTICLES, body, key, retry=_PARENT_RETRY))
            except errors.ConflictError:
                response = None
            except (errors.InvalidRequestError, errors.PermissionDeniedError) as exc:
                if errors.is_fatal(exc) or isinstance(exc, errors.NotFoundError):
                    raise
                # Every article of the batch was refused: say which and why.
                details = exc.details if isinstance(exc.details, dict) else {}
                problems = details.get("articles") or {}
                refused += [_refusal(batch, index, problem)
                            for index, problem in sorted(problems.items(), key=_index)]
                continue
            if response is None:
                self.outbox.add("articles", "POST", paths.ARTICLES, body, key)
                deferred = True
                continue
            data = response.data or {}
            new += int(data.get("new") or 0)
            refused += [_refusal(batch, r.get("index"), r.get("errors"))
                        for r in data.get("refused") or []]
        for item in refused:
            log.warning("the parent refused article %s: %s", item["id"], item["reason"])
        return new, refused, deferred

    def _plan(self, work: LeaseWork, feed_id: str, article_ids: list[str]) -> dict | None:
        key = new_idempotency_key()
        try:
            plan = self._until_answered(work, lambda: self.client.plan_deliveries(
                work.lease["lease_id"], feed_id, article_ids, key, retry=_PARENT_RETRY))
        except errors.ConflictError:
            raise LeaseLostError() from None
        if plan is None:
            log.warning("cannot ask the parent what to push for feed %s", feed_id)
        return plan

    def _push(self, task: dict, feed: dict, delivery: dict,
              articles: list[CollectedArticle]) -> tuple[int, str | None]:
        """Push one delivery (retrying within this run), then report it: (pushed, error)."""
        from .notifiers.base import NotifyError

        delivery_id = delivery["delivery_id"]
        attempts, failure = 0, None
        while attempts < PUSH_ATTEMPTS:
            attempts += 1
            try:
                self.notifier_for(task).push(task, feed, articles, delivery_id=delivery_id)
            except NotifyError as exc:
                failure = exc
                if not exc.retryable or attempts >= PUSH_ATTEMPTS or self.stop_event.is_set():
                    break
                wait = min(PUSH_BACKOFF_CAP, 2.0 ** (attempts - 1))
                if exc.retry_after is not None:
                    if exc.retry_after > PUSH_BACKOFF_CAP:
                        break  # the parent schedules it for later
                    wait = exc.retry_after
                self._pause(random.uniform(wait / 2, wait) if exc.retry_after is None else wait)
                continue
            failure = None
            break
        if failure is None:
            self._report(delivery_id, {"status": "sent", "attempts": attempts})
            return len(articles), None
        self._report(delivery_id, {
            "status": "failed", "attempts": attempts, "retryable": failure.retryable,
            "retry_after": int(failure.retry_after) if failure.retry_after is not None else None,
            "vendor_code": (str(failure.vendor_code)[:64] if failure.vendor_code is not None
                            else None),
            "vendor_message": str(failure)[:1000]})
        return 0, f"push failed: {failure}"

    def _report(self, delivery_id: str, body: dict) -> None:
        # Durable before anything else happens: a kill -9 now still reports it later.
        self.outbox.add("delivery", "POST",
                        paths.DELIVERY_REPORT.format(delivery_id=delivery_id), body,
                        new_idempotency_key())
        self.flush()

    def _forget_validators(self, task: dict, feed: dict) -> None:
        if feed.get("source_url"):
            TaskScopedValidators(self.cache, task["id"]).forget(feed["source_url"])


def _index(item) -> int:
    try:
        return int(item[0])
    except (TypeError, ValueError):
        return 0


def _refusal(batch: list[dict], index, problem) -> dict:
    try:
        ident = batch[int(index)]["id"]
    except (TypeError, ValueError, IndexError, KeyError):
        ident = None
    if isinstance(problem, dict):
        reason = "; ".join(
            f"{field}: {' '.join(map(str, msgs if isinstance(msgs, list) else [msgs]))}"
            for field, msgs in problem.items())
    else:
        reason = str(problem)
    return {"id": ident, "reason": reason[:500]}


def _from_parent(delivery: dict, article_id: str) -> CollectedArticle | None:
    """An article of a delivery another child left: the parent's stored copy."""
    for wire in delivery.get("articles") or []:
        if wire.get("id") == article_id:
            return CollectedArticle(
                id=wire["id"], mp_id=wire.get("mp_id", ""), title=wire.get("title") or "",
                url=wire.get("url") or "", pic_url=wire.get("pic_url") or "",
                description=wire.get("description") or "", content=None,
                publish_time=int(wire.get("publish_time") or 0))
    return None


def _result(feed: dict, articles: int = 0, new: int = 0, pushed: int = 0,
            error: str | None = None, refused: list[dict] | None = None) -> dict:
    return {"mp_id": feed["id"], "mp_name": feed.get("mp_name", ""), "article_count": articles,
            "new_count": new, "pushed_count": pushed, "success": error is None,
            "error": error, "refused": (refused or [])[:100]}
