"""Leases: how children claim allocations, renew, complete and fail them.

Every transition is a guarded UPDATE (``... WHERE status = 'pending'`` or ``WHERE
current_lease_id = :lease AND lease_expires_at > :now``) whose row count decides who
won, so two claimers can never hold one allocation and a stale lease can never write.
"""

from __future__ import annotations

import itertools
import time
from datetime import datetime, timedelta

from flask import current_app

from sqlalchemy import and_, case, func, or_

from shared import errors as codes
from shared.lease_schemas import LeaseSchema, LeaseTaskSchema
from shared.timeutil import isoformat_z

from ..config import settings
from ..clock import now
from ..errors import ApiError
from ..extensions import db, rowcount
from ..models import Allocation, Article, Feed, Lease, MessageTask, Node, TaskRun
from ..models.work import (
    ALLOC_COMPLETED, ALLOC_DEAD, ALLOC_LEASED, ALLOC_PENDING, LEASE_ACTIVE, LEASE_COMPLETED,
    LEASE_EXPIRED, LEASE_FAILED, LEASE_RATE_LIMITED, LEASE_RELEASED,
)
from ..models.base import new_uuid
from . import claim_pacing, node_sources
from .message_tasks import task_values
from .send_budgets import send_limit_wire
from .scheduling import schedule_due_runs
from .work_log import log_lease_results

MAX_LABEL_SUBSET_LABELS = 8
SCHEDULE_CHECK_SECONDS = 5
LEASE_WIRE = LeaseSchema()
_LEASE_TASK_FIELDS = tuple(LeaseTaskSchema().fields)


def requeue_expired(moment: datetime | None = None) -> int:
    """Return expired leases' allocations to pending (or dead after max attempts)."""
    moment = moment or now()
    expired = and_(Allocation.status == ALLOC_LEASED, Allocation.lease_expires_at <= moment)
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


def _held(node: Node) -> int:
    return db.session.execute(
        db.select(func.count()).select_from(Allocation)
        .where(Allocation.leased_to == node.id, Allocation.status == ALLOC_LEASED)
    ).scalar_one()


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


def _candidate_conditions(node: Node, moment: datetime):
    conditions = [
        Allocation.status == ALLOC_PENDING,
        or_(Allocation.not_before.is_(None), Allocation.not_before <= moment),
    ]
    if not _wechat_ready(node, moment):
        conditions.append(Allocation.needs_wechat.is_(False))
    if not node_sources.runs_rss(node):
        # Allocations are never mixed (scheduling chunks per source): WeChat work only.
        conditions.append(Allocation.needs_wechat.is_(True))
    subsets = _label_subsets(node.labels)
    if subsets is not None:
        conditions.append(Allocation.label_key.in_(subsets))
    return conditions, subsets


def claim_once(node: Node, max_count: int,
               schedule: bool = True) -> list[tuple[Allocation, Lease]]:
    cfg = settings()
    moment = now()
    requeue_expired(moment)
    if schedule:
        _maybe_schedule(moment)
    capacity = node.capacity
    if node.reported_capacity is not None:
        capacity = min(capacity, node.reported_capacity)
    room = min(max_count, capacity - _held(node))
    if room <= 0:
        return []
    conditions, subsets = _candidate_conditions(node, moment)
    candidates = db.session.execute(
        db.select(Allocation).where(*conditions)
        .order_by(Allocation.priority, Allocation.created_at, Allocation.id)
        .limit(room * 4 + 8)
        .with_for_update(skip_locked=True)
    ).scalars().all()
    if subsets is None:
        own = set(node.labels or [])
        candidates = [a for a in candidates if set(a.labels or []) <= own]

    claimed: list[tuple[Allocation, Lease]] = []
    expires_at = moment + timedelta(seconds=cfg.lease_ttl)
    for allocation in candidates:
        if len(claimed) >= room:
            break
        lease_id = new_uuid()
        won = rowcount(db.session.execute(
            db.update(Allocation)
            .where(Allocation.id == allocation.id, Allocation.status == ALLOC_PENDING)
            .values(status=ALLOC_LEASED, current_lease_id=lease_id, leased_to=node.id,
                    attempt=Allocation.attempt + 1, lease_expires_at=expires_at,
                    updated_at=moment)
            .execution_options(synchronize_session=False)
        ))
        if won != 1:
            continue  # another claimer took it between our read and our write
        lease = Lease(id=lease_id, allocation_id=allocation.id, node_id=node.id,
                      attempt=allocation.attempt + 1, status=LEASE_ACTIVE, created_at=moment)
        db.session.add(lease)
        claimed.append((allocation, lease))
    db.session.flush()
    for allocation, _ in claimed:
        db.session.refresh(allocation)
    return claimed


def claim(node: Node, max_count: int) -> list[dict]:
    """Lease up to ``max_count`` allocations now; never wait for work.

    An empty claim is answered at once, with a Retry-After from claim_pacing: a waiting
    child holds no thread and costs no query while it waits (docs/OPERATIONS.md).
    """
    return lease_payloads(claim_once(node, max_count))


def lease_payloads(claimed: list[tuple[Allocation, Lease]]) -> list[dict]:
    """The leases as nodes receive them: dumped by the contract's LeaseSchema."""
    if not claimed:
        return []
    feed_ids = {feed_id for allocation, _ in claimed for feed_id in allocation.feed_ids}
    task_ids = {allocation.task_id for allocation, _ in claimed}
    feeds = {f.id: f for f in db.session.execute(
        db.select(Feed).where(Feed.id.in_(feed_ids))).scalars()}
    tasks = {t.id: t for t in db.session.execute(
        db.select(MessageTask).where(MessageTask.id.in_(task_ids))).scalars()}
    slots = dict(db.session.execute(
        db.select(TaskRun.id, TaskRun.slot)
        .where(TaskRun.id.in_({allocation.run_id for allocation, _ in claimed}))).tuples().all())
    payloads = []
    for allocation, lease in claimed:
        task = tasks.get(allocation.task_id)
        # A task deleted since it was queued: the lease still names it, every field null.
        values = task_values(task) if task else dict.fromkeys(_LEASE_TASK_FIELDS)
        payloads.append({
            "lease_id": lease.id,
            "allocation_id": allocation.id,
            "attempt": lease.attempt,
            "expires_at": allocation.lease_expires_at,
            "slot": slots.get(allocation.run_id),
            "run_id": allocation.run_id,
            # send_limit says whether its pushes need send permits (services/send_budgets.py).
            "task": {**values, "id": allocation.task_id,
                     "send_limit": send_limit_wire(values["channel"])},
            "feeds": [feeds[f] for f in allocation.feed_ids if f in feeds],
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
