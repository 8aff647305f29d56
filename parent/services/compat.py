"""WeRSS task-dispatch calls (claim-task, task-status, ...) mapped onto our leases.

WeRSS names a unit of work by ``allocation_id``; ours is the same allocation id, so the
mapping is the identity. The lease a WeRSS call acts on is the allocation's current lease
when this node holds it, otherwise this node's latest lease on it (which the leasing
service then refuses as lost). Every transition goes through services.leasing, so the
fencing rules are exactly those of the native lease routes. See docs/COMPAT.md.
"""

from __future__ import annotations

from shared import errors as codes
from shared.compat_schemas import (
    COMPLETE_STATUSES, FAIL_STATUSES, RENEW_STATUSES, WeRSSArticleSchema, WeRSSTaskPackageSchema,
)

from ..clock import now
from ..errors import ApiError, NotFoundError
from ..extensions import db
from ..models import Allocation, Lease, Node
from ..models.work import ALLOC_COMPLETED, ALLOC_LEASED, LEASE_COMPLETED
from . import articles, leasing, node_sync

PACKAGE_WIRE = WeRSSTaskPackageSchema()


def task_package(lease: dict, claimed: bool = True) -> dict:
    """Turn one of our lease payloads into WeRSS's task package (plus our lease fields).

    The package carries the task fields WeRSSTaskPackageSchema declares, nothing else.
    """
    task = lease["task"]
    return PACKAGE_WIRE.dump({
        **task,
        "allocation_id": lease["allocation_id"],
        "task_id": task["id"],
        "task_name": task.get("name"),
        "feeds": lease["feeds"],
        "dispatched_at": now(),
        "claimed": claimed,
        "lease_id": lease["lease_id"] if claimed else None,
        "attempt": lease["attempt"],
        "expires_at": lease["expires_at"] if claimed else None,
        "slot": lease["slot"],
        "run_id": lease["run_id"],
    })


def claim_task(node: Node) -> dict | None:
    """Lease one allocation (no long-poll: WeRSS polls on its own timer)."""
    leases = leasing.claim(node, 1)
    return task_package(leases[0]) if leases else None


def pending_task(node: Node) -> dict | None:
    """The work this node holds, else what it could claim now, without claiming it.

    WeRSS parents claimed on this GET; we keep GET safe. Held work is re-delivered (a
    child that restarted finds it again); otherwise the answer is a preview with
    ``claimed: false`` and no lease id, computed by the claim itself inside a savepoint
    that is rolled back, so the routing rules are the claim's own.
    """
    held = db.session.execute(
        db.select(Allocation, Lease).join(Lease, Lease.id == Allocation.current_lease_id)
        .where(Allocation.leased_to == node.id, Allocation.status == ALLOC_LEASED,
               Allocation.lease_expires_at > now())
        .order_by(Lease.created_at, Allocation.id).limit(1)
    ).all()
    if held:
        return task_package(leasing.lease_payloads(
            [leasing.Granted.of(allocation, lease) for allocation, lease in held])[0])
    savepoint = db.session.begin_nested()
    try:
        # No scheduling in here: the savepoint is rolled back, and a run created inside it
        # would be lost while the once-per-5 s scheduling timer counted it as done.
        preview = leasing.lease_payloads(leasing.claim_once(node, 1, schedule=False))
    finally:
        savepoint.rollback()
    return task_package(preview[0], claimed=False) if preview else None


def _find_lease(node: Node, allocation_id: str, lease_id: str | None) -> Lease:
    """The lease a WeRSS call about ``allocation_id`` acts on.

    :raises ApiError: 404 unknown allocation or lease, 403 when this node never held it.
    """
    allocation = db.session.get(Allocation, allocation_id)
    if allocation is None:
        raise NotFoundError("Allocation", allocation_id)
    if lease_id:
        lease = db.session.get(Lease, lease_id)
        if lease is None or lease.allocation_id != allocation.id:
            raise ApiError(codes.NOT_FOUND,
                           f"Lease {lease_id!r} does not exist for allocation {allocation_id!r}.")
    elif allocation.current_lease_id and allocation.leased_to == node.id:
        lease = db.session.get_one(Lease, allocation.current_lease_id)  # a foreign key
    else:
        lease = db.session.execute(
            db.select(Lease).where(Lease.allocation_id == allocation.id, Lease.node_id == node.id)
            .order_by(Lease.created_at.desc(), Lease.attempt.desc()).limit(1)
        ).scalars().first()
        if lease is None:
            raise ApiError(codes.FORBIDDEN,
                           "This node does not hold this task; claim work with "
                           "POST /cascade/claim-task first.",
                           details={"allocation_id": allocation_id})
    if lease.node_id != node.id:
        raise ApiError(codes.FORBIDDEN, "This lease belongs to another node.")
    return lease


def update_task_status(node: Node, values: dict) -> dict:
    """Renew, complete or fail the lease behind a WeRSS task-status call."""
    lease = _find_lease(node, values["allocation_id"], values["lease_id"])
    status = values["status"]
    result = {"allocation_id": lease.allocation_id, "lease_id": lease.id, "status": status}
    if status in RENEW_STATUSES:
        renewed = leasing.renew(node, lease.id)
        result.update(allocation_status=ALLOC_LEASED, expires_at=renewed["expires_at"])
    elif status in COMPLETE_STATUSES:
        outcome = leasing.complete(node, lease.id, [])
        result.update(allocation_status=outcome["status"], expires_at=None)
    elif status in FAIL_STATUSES:
        outcome = leasing.fail(node, lease.id, values["error_message"] or status,
                               values["retryable"], None)
        result.update(allocation_status=outcome["status"], expires_at=None)
    return result


def upload_articles(node: Node, values: dict) -> dict:
    """Store a WeRSS article batch, fenced to the feeds of the node's live lease."""
    lease = _find_lease(node, values["allocation_id"], values["lease_id"])
    leasing.lease_feed_ids(node, lease.id)  # a WeRSS child that lost the lease hears 409
    stored = articles.ingest_batch(node, values["articles"], WeRSSArticleSchema(), lease.id)
    return {"received": stored["received"], "new_count": stored["new"], "new": stored["new"],
            "refused": stored["refused"], "allocation_id": lease.allocation_id,
            "lease_id": lease.id}


def report_completion(node: Node, values: dict) -> dict:
    """Complete the lease with per-feed results and store them as a task report.

    A report for a lease this node already completed (WeRSS may send task-status
    "completed" first) is stored without a second transition.
    """
    lease = _find_lease(node, values["allocation_id"], values["lease_id"])
    allocation = db.session.get_one(Allocation, lease.allocation_id)  # a foreign key
    if values["task_id"] and values["task_id"] != allocation.task_id:
        raise ApiError(codes.VALIDATION_FAILED, "task_id does not match this allocation.",
                       details={"task_id": [
                           f"This allocation belongs to task {allocation.task_id!r}."]})
    results = values["results"]
    outside = sorted({r["mp_id"] for r in results} - set(allocation.feed_ids))
    if outside:
        raise ApiError(codes.VALIDATION_FAILED, "Results name feeds outside this lease.",
                       details={"results": {"mp_id": [f"not in this lease: {', '.join(outside)}"]}})
    already = lease.status == LEASE_COMPLETED and allocation.status == ALLOC_COMPLETED
    if not already:
        leasing.complete(node, lease.id, results)
    report = node_sync.store_report(node, {
        "task_id": allocation.task_id,
        "allocation_id": allocation.id,
        "results": [{**r, "success_count": r["article_count"] if r["success"] else 0,
                     "timestamp": values["timestamp"]} for r in results],
        "timestamp": values["timestamp"],
    })
    return {"allocation_id": allocation.id, "lease_id": lease.id, "status": ALLOC_COMPLETED,
            "already_completed": already, "report_id": report["report_id"],
            "article_count": values["article_count"], "received": len(results)}
