"""Leases: how children claim allocations, renew, complete and fail them.

Every transition is a guarded UPDATE (``... WHERE status = 'pending'`` or ``WHERE
current_lease_id = :lease AND lease_expires_at > :now``) whose row count decides who
won, so two claimers can never hold one allocation and a stale lease can never write.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import cast

from flask import current_app

from sqlalchemy import BindParameter, Select, Table, and_, bindparam, case, func, or_
from sqlalchemy.sql.dml import ReturningInsert, ReturningUpdate

from shared import errors as codes
from shared.lease_schemas import LeaseSchema, LeaseTaskSchema
from shared.schemas import FeedSchema
from shared.timeutil import isoformat_z

from ..config import settings
from ..clock import now
from ..errors import ApiError
from .. import write_queue
from ..extensions import db, rowcount
from ..models import (
    Allocation, Article, ChangeLogEntry, Feed, Lease, MessageTask, Node, TaskRun,
)
from ..models.work import (
    ALLOC_COMPLETED, ALLOC_DEAD, ALLOC_LEASED, ALLOC_PENDING, LEASE_ACTIVE, LEASE_COMPLETED,
    LEASE_EXPIRED, LEASE_FAILED, LEASE_RATE_LIMITED, LEASE_RELEASED, status_literal,
)
from ..models.base import new_uuid
from . import claim_pacing, node_sources, work_signal
from .message_tasks import task_values
from .send_budgets import send_limit_wire
from .scheduling import schedule_due_runs
from .work_log import log_lease_results

MAX_LABEL_SUBSET_LABELS = 8
SCHEDULE_CHECK_SECONDS = 5
# A claim looks for expired leases at least this often (see _requeue_if_due).
EXPIRY_RECHECK_SECONDS = 5
_EXPIRY_KEY = "werss.lease_expiry"
LEASE_WIRE = LeaseSchema()
_LEASE_TASK_FIELDS = tuple(LeaseTaskSchema().fields)
_LEASES = cast(Table, Lease.__table__)  # a mapped class's table (typed as FromClause)
# The claim's own statements are Core's, on the tables: the ORM's work per statement (entity
# loading, bulk-update compile state) was about a third of a claiming worker's CPU.
_ALLOCATIONS = cast(Table, Allocation.__table__)
_RUNS = cast(Table, TaskRun.__table__)
_CHANGES = cast(Table, ChangeLogEntry.__table__)
# The columns a lease's feeds carry: read as plain rows, not as Feed entities.
_FEED_COLUMNS = tuple(Feed.__table__.c[name] for name in FeedSchema().fields)
# Every lease of a run carries the same task: each process keeps the tasks' wire values
# per change-log cursor (see _task_cache), for at most this long.
TASK_CACHE_SECONDS = 60
_TASK_CACHE_KEY = "werss.lease_tasks"
# The node's leased rows, counted inside the claim's own SELECT of allocations (made once:
# building an alias costs more than the count).
_HELD = _ALLOCATIONS.alias("held")

# The claim's other statements, built once too (only bound per claim).
_INSERT_LEASES = _LEASES.insert()
_FEEDS_BY_ID = db.select(*_FEED_COLUMNS).where(
    Feed.id.in_(bindparam("ids", expanding=True)))
_TASKS_BY_ID = db.select(MessageTask).where(MessageTask.id.in_(bindparam("ids", expanding=True)))
_SLOTS_BY_RUN = db.select(TaskRun.id, TaskRun.slot).where(
    TaskRun.id.in_(bindparam("ids", expanding=True)))
_TAKE_STATEMENTS: dict[int, ReturningUpdate[tuple[str, int]]] = {}
_TAKE_CACHED_UP_TO = 64  # candidates in one claim: a node's capacity, rarely above a few


@dataclass(frozen=True, slots=True)
class Granted:
    """A lease as a claim grants it: what its payload names (lease_payloads)."""

    lease_id: str
    attempt: int
    allocation_id: str
    run_id: str
    task_id: str
    feed_ids: list
    expires_at: datetime | None

    @classmethod
    def of(cls, allocation: Allocation, lease: Lease) -> "Granted":
        return cls(lease.id, lease.attempt, allocation.id, allocation.run_id,
                   allocation.task_id, allocation.feed_ids, allocation.lease_expires_at)


def requeue_expired(moment: datetime | None = None) -> int:
    """Return expired leases' allocations to pending (or dead after max attempts)."""
    moment = moment or now()
    expired = and_(Allocation.status == status_literal(ALLOC_LEASED),
                   Allocation.lease_expires_at <= moment)
    # Look first (the partial expiry index makes this cheap): most claims find nothing
    # expired, and then they write nothing.
    if db.session.execute(db.select(Allocation.id).where(expired).limit(1)).first() is None:
        return 0
    db.session.execute(
        db.update(Lease)
        .where(Lease.status == LEASE_ACTIVE,
               Lease.id.in_(db.select(Allocation.current_lease_id).where(expired)))
        .values(status=LEASE_EXPIRED, ended_at=moment, error="lease expired")
        .execution_options(synchronize_session=False)
    )
    count = rowcount(db.session.execute(
        db.update(Allocation).where(expired).values(
            status=case((Allocation.attempt >= Allocation.max_attempts, ALLOC_DEAD),
                        else_=ALLOC_PENDING),
            current_lease_id=None, leased_to=None, lease_expires_at=None,
            last_error="lease expired", updated_at=moment,
        ).execution_options(synchronize_session=False)
    ))
    work_signal.bump()  # requeued: parked claims look again
    return count


def _wechat_ready(node: Node, moment: datetime) -> bool:
    return node_sources.wechat_ready(node, moment)


def _label_subsets(labels: list[str]) -> list[str] | None:
    """Every label_key a node with these labels may take (None: too many to list)."""
    unique = sorted(set(labels or []))
    if len(unique) > MAX_LABEL_SUBSET_LABELS:
        return None
    return [",".join(combo) for size in range(len(unique) + 1)
            for combo in itertools.combinations(unique, size)]


def _maybe_schedule(moment: datetime) -> None:
    # Claims are frequent; materialising runs once a few seconds per app is plenty
    # (housekeeping does it too). But a claim that arrives after a slot came due, as one
    # paced by claim_pacing does, must find its run even if the last check was recent.
    state = current_app.extensions.setdefault("werss.schedule_check", {"at": 0.0, "moment": None})
    due = claim_pacing.known_next_slot()
    overdue = due is not None and due <= moment and (state["moment"] is None
                                                      or state["moment"] < due)
    if overdue or time.monotonic() - state["at"] >= SCHEDULE_CHECK_SECONDS:
        state["at"], state["moment"] = time.monotonic(), moment
        schedule_due_runs(moment)


def _candidate_shape(node: Node, moment: datetime) -> tuple[bool, bool, list[str] | None]:
    """What restricts the node's candidates: (RSS work only, WeChat work only, label keys)."""
    return (not _wechat_ready(node, moment), not node_sources.runs_rss(node),
            _label_subsets(node.labels))


# Candidate statements, built once per shape (which conditions apply; lock or probe) and
# then only bound: building the query and computing its cache key each claim was ~12 % of a
# worker's CPU under the 10,000-child fleet.
_STATEMENTS: dict[tuple[bool, bool, bool, bool], Select] = {}


def _candidates_statement(rss_only: bool, wechat_only: bool, by_label: bool,
                          lock: bool) -> Select:
    key = (rss_only, wechat_only, by_label, lock)
    statement = _STATEMENTS.get(key)
    if statement is not None:
        return statement
    a = _ALLOCATIONS.c
    conditions = [
        a.status == status_literal(ALLOC_PENDING),
        or_(a.not_before.is_(None), a.not_before <= bindparam("moment")),
    ]
    if rss_only:
        conditions.append(a.needs_wechat.is_(False))
    if wechat_only:
        # Allocations are never mixed (scheduling chunks per source): WeChat work only.
        conditions.append(a.needs_wechat.is_(True))
    if by_label:
        conditions.append(a.label_key.in_(bindparam("subsets", expanding=True)))
    if not lock:
        # The probe: is there anything to take? A plain read, outside any transaction.
        statement = db.select(a.id).where(*conditions).limit(1)
    else:
        statement = (
            db.select(
                a.id, a.run_id, a.task_id, a.feed_ids, a.labels, _RUNS.c.slot,
                db.select(func.count()).select_from(_HELD)
                .where(_HELD.c.leased_to == bindparam("node_id"),
                       _HELD.c.status == status_literal(ALLOC_LEASED))
                .scalar_subquery().label("held"),
                db.select(func.max(_CHANGES.c.id)).scalar_subquery().label("cursor"),
            )
            .select_from(_ALLOCATIONS.outerjoin(_RUNS, _RUNS.c.id == a.run_id))
            .where(*conditions)
            .order_by(a.priority, a.created_at, a.id)
            .limit(bindparam("limit"))
            .with_for_update(of=_ALLOCATIONS, skip_locked=True)
        )
    _STATEMENTS[key] = statement
    return statement


def _requeue_if_due(moment: datetime) -> None:
    """Requeue expired leases, but look only when one can have expired since the last look.

    Every lease expires at least ``lease_ttl`` after it was granted (renewals only push that
    out), so after a look that found the earliest expiry E at T, nothing can expire before
    min(E, T + lease_ttl) in this process or any other. Looking again at least every
    ``EXPIRY_RECHECK_SECONDS`` bounds the delay should another instance run a shorter TTL.
    """
    state = current_app.extensions.setdefault(_EXPIRY_KEY, {"next_look": None})
    if state["next_look"] is not None and moment < state["next_look"]:
        return
    earliest = db.session.execute(
        db.select(func.min(Allocation.lease_expires_at))
        .where(Allocation.status == status_literal(ALLOC_LEASED))
    ).scalar()
    if earliest is not None and earliest <= moment:
        requeue_expired(moment)
        state["next_look"] = None  # the next claim sees what is left
        return
    horizon = moment + timedelta(seconds=min(settings().lease_ttl, EXPIRY_RECHECK_SECONDS))
    state["next_look"] = horizon if earliest is None else min(earliest, horizon)


def claim_once(node: Node, max_count: int, schedule: bool = True) -> list[Granted]:
    """Lease up to ``max_count`` allocations to the node (in this transaction)."""
    return _claim(node, max_count, schedule).leases


@dataclass
class _Claimed:
    leases: list[Granted]
    slots: dict[str, datetime] = field(default_factory=dict)
    cursor: int | None = None  # the change-log cursor, read in the same snapshot


def _claim(node: Node, max_count: int, schedule: bool = True) -> _Claimed:
    cfg = settings()
    moment = now()
    _requeue_if_due(moment)
    if schedule:
        _maybe_schedule(moment)
    capacity = node.capacity
    if node.reported_capacity is not None:
        capacity = min(capacity, node.reported_capacity)
    if capacity <= 0 or max_count <= 0:
        return _Claimed([])
    rss_only, wechat_only, subsets = _candidate_shape(node, moment)
    shape = (rss_only, wechat_only, subsets is not None)
    values: dict = {"moment": moment, "node_id": node.id}
    if subsets is not None:
        values["subsets"] = subsets
    # Most claims of an idle fleet find nothing. Look first with a plain read: it opens no
    # transaction and, on SQLite, waits for no write turn, so an empty claim writes nothing
    # but its nonce. Work that appears after the look moves the work generation, which was
    # read before it (the next claim goes to the app). A claim whose write transaction is
    # already open (one with an Idempotency-Key, as children send: request_response.py)
    # would save nothing by looking: it goes straight to the locked read.
    if not write_queue.ends_a_transaction(db.session.connection()) and db.session.execute(
            _candidates_statement(*shape, lock=False), values).first() is None:
        return _Claimed([])
    # One statement reads the candidates, what the node already holds (capacity), the
    # runs' slots and the change-log cursor that keys the task cache (see _task_cache).
    # The rows read are the rows taken: PostgreSQL locks them (SKIP LOCKED: a concurrent
    # claimer takes the next ones instead of waiting), and SQLite runs every transaction
    # under BEGIN IMMEDIATE, so no other writer comes between this read and the UPDATE.
    # Locking more than we take would hide that work from the other claimers.
    rows = db.session.execute(
        _candidates_statement(*shape, lock=True),
        {**values, "limit": max_count if subsets is not None else max_count * 4 + 8},
    ).all()
    if not rows:
        return _Claimed([])
    room = capacity - rows[0].held
    cursor = rows[0].cursor
    candidates = rows
    if subsets is None:
        own = set(node.labels or [])
        candidates = [row for row in candidates if set(row.labels or []) <= own]
    candidates = candidates[:max(0, room)]
    if not candidates:
        return _Claimed([])

    lease_ids = {row.id: new_uuid() for row in candidates}
    expires_at = moment + timedelta(seconds=cfg.lease_ttl)
    # One guarded UPDATE for all the candidates; RETURNING says which were won, and with
    # which attempt, so nothing is read back.
    parameters: dict = {"node_id": node.id, "expires_at": expires_at, "moment": moment}
    for index, (allocation_id, lease_id) in enumerate(lease_ids.items()):
        parameters[f"id_{index}"], parameters[f"lease_{index}"] = allocation_id, lease_id
    if db.session.get_bind().dialect.name == "postgresql":
        # One statement takes them and records their leases (a data-modifying CTE).
        won = dict(db.session.execute(
            _take_and_record_statement(len(lease_ids)),
            {**parameters, "active": LEASE_ACTIVE}).tuples().all())
        return _Claimed(_granted(candidates, won, lease_ids, expires_at),
                        {row.run_id: row.slot for row in rows}, cursor)
    won = dict(db.session.execute(
        _take_statement(len(lease_ids)), parameters).tuples().all())
    claimed = _granted(candidates, won, lease_ids, expires_at)
    if claimed:
        db.session.execute(_INSERT_LEASES, [
            {"id": granted.lease_id, "allocation_id": granted.allocation_id,
             "node_id": node.id, "attempt": granted.attempt, "status": LEASE_ACTIVE,
             "created_at": moment, "ended_at": None, "error": None}
            for granted in claimed])
    return _Claimed(claimed, {row.run_id: row.slot for row in rows}, cursor)


def _granted(candidates: Sequence, won: dict[str, int], lease_ids: dict[str, str],
             expires_at: datetime) -> list[Granted]:
    """The candidates the take won (allocation id: attempt), as granted leases."""
    return [Granted(lease_ids[row.id], won[row.id], row.id, row.run_id, row.task_id,
                    row.feed_ids, expires_at)
            for row in candidates if row.id in won]  # else another claimer took it


_TAKE_AND_RECORD: dict[int, ReturningInsert[tuple[str, int]]] = {}


def _take_and_record_statement(count: int) -> ReturningInsert[tuple[str, int]]:
    """PostgreSQL: the take's UPDATE and the leases' INSERT as one statement.

    ``WITH taken AS (UPDATE allocations ... RETURNING ...) INSERT INTO leases SELECT ...
    FROM taken RETURNING allocation_id, attempt``: one round trip and one statement's work
    in the app instead of two, with the same guarded UPDATE deciding what was won.
    """
    statement = _TAKE_AND_RECORD.get(count)
    if statement is not None:
        return statement
    taken = _take_statement(count, returning_lease=True).cte("taken")
    statement = (
        _LEASES.insert()
        .from_select(
            ["id", "allocation_id", "node_id", "attempt", "status", "created_at"],
            db.select(taken.c.current_lease_id, taken.c.id,
                      bindparam("node_id", type_=_LEASES.c.node_id.type), taken.c.attempt,
                      bindparam("active", type_=_LEASES.c.status.type),
                      bindparam("moment", type_=_LEASES.c.created_at.type)))
        .returning(_LEASES.c.allocation_id, _LEASES.c.attempt)
    )
    if count <= _TAKE_CACHED_UP_TO:
        _TAKE_AND_RECORD[count] = statement
    return statement


def _take_statement(count: int,
                    returning_lease: bool = False) -> ReturningUpdate[tuple[str, int]]:
    """The guarded UPDATE that leases ``count`` candidates: ids and lease ids bound by index.

    Built once per count (up to _TAKE_CACHED_UP_TO), so a claim only binds it.
    """
    statement = None if returning_lease else _TAKE_STATEMENTS.get(count)
    if statement is not None:
        return statement
    ids: list[BindParameter[str]] = [bindparam(f"id_{index}") for index in range(count)]
    a = _ALLOCATIONS.c
    statement = (
        db.update(_ALLOCATIONS)
        .where(a.id.in_(ids), a.status == ALLOC_PENDING)
        .values(status=ALLOC_LEASED,
                current_lease_id=case(*((a.id == ids[index], bindparam(f"lease_{index}"))
                                        for index in range(count))),
                leased_to=bindparam("node_id"), attempt=a.attempt + 1,
                lease_expires_at=bindparam("expires_at"), updated_at=bindparam("moment"))
        .returning(a.id, a.attempt, *([a.current_lease_id] if returning_lease else []))
    )
    if returning_lease:
        return statement
    if count <= _TAKE_CACHED_UP_TO:
        _TAKE_STATEMENTS[count] = statement
    return statement


def claim(node: Node, max_count: int) -> list[dict]:
    """Lease up to ``max_count`` allocations now; never wait for work.

    An empty claim is answered at once, with a Retry-After from claim_pacing: a waiting
    child holds no thread and costs no query while it waits (docs/OPERATIONS.md).
    """
    claimed = _claim(node, max_count)
    return lease_payloads(claimed.leases, slots=claimed.slots, cursor=claimed.cursor)


def _task_cache(cursor: int | None) -> dict[str, dict | None]:
    """This process's copy of the tasks' wire values (task id: values), valid at ``cursor``.

    Every change to a task writes the change log in the same transaction (pulls and ETags
    are built on it), and the cursor was read no later than the rows cached under it: a
    cached value is never older than the cursor says. The time bound covers a change log
    emptied by pruning, whose ids SQLite may hand out again.
    """
    cache = current_app.extensions.get(_TASK_CACHE_KEY)
    if cache is None or cache["cursor"] != cursor or time.monotonic() > cache["until"]:
        cache = {"cursor": cursor, "until": time.monotonic() + TASK_CACHE_SECONDS, "tasks": {}}
        current_app.extensions[_TASK_CACHE_KEY] = cache
    return cache["tasks"]


def _current_cursor() -> int | None:
    return db.session.execute(db.select(func.max(ChangeLogEntry.id))).scalar()


def lease_payloads(claimed: list[Granted], *, slots: dict[str, datetime] | None = None,
                   cursor: int | None = None) -> list[dict]:
    """The leases as nodes receive them: dumped by the contract's LeaseSchema.

    ``slots`` (run id: slot) and ``cursor`` (the change log's, read before or with the
    claim) save the reads when the caller has them.
    """
    if not claimed:
        return []
    tasks = _task_cache(cursor if cursor is not None else _current_cursor())
    task_ids = {granted.task_id for granted in claimed} - tasks.keys()
    if task_ids:
        loaded = {t.id: task_values(t) for t in db.session.execute(
            _TASKS_BY_ID, {"ids": list(task_ids)}).scalars()}
        tasks.update({task_id: loaded.get(task_id) for task_id in task_ids})
    feed_ids = {f for granted in claimed for f in granted.feed_ids}
    feeds = {row["id"]: row for row in db.session.execute(
        _FEEDS_BY_ID, {"ids": list(feed_ids)}).mappings()} if feed_ids else {}
    slots = dict(slots or {})
    run_ids = {granted.run_id for granted in claimed} - slots.keys()
    if run_ids:
        slots.update(db.session.execute(_SLOTS_BY_RUN, {"ids": list(run_ids)}).tuples().all())
    payloads = []
    for granted in claimed:
        # A task deleted since it was queued: the lease still names it, every field null.
        values = tasks.get(granted.task_id) or dict.fromkeys(_LEASE_TASK_FIELDS)
        payloads.append({
            "lease_id": granted.lease_id,
            "allocation_id": granted.allocation_id,
            "attempt": granted.attempt,
            "expires_at": granted.expires_at,
            "slot": slots.get(granted.run_id),
            "run_id": granted.run_id,
            # send_limit says whether its pushes need send permits (services/send_budgets.py).
            "task": {**values, "id": granted.task_id,
                     "send_limit": send_limit_wire(values["channel"])},
            "feeds": [feeds[f] for f in granted.feed_ids if f in feeds],
        })
    return LEASE_WIRE.dump(payloads, many=True)


def _live(node: Node, lease_id: str, moment: datetime) -> tuple[Lease, Allocation]:
    """Load a lease the node may act on.

    :raises ApiError: 404 unknown lease, 403 another node's lease, 409 lease_lost.
    """
    lease = db.session.get(Lease, lease_id)
    if lease is None:
        raise ApiError(codes.NOT_FOUND, f"Lease {lease_id!r} does not exist.")
    if lease.node_id != node.id:
        raise ApiError(codes.FORBIDDEN, "This lease belongs to another node.")
    allocation = db.session.get(Allocation, lease.allocation_id)
    if (lease.status != LEASE_ACTIVE or allocation is None
            or allocation.current_lease_id != lease.id or allocation.status != ALLOC_LEASED
            or allocation.lease_expires_at is None or allocation.lease_expires_at <= moment):
        raise ApiError(codes.LEASE_LOST, details={"lease_id": lease_id,
                                                   "lease_status": lease.status})
    return lease, allocation


def lease_feed_ids(node: Node, lease_id: str) -> list[str]:
    """The feeds a live lease of this node covers (articles may only name these)."""
    _, allocation = _live(node, lease_id, now())
    return list(allocation.feed_ids)


def _guarded(lease_id: str, moment: datetime, **values) -> None:
    """Apply values to the allocation only while this lease still holds it."""
    won = rowcount(db.session.execute(
        db.update(Allocation).where(
            Allocation.current_lease_id == lease_id, Allocation.status == ALLOC_LEASED,
            Allocation.lease_expires_at > moment,
        ).values(updated_at=moment, **values).execution_options(synchronize_session=False)
    ))
    if won != 1:
        raise ApiError(codes.LEASE_LOST, details={"lease_id": lease_id})


def renew(node: Node, lease_id: str) -> dict:
    moment = now()
    _live(node, lease_id, moment)
    expires_at = moment + timedelta(seconds=settings().lease_ttl)
    _guarded(lease_id, moment, lease_expires_at=expires_at)
    return {"lease_id": lease_id, "expires_at": isoformat_z(expires_at)}


def complete(node: Node, lease_id: str, results: list[dict]) -> dict:
    moment = now()
    lease, allocation = _live(node, lease_id, moment)
    unknown = sorted({r["mp_id"] for r in results} - set(allocation.feed_ids))
    if unknown:
        raise ApiError(codes.VALIDATION_FAILED, "Results name feeds outside this lease.",
                       details={"results": {"mp_id": [f"not in this lease: {', '.join(unknown)}"]}})
    stored = [{**r} for r in results]
    _guarded(lease_id, moment, status=ALLOC_COMPLETED, completed_at=moment, results=stored,
             current_lease_id=None, lease_expires_at=None, last_error=None)
    lease.status, lease.ended_at = LEASE_COMPLETED, moment
    _record_feed_results(node, allocation, results, moment)
    log_lease_results(node.id, results, moment)
    db.session.flush()
    return {"allocation_id": allocation.id, "status": ALLOC_COMPLETED}


def _record_feed_results(node: Node, allocation: Allocation, results: list[dict],
                         moment: datetime) -> None:
    by_feed = {r["mp_id"]: r for r in results}
    latest = dict(db.session.execute(
        db.select(Article.feed_id, func.max(Article.publish_time))
        .where(Article.feed_id.in_(allocation.feed_ids)).group_by(Article.feed_id)
    ).tuples().all())
    feeds = db.session.execute(
        db.select(Feed.id, Feed.sync_time, Feed.update_time, Feed.source_type)
        .where(Feed.id.in_(allocation.feed_ids))).all()
    for feed_id, sync_time, update_time, source_type in feeds:
        result = by_feed.get(feed_id)
        ok = bool(result and result.get("success", True))
        status = "success" if ok else ("failed" if result else "not_reported")
        error = (result or {}).get("error")
        if ok and not node_sources.supports(node, source_type):
            # It cannot have collected this feed: "success" here is not freshness.
            ok, status = False, "unsupported"
            error = f"node {node.name!r} does not run {source_type} sources"
        db.session.execute(
            db.update(Feed).where(Feed.id == feed_id).values(
                last_run_at=moment, last_run_node_id=node.id,
                last_run_status=status,
                last_run_error=error,
                sync_time=int(moment.timestamp()) if ok else sync_time,
                update_time=max(update_time or 0, latest.get(feed_id) or 0),
                # Bookkeeping, not an admin change: updated_at (on the wire) stays put.
                updated_at=Feed.updated_at,
            ).execution_options(synchronize_session=False))


def fail(node: Node, lease_id: str, error: str | None, retryable: bool,
         rate_limited_until: datetime | None, release: bool = False) -> dict:
    cfg = settings()
    moment = now()
    lease, allocation = _live(node, lease_id, moment)
    release_values = dict(current_lease_id=None, leased_to=None, lease_expires_at=None,
                          last_error=error)
    if release:
        status = ALLOC_PENDING
        work_signal.bump()  # pending again: parked claims look again
        _guarded(lease_id, moment, status=status, attempt=Allocation.attempt - 1, **release_values)
        lease.status = LEASE_RELEASED
    elif rate_limited_until and rate_limited_until > moment:
        # A node may not park work (or itself) for longer than the documented maximum.
        rate_limited_until = min(rate_limited_until,
                                 moment + timedelta(seconds=cfg.max_rate_limit_wait))
        # Rate limiting is not a failed attempt. WeChat limits a login, so the node takes
        # no WeChat work until then and another node may; any other source limits itself,
        # so the allocation waits until then, whoever takes it.
        status = ALLOC_PENDING
        work_signal.bump()  # pending again: parked claims look again
        if allocation.needs_wechat:
            node.wechat_blocked_until = rate_limited_until
            _guarded(lease_id, moment, status=status, attempt=Allocation.attempt - 1,
                     **release_values)
        else:
            _guarded(lease_id, moment, status=status, attempt=Allocation.attempt - 1,
                     not_before=rate_limited_until, **release_values)
        lease.status = LEASE_RATE_LIMITED
    elif retryable and allocation.attempt < allocation.max_attempts:
        status = ALLOC_PENDING
        work_signal.bump()  # pending again: parked claims look again
        backoff = cfg.retry_backoff * 2 ** max(0, allocation.attempt - 1)
        _guarded(lease_id, moment, status=status,
                 not_before=moment + timedelta(seconds=backoff), **release_values)
        lease.status = LEASE_FAILED
    else:
        status = ALLOC_DEAD
        _guarded(lease_id, moment, status=status, **release_values)
        lease.status = LEASE_FAILED
    lease.ended_at, lease.error = moment, error
    db.session.flush()
    return {"allocation_id": allocation.id, "status": status}


def release_node_leases(node_id: str, moment: datetime | None = None) -> int:
    """Hand back every lease a node holds (it was deleted or disabled)."""
    moment = moment or now()
    held = and_(Allocation.leased_to == node_id, Allocation.status == ALLOC_LEASED)
    db.session.execute(
        db.update(Lease).where(
            Lease.status == LEASE_ACTIVE,
            Lease.id.in_(db.select(Allocation.current_lease_id).where(held)),
        ).values(status=LEASE_RELEASED, ended_at=moment).execution_options(synchronize_session=False)
    )
    work_signal.bump()  # handed back: parked claims look again
    return rowcount(db.session.execute(
        db.update(Allocation).where(held).values(
            status=ALLOC_PENDING, attempt=Allocation.attempt - 1, current_lease_id=None,
            leased_to=None, lease_expires_at=None, last_error="node removed", updated_at=moment,
        ).execution_options(synchronize_session=False)
    ))


def cancel_claim_wait(node: Node) -> dict:
    """Record that the node is stopping its claims.

    Claims no longer wait at the parent, so there is nothing left to end; children from
    before that still call this when they stop, and get the answer they expect.
    """
    moment = now()
    db.session.execute(
        db.update(Node).where(Node.id == node.id)
        .values(claim_cancelled_at=moment, updated_at=Node.updated_at)
        .execution_options(synchronize_session=False))
    return {"node_id": node.id, "cancelled_at": isoformat_z(moment)}
