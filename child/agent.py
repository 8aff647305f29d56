"""The agent's loops and lifecycle: heartbeat, sync, claim, renew, flush; start and stop.

Executing a lease is ``lease_runner.py``'s job and syncing the cache ``syncer.py``'s; the
agent schedules them. Waits are Event.wait() so a stop is immediate. Unrecoverable errors
(credentials rejected, node disabled) stop the agent with a clear message; everything
else is retried.
"""

from __future__ import annotations

import logging
import random
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

import requests
import schedule

from shared import jsonlog, paths
from shared.timeutil import isoformat_z, parse_iso

from . import __version__, errors
from .cache import LocalCache, TaskScopedValidators
from .client import ParentClient, new_idempotency_key
from .collectors import COLLECTORS, collector_for
from .config import ChildConfig
from .lease_runner import LeaseRunner, LeaseWork
from .outbox import Outbox
from .syncer import Syncer
from .wechat.manager import WechatManager

__all__ = ["Agent", "AgentStatus", "FatalError", "LeaseWork", "WrongParentError",
           "explain_fatal"]
log = logging.getLogger("werss.child")


class FatalError(Exception):
    """The parent refuses this node for good (exit code 3)."""


class WrongParentError(FatalError):
    """parent_api_url does not lead to a WeRSS parent (exit code 2: fix the configuration)."""


@dataclass(frozen=True)
class AgentStatus:
    """What the agent shows outside itself (the health listener), read at one moment."""

    last_contact_at: float | None  # the parent's last answer (time.time()), None: never
    heartbeat_interval: int
    leases_held: int
    outbox_depth: int
    draining: bool


def explain_fatal(error: errors.ParentError) -> str:
    if error.code == "node_disabled":
        return ("the parent says this node is disabled or deleted (node_disabled): "
                "enable it on the parent or create a new node and credentials")
    if error.code == "plain_auth_disabled":
        return ("the parent refuses plain AK-SK (plain_auth_disabled): "
                "set CASCADE_AUTH_MODE=signed")
    return (f"认证失败 — the parent rejected this node's credentials ({error.code or error.status}): "
            "check CASCADE_API_KEY / CASCADE_API_SECRET against the pair the parent issued "
            "(regenerating credentials on the parent invalidates the old pair)")


class Agent:
    def __init__(self, config: ChildConfig, client: ParentClient | None = None,
                 cache: LocalCache | None = None, session: requests.Session | None = None,
                 collector_factory: Callable | None = None,
                 notifier_factory: Callable | None = None,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], object] | None = None):
        """``collector_factory(source_type)`` and ``notifier_factory(task)`` replace the
        registries (tests); ``sleep`` is the pause between a lease's retries."""
        self.config = config
        self.clock = clock
        self.cache = cache or LocalCache(config.data_dir)
        self.client = client or ParentClient(config, user_agent=f"werss-child/{__version__}",
                                             clock=clock, sleep=self._sleep_unless_stopping)
        self.outbox = Outbox(self.cache, self.client)
        self.syncer = Syncer(self.cache, self.client)
        self.source_session = session or requests.Session()
        self.source_session.headers["User-Agent"] = f"werss-child/{__version__}"
        self._collector_factory = collector_factory
        self._notifier_factory = notifier_factory
        self.stop_event = threading.Event()
        self.draining = threading.Event()
        self.active: dict[str, LeaseWork] = {}
        self._active_lock = threading.Lock()
        self.executor = ThreadPoolExecutor(max_workers=config.capacity,
                                           thread_name_prefix="werss-lease")
        self.runner = LeaseRunner(cache=self.cache, client=self.client, outbox=self.outbox,
                                  collector_for=self._collector, notifier_for=self._notifier,
                                  flush=self.flush, stop_event=self.stop_event, clock=clock,
                                  sleep=sleep)
        self.fatal: FatalError | None = None
        self.intervals = {"heartbeat": config.heartbeat_interval, "sync": config.sync_interval}
        self._claim_backoff = 0.0
        self._room_freed = threading.Event()
        self._claim_cancel_sent = False
        self._started_up = False
        self.wechat = WechatManager(config, self.cache, self.client, clock=clock)
        self.wechat.on_expired = lambda: self._guard("heartbeat", self.heartbeat)
        self.wechat.on_login = self.wechat.on_expired
        self.client.on_commands = self.wechat.handle_commands

    # -- parent calls, each logged and classified ----------------------------------------------
    def _guard(self, name: str, call: Callable, *args):
        """Run one job; a fatal refusal stops the agent, anything else is logged and retried."""
        try:
            return call(*args)
        except (errors.AuthenticationError, errors.PermissionDeniedError) as exc:
            if errors.is_fatal(exc):
                self._fail_fatally(exc)
            else:
                log.warning("%s refused: %s", name, exc)
        except errors.ParentUnavailableError as exc:
            log.warning("%s: parent unavailable (%s); will retry", name, exc)
        except Exception:  # noqa: BLE001 - one job failing must not stop the loops
            log.exception("%s failed; will retry", name)
        return None

    def _fail_fatally(self, exc: errors.ParentError) -> None:
        message = explain_fatal(exc)
        log.error(message)
        self.fatal = FatalError(message)
        self.stop_event.set()

    def flush(self) -> None:
        """Send what the outbox holds now; a fatal refusal stops the agent."""
        self._guard("flush", self.outbox.drain)

    def status(self) -> AgentStatus:
        return AgentStatus(last_contact_at=self.client.last_success_at,
                           heartbeat_interval=self.intervals["heartbeat"],
                           leases_held=self.leases_held(), outbox_depth=self.outbox.depth(),
                           draining=self.draining.is_set())

    def leases_held(self) -> int:
        with self._active_lock:
            return len(self.active)

    def heartbeat(self) -> dict:
        data = self.client.heartbeat({
            "version": __version__,
            "hostname": socket.gethostname(),
            "capacity": self.config.capacity,
            "running": self.leases_held(),
            # Every source type a collector is registered for: the parent leases no other.
            "capabilities": {"sources": sorted(COLLECTORS), "wechat": self.wechat.capability()},
        })
        jsonlog.set_process_fields(node_id=(data or {}).get("node_id"))
        for key in ("heartbeat_interval", "sync_interval"):
            if isinstance((data or {}).get(key), int) and data[key] > 0:
                self.intervals[key.split("_")[0]] = data[key]
        self.cache.set_meta("last_contact", isoformat_z(datetime.now(timezone.utc)))
        return data

    def sync_once(self, full: bool = False) -> dict:
        """The seed's sync: heartbeat, then feeds, then tasks."""
        self.heartbeat()
        return self.syncer.sync(full)

    # -- work ----------------------------------------------------------------------------------
    def room(self) -> int:
        return self.config.capacity - self.leases_held()

    def claim(self, wait: int) -> list[dict]:
        """Claim up to the free capacity and start executing what was leased."""
        room = self.room()
        if room <= 0 or self.draining.is_set() or self.stop_event.is_set():
            return []
        leases = self.client.claim(room, wait, new_idempotency_key())
        for lease in leases:
            if self.draining.is_set() or self.stop_event.is_set():
                # Granted while we were stopping: hand it straight back, unspent.
                self.outbox.fail(lease["lease_id"], "child shutting down", release=True)
                continue
            self._start(lease)
        return leases

    def _start(self, lease: dict) -> None:
        now = self.clock()
        expires = parse_iso(lease["expires_at"]).timestamp()
        work = LeaseWork(lease, now, expires)
        with self._active_lock:
            self.active[lease["lease_id"]] = work
        self.cache.hold_lease(lease)
        # Every line logged while working the lease names it (JSON logs: a lease_id field).
        self.executor.submit(jsonlog.with_fields(self._execute_guarded,
                                                 lease_id=lease["lease_id"]), work)

    def _execute_guarded(self, work: LeaseWork) -> None:
        try:
            self.runner.run(work)
        finally:
            with self._active_lock:
                self.active.pop(work.lease["lease_id"], None)
            self.cache.drop_lease(work.lease["lease_id"])
            self._room_freed.set()

    def _collector(self, source_type: str, task_id: str):
        if self._collector_factory:
            return self._collector_factory(source_type)
        return collector_for(source_type, TaskScopedValidators(self.cache, task_id),
                             self.source_session, wechat=self.wechat, task_id=task_id,
                             allow_private_addresses=self.config.allow_private_addresses)

    def _notifier(self, task: dict):
        if self._notifier_factory:
            return self._notifier_factory(task)
        from .notifiers import notifier_for  # with jinja2: loaded at the first push
        from .permits import SendPermits

        # Only a limited destination needs the parent's permits (and the parent up).
        permit = SendPermits(self.client, self.stop_event) if task.get("send_limit") else None
        return notifier_for(task, self.source_session,
                            content_format=self.config.content_format, permit=permit)

    def execute(self, work: LeaseWork) -> None:
        """Collect each leased feed, upload, push what the parent hands out, complete."""
        self.runner.execute(work)

    def renew_leases(self) -> None:
        """Renew each lease past half its lifetime; a 409 marks it lost."""
        now = self.clock()
        with self._active_lock:
            due = [w for w in self.active.values()
                   if not w.lost.is_set() and now >= w.claimed_at + (w.expires_at - w.claimed_at) / 2]
        for work in due:
            try:
                data = self.client.renew(work.lease["lease_id"])
            except errors.ConflictError:
                work.lost.set()
                continue
            except errors.NotFoundError:
                work.lost.set()
                continue
            work.claimed_at = now
            work.expires_at = parse_iso(data["expires_at"]).timestamp()

    # -- loops ---------------------------------------------------------------------------------
    def run_once(self) -> dict:
        """One cycle without sleeping: sync, claim (no wait), execute, flush. For tests/CLI."""
        summary = self.sync_once()
        leases = self.claim(wait=0)
        self.executor.shutdown(wait=True)
        self.executor = ThreadPoolExecutor(max_workers=self.config.capacity,
                                           thread_name_prefix="werss-lease")
        self.outbox.drain()
        summary.update(leases=len(leases), outbox=self.outbox.depth())
        return summary

    def _build_scheduler(self) -> schedule.Scheduler:
        scheduler = schedule.Scheduler()

        def jittered(seconds: int):
            low = max(1, int(seconds * 0.9))
            return scheduler.every(low).to(max(low, int(seconds * 1.1))).seconds

        jittered(self.intervals["heartbeat"]).do(self._guard, "heartbeat", self.heartbeat)
        jittered(self.intervals["sync"]).do(self._guard, "sync", self.sync_once)
        scheduler.every(5).seconds.do(self._guard, "renew", self.renew_leases)
        scheduler.every(5).seconds.do(self.flush)
        scheduler.every(1800).seconds.do(self._guard, "wechat check", self.wechat.check_session)
        return scheduler

    def _claim_loop(self) -> None:
        while not self.stop_event.is_set() and not self.draining.is_set():
            if self.room() <= 0:
                self._room_freed.clear()
                if self.room() <= 0:
                    self._room_freed.wait(1)  # woken as soon as a lease finishes
                continue
            try:
                started = time.monotonic()
                leases = self.claim(self.config.claim_wait)
                self._claim_backoff = 0.0
                if not leases:
                    self.stop_event.wait(self._claim_pause(time.monotonic() - started))
            except (errors.AuthenticationError, errors.PermissionDeniedError) as exc:
                if errors.is_fatal(exc):
                    self._fail_fatally(exc)
                    return
                self._back_off_claims(exc)
            except Exception as exc:  # noqa: BLE001
                if self.draining.is_set() or self.stop_event.is_set():
                    return  # the stop ended the claim in flight: nothing to retry
                self._back_off_claims(exc)

    def _claim_pause(self, took: float) -> float:
        """How long to wait after a claim that brought nothing (it took ``took`` seconds)."""
        retry_after = self.client.claim_retry_after
        if self.client.claim_token:
            # A parent that parks: the next claim waits there, released as soon as work
            # appears, so it goes at once.
            pause = 0.0
        elif retry_after is not None:
            # The parent's moment (just after its next due work), never later than our own
            # claim_wait, and spread a little so that children told the same moment do not
            # all arrive in the same instant.
            pause = min(retry_after, max(1, self.config.claim_wait)) * random.uniform(1.0, 1.1)
        elif self.config.claim_wait and took < 1:
            pause = random.uniform(1.0, 3.0)  # an older parent whose waiting slots were busy
        else:
            pause = 0.0
        # Never more than one claim a second while empty answers come back at once: a
        # parent or a proxy that answers parked claims itself must not get a busy loop.
        return max(pause, 1.0 - took)

    def _back_off_claims(self, exc: Exception) -> None:
        self._claim_backoff = min(60.0, max(1.0, self._claim_backoff * 2))
        wait = random.uniform(self._claim_backoff / 2, self._claim_backoff)
        log.warning("claim failed (%s); next try in %.1fs", exc, wait)
        self.stop_event.wait(wait)

    def _release_leases_of_a_previous_run(self) -> None:
        """Leases in hand when this agent last died are not being worked on: hand them
        back now rather than when they expire. A completion already in the outbox goes
        first, and then this release is simply refused as stale."""
        for lease in self.cache.held_leases():
            self.outbox.fail(lease["lease_id"], "child restarted", release=True)
            self.cache.drop_lease(lease["lease_id"])

    def _sleep_unless_stopping(self, seconds: float) -> None:
        """The client's pause between retries; in start-up a stop cuts it short.

        Once running, retries keep their backoff, so a stopping child still gives the
        parent time to take the results it is flushing.
        """
        if self._started_up:
            time.sleep(seconds)
            return
        deadline = time.monotonic() + seconds
        while not self.stop_event.is_set() and not self.draining.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self.stop_event.wait(min(0.2, remaining))

    def start_up(self) -> None:
        """The seed workflow at start: heartbeat, pull feeds, pull tasks; retried until it works."""
        delay = 1.0
        while not self.stop_event.is_set() and not self.draining.is_set():
            try:
                summary = self.sync_once()
                log.info("connected to %s: %d feeds, %d tasks cached", self.config.parent_api_url,
                         summary["cached_feeds"], summary["cached_tasks"])
                self._started_up = True
                return
            except errors.InvalidRequestError as exc:
                if exc.status in (404, 405):
                    # A WeRSS parent answers every node route: 404 or 405 is the wrong URL.
                    self._fail_with_wrong_parent(exc)
                    return
                log.warning("start-up refused: %s", exc)
            except (errors.AuthenticationError, errors.PermissionDeniedError) as exc:
                if errors.is_fatal(exc):
                    self._fail_fatally(exc)
                    return
                log.warning("start-up refused: %s", exc)
            except errors.ParentError as exc:
                log.warning("parent not reachable yet (%s); retrying in %.0fs", exc, delay)
            self._sleep_unless_stopping(random.uniform(delay / 2, delay))
            delay = min(60.0, delay * 2)

    def _fail_with_wrong_parent(self, exc: errors.ParentError) -> None:
        url = self.config.parent_api_url
        message = (f"{url} is not a WeRSS parent: {paths.CASCADE_PREFIX}{paths.HEARTBEAT} "
                   f"answered HTTP {exc.status} ({exc.code or 'no such route'}). Set "
                   "CASCADE_PARENT_URL (cascade.parent_api_url) to the parent's root URL, e.g. "
                   "http://parent-server:8001, without /api/v1")
        log.error(message)
        self.fatal = WrongParentError(message)
        self.stop_event.set()

    def run(self) -> None:
        """Run until stop(); raises FatalError when the parent refuses this node."""
        self._release_leases_of_a_previous_run()
        self.start_up()
        claimer = threading.Thread(target=self._claim_loop, name="werss-claim", daemon=True)
        if not self.stop_event.is_set() and not self.draining.is_set():
            claimer.start()
        scheduler = self._build_scheduler()
        while not self.stop_event.is_set():
            scheduler.run_pending()
            if self.draining.is_set():
                if claimer.is_alive():
                    self._end_claim_in_flight()
                if self.room() >= self.config.capacity:
                    break
            self.stop_event.wait(0.5 if not self.draining.is_set() else 0.1)
        self.stop_event.set()  # wakes the claim loop's pauses
        if claimer.is_alive():
            if self._claim_long_polled():
                # A long-poll in flight may still be granted work; it is released on arrival.
                # The parent ends it at once after the cancel above.
                claimer.join(timeout=self.config.claim_wait + 15)
            else:
                self.client.end_claims()
                claimer.join(timeout=5)
        self._shut_down()
        if self.fatal:
            raise self.fatal

    def _claim_long_polled(self) -> bool:
        """Whether the claim in flight may be a long-poll an older parent holds in a thread."""
        return self.client.parent_long_polls and self.config.claim_wait > 0

    def _end_claim_in_flight(self) -> None:
        """Stopping: end the claim in flight now instead of waiting out its answer.

        A parked claim costs the parent nothing but the connection, so closing it is enough
        (repeated while the claim thread lives: a claim caught between taking a connection
        and opening it is closed on the next pass). A parent older than claim pacing holds a
        long-poll in a thread that would go on leasing to a closed connection: that one is
        asked to end the wait instead, once.
        """
        if not self._claim_long_polled():
            self.client.end_claims()
        elif not self._claim_cancel_sent:
            self._claim_cancel_sent = True
            self._cancel_waiting_claim()

    def _cancel_waiting_claim(self) -> None:
        """Ask an older parent to end this node's long-poll now, so an idle child stops at once."""
        try:
            self.client.cancel_claim_wait()
        except errors.ParentError as exc:
            log.info("could not end the waiting claim early (%s); waiting for it", exc)

    def begin_drain(self) -> None:
        """First SIGTERM: stop claiming, let current leases finish, then flush and stop."""
        log.info("stopping: no new work; finishing %d lease(s) in hand", len(self.active))
        self.draining.set()

    def stop(self) -> None:
        self.stop_event.set()

    def _shut_down(self) -> None:
        self.executor.shutdown(wait=True)
        self.flush()

    def close(self) -> None:
        self.executor.shutdown(wait=False)
        self.cache.close()

