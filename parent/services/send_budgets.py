"""One rate limit per destination for the whole cascade: send permits from the database.

Every child asks before each message to a robot. A destination's row holds when its next
message may go out; a permit reserves that moment and moves it on by the limit's spacing
(``per`` plus a safety margin, divided by ``count``), so however many children and workers
ask at once, no ``count + 1`` messages fall in any ``per`` seconds. Each reservation is a
guarded UPDATE on the row's ``grants`` counter, so two concurrent askers never get the
same moment. The child then waits until its moment and sends.
"""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from shared import errors as codes
from shared.channels import destination_key

from ..clock import now
from ..errors import ApiError
from ..extensions import db, rowcount
from ..models import Allocation, MessageTask, Node, SendBudget
from ..models.work import ALLOC_LEASED
from .message_tasks import task_channel

# A permit is not granted further ahead than this; the asker is told to come back instead,
# so a crashed child cannot hold many reservations far into the future.
MAX_RESERVATION = 120.0
_ATTEMPTS = 20


def limit_of(channel: str):
    return settings_limits().get(channel)


def settings_limits() -> dict:
    from flask import current_app

    return current_app.config["WERSS_SETTINGS"].channel_limits


def send_limit_wire(channel: str | None) -> dict | None:
    """The limit a lease's task is pushed under, or None: no permits needed."""
    limit = limit_of(channel) if channel else None
    return None if limit is None else {"count": limit.count, "per": limit.per}


def reserve_for_node(node: Node, channel: str, destination: str) -> dict:
    """Reserve a moment for a node, which may ask only for its own live leases' robots.

    Without this check any node could spend every robot's budget (and so hold up other
    children's pushes) by asking under made-up or guessed destination keys.

    :raises ApiError: 403 when no live lease of this node pushes to that destination.
    """
    task_ids = set(db.session.execute(
        db.select(Allocation.task_id).where(
            Allocation.leased_to == node.id, Allocation.status == ALLOC_LEASED,
            Allocation.lease_expires_at > now())).scalars())
    tasks = db.session.execute(
        db.select(MessageTask).where(MessageTask.id.in_(task_ids))).scalars() if task_ids else ()
    if not any(task_channel(task) == channel
               and destination_key(channel, task.web_hook_url or "") == destination
               for task in tasks):
        raise ApiError(codes.FORBIDDEN, "No live lease of this node pushes to that destination "
                       "through that channel; permits are granted only for a lease's own task.")
    return reserve(channel, destination)


def reserve(channel: str, destination: str) -> dict:
    """Reserve the next send moment for ``destination``; say how long to wait for it.

    :raises ApiError: 503 when the row stays contended (the child retries).
    """
    limit = limit_of(channel)
    if limit is None:
        return {"granted": True, "wait": 0.0, "limit": None, "per": None}
    spacing = limit.spacing
    for _ in range(_ATTEMPTS):
        moment = now().timestamp()
        row = db.session.execute(
            db.select(SendBudget.next_at, SendBudget.grants)
            .where(SendBudget.destination == destination)).first()
        if row is None:
            try:
                with db.session.begin_nested():
                    db.session.add(SendBudget(destination=destination, channel=channel,
                                              next_at=moment + spacing, grants=1,
                                              updated_at=moment))
            except IntegrityError:
                continue  # another asker created it first
            return _granted(0.0, limit)
        slot = max(moment, row.next_at)
        wait = slot - moment
        if wait > MAX_RESERVATION:
            return {"granted": False, "retry_after": round(wait - MAX_RESERVATION + spacing, 3),
                    "limit": limit.count, "per": limit.per}
        claimed = rowcount(db.session.execute(
            db.update(SendBudget)
            .where(SendBudget.destination == destination, SendBudget.grants == row.grants)
            .values(next_at=slot + spacing, grants=row.grants + 1, updated_at=moment)
            .execution_options(synchronize_session=False)))
        if claimed == 1:
            return _granted(wait, limit)
    raise ApiError(codes.SEND_BUDGET_BUSY)


def _granted(wait: float, limit) -> dict:
    return {"granted": True, "wait": round(wait, 3), "limit": limit.count, "per": limit.per}


def prune(older_than: float = 86400.0) -> int:
    """Forget destinations nobody sent to for a day (maintenance)."""
    cutoff = now().timestamp() - older_than
    return rowcount(db.session.execute(
        db.delete(SendBudget).where(SendBudget.next_at < cutoff)))


LOCAL_MAX_WAIT = 10.0  # a parent worker sleeps at most this long for a permit


def local_permit(channel: str, destination: str) -> dict | None:
    """The permit callable the parent's own pushes use (test messages, notices).

    :raises ApiError: 429 when the destination's next moment is further off than
        LOCAL_MAX_WAIT (the moment is then not reserved).
    """
    answer = reserve(channel, destination)
    if answer["granted"] and answer["wait"] > LOCAL_MAX_WAIT:
        db.session.rollback()
        answer = {"granted": False, "retry_after": answer["wait"]}
    db.session.commit()
    if not answer["granted"]:
        raise ApiError(codes.SEND_BUDGET_EXHAUSTED,
                       headers={"Retry-After": str(int(answer["retry_after"]) + 1)})
    if answer["wait"] > 0:
        import time

        time.sleep(answer["wait"])
    return {"limit": answer["limit"], "per": answer["per"]} if answer["limit"] else None
