"""When a child whose claim found nothing should claim again: the claim's Retry-After.

Claims never wait at the parent (a waiting claim held a gunicorn thread and queried the
queue every half second, so a fleet of idle children cost a thread and two queries a second
each). An empty claim is answered at once, and the parent, which knows the schedule, tells
the child when to come back: just after the next work it knows of comes due, and never later
than ``claim_max_wait``, which therefore bounds how long work dispatched by hand waits for an
idle child. See docs/OPERATIONS.md ("Waiting claims").
"""

from __future__ import annotations

import math
import time
from datetime import datetime

from flask import current_app
from sqlalchemy import bindparam, func

from ..clock import now
from ..config import settings
from ..extensions import db
from ..models import Allocation, MessageTask, Node
from ..models.work import ALLOC_LEASED, ALLOC_PENDING, status_literal
from .message_tasks import STATUS_ENABLED
from .scheduling import next_slot

# A run is created when its slot is due, and a lease returns to the queue when it has
# expired: come back just after, not at the instant.
MARGIN_SECONDS = 1
# The next cron slot over every enabled task costs a cron evaluation per task; one per few
# seconds per worker is plenty (a task created meanwhile is found by the cap at worst).
NEXT_SLOT_CACHE_SECONDS = 5
_CACHE_KEY = "werss.claim_pacing"


def retry_after(node: Node) -> int:
    """Seconds the node should wait before claiming again, having been given nothing."""
    return retry_after_and_due(node)[0]


def retry_after_and_due(node: Node, generation: int | None = None) -> tuple[int, int]:
    """The claim's Retry-After, and the seconds until its X-Work-Token is due.

    They differ for a node with a WeChat session only: its Retry-After is short so that
    commands reach it with claim answers, while a parked claim is released by the command
    itself (queueing one moves the work generation).
    """
    cfg = settings()
    moment = now()
    cap = max(1, cfg.claim_max_wait)
    due = [moment_ for moment_ in (_next_work_moment(moment, generation), node.wechat_blocked_until)
           if moment_ is not None and moment_ > moment]
    seconds = cap
    if due:
        seconds = max(1, min(cap, math.ceil((min(due) - moment).total_seconds()) + MARGIN_SECONDS))
    if isinstance((node.capabilities or {}).get("wechat"), dict):
        # A node with a WeChat session is the one an admin's login or account search is
        # sent to, and those are delivered with claim answers: it comes back sooner.
        return min(seconds, cfg.wechat_claim_interval), seconds
    return seconds, seconds


# The earliest pending allocation waiting for its moment, and the earliest lease to expire.
_NEXT_MOMENTS = db.select(
    db.select(func.min(Allocation.not_before))
    .where(Allocation.status == status_literal(ALLOC_PENDING),
           Allocation.not_before > bindparam("moment"))
    .scalar_subquery(),
    db.select(func.min(Allocation.lease_expires_at))
    .where(Allocation.status == status_literal(ALLOC_LEASED))
    .scalar_subquery(),
)
# An idle fleet's empty claims ask the same question many times a second, so each worker
# keeps the answer for a second per work generation. A pending allocation appears, or
# returns, only with a move of the generation (work_signal.bump), which drops the copy; a
# lease granted meanwhile (a later expiry than any known, or the first) is seen within the
# second, and an expiry pushed out by a renewal only brings a claim back early.
NEXT_MOMENT_CACHE_SECONDS = 1.0
_MOMENT_CACHE_KEY = "werss.claim_pacing.moments"


def _next_work_moment(moment: datetime, generation: int | None = None) -> datetime | None:
    """The earliest moment new claimable work appears, as far as the parent knows now.

    ``generation``: the work generation the claim was answered under (None: not known,
    nothing is cached).
    """
    cached = current_app.extensions.get(_MOMENT_CACHE_KEY) if generation is not None else None
    if cached and cached["generation"] == generation and time.monotonic() < cached["until"] \
            and all(m is None or m > moment for m in cached["moments"]):
        waiting_until, expiring_at = cached["moments"]
    else:
        waiting_until, expiring_at = db.session.execute(_NEXT_MOMENTS, {"moment": moment}).one()
        if generation is not None:
            current_app.extensions[_MOMENT_CACHE_KEY] = {
                "generation": generation, "moments": (waiting_until, expiring_at),
                "until": time.monotonic() + NEXT_MOMENT_CACHE_SECONDS}
    found = [c for c in (waiting_until, expiring_at, _next_slot(moment)) if c is not None]
    return min(found) if found else None


def known_next_slot() -> datetime | None:
    """The next cron slot this worker last computed (the claim uses it to schedule runs
    that came due since its last look, without a query)."""
    cached = current_app.extensions.get(_CACHE_KEY)
    return cached["slot"] if cached else None


def _next_slot(moment: datetime) -> datetime | None:
    cached = current_app.extensions.get(_CACHE_KEY)
    if cached and time.monotonic() < cached["until"] and (
            cached["slot"] is None or cached["slot"] > moment):
        return cached["slot"]
    tz_name = settings().schedule_timezone
    slots = []
    for cron_exp in db.session.execute(
            db.select(MessageTask.cron_exp).where(MessageTask.status == STATUS_ENABLED)
    ).scalars():
        try:
            slots.append(next_slot(cron_exp, moment, tz_name))
        except (ValueError, KeyError):
            continue  # skipped by scheduling too
    slot = min(slots) if slots else None
    current_app.extensions[_CACHE_KEY] = {
        "slot": slot, "until": time.monotonic() + NEXT_SLOT_CACHE_SECONDS}
    return slot
