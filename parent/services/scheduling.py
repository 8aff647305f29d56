"""Turning message tasks into runs and allocations: cron slots and manual dispatch.

Materialising is idempotent: a run is INSERT ... ON CONFLICT DO NOTHING on (task, slot),
and only the transaction that inserted it creates its allocations. Any worker of any
parent instance may call schedule_due_runs() at any time; duplicates are impossible.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from croniter import croniter
from sqlalchemy import func

from shared.timeutil import isoformat_z

from ..config import settings
from ..clock import now
from ..extensions import db
from ..models import Allocation, Feed, MessageTask, TaskRun
from ..models.base import new_uuid
from ..models.feed import SOURCE_WECHAT
from ..models.work import ALLOC_LEASED, ALLOC_PENDING, TRIGGER_CRON, TRIGGER_MANUAL
from .message_tasks import STATUS_ENABLED, get_task
from .sqlutil import insert_ignoring_conflicts
from . import work_signal


def latest_slot(cron_exp: str, moment: datetime, tz_name: str = "UTC") -> datetime:
    """Return the most recent due time of a cron expression at or before ``moment``."""
    parts = cron_exp.split()
    tz = ZoneInfo(tz_name)
    # croniter's get_prev is strict, and slots are whole seconds: start one second past.
    start = moment.replace(microsecond=0).astimezone(tz) + timedelta(seconds=1)
    slot = croniter(cron_exp, start, second_at_beginning=len(parts) == 6).get_prev(datetime)
    return slot.astimezone(timezone.utc)


def next_slot(cron_exp: str, moment: datetime, tz_name: str = "UTC") -> datetime:
    """Return the first due time of a cron expression after ``moment``."""
    parts = cron_exp.split()
    start = moment.replace(microsecond=0).astimezone(ZoneInfo(tz_name))
    slot = croniter(cron_exp, start, second_at_beginning=len(parts) == 6).get_next(datetime)
    return slot.astimezone(timezone.utc)


def schedule_view(task: MessageTask, moment: datetime | None = None) -> dict:
    """When an enabled task runs next, in UTC and in the zone its cron is read in."""
    tz_name = settings().schedule_timezone
    view = {"schedule_timezone": tz_name, "next_run_at": None, "next_run_local": None}
    if task.status != STATUS_ENABLED or not task.cron_exp:
        return view
    try:
        slot = next_slot(task.cron_exp, moment or now(), tz_name)
    except (ValueError, KeyError):
        return view
    local = slot.astimezone(ZoneInfo(tz_name))
    view.update(next_run_at=isoformat_z(slot),
                next_run_local=f"{local:%Y-%m-%d %H:%M:%S} {tz_name} (UTC{local:%z})")
    return view


def label_key(labels) -> str:
    return ",".join(sorted(set(labels or [])))


def _task_feeds(task: MessageTask, enabled_feeds: list[Feed]) -> list[Feed]:
    wanted = {ref.get("id") for ref in (task.mps_id or []) if isinstance(ref, dict)}
    if not wanted:
        return enabled_feeds
    return [feed for feed in enabled_feeds if feed.id in wanted]


def _enabled_feeds() -> list[Feed]:
    return list(db.session.execute(
        db.select(Feed).where(Feed.status == 1, Feed.invalid_reason.is_(None))
        .order_by(Feed.sync_time, Feed.id)
    ).scalars())


def _feeds_already_queued(task_id: str) -> set[str]:
    """Feeds of this task that already wait in an allocation not yet finished."""
    rows = db.session.execute(
        db.select(Allocation.feed_ids).where(
            Allocation.task_id == task_id,
            Allocation.status.in_((ALLOC_PENDING, ALLOC_LEASED)),
        )
    ).scalars()
    return {feed_id for feed_ids in rows for feed_id in feed_ids}


def _insert_run(task: MessageTask, slot: datetime, trigger: str) -> str | None:
    """Insert the run for (task, slot); return its id, or None if it already exists."""
    statement = insert_ignoring_conflicts(TaskRun, ["task_id", "slot"]).values(
        id=new_uuid(), task_id=task.id, slot=slot, trigger=trigger, allocation_count=0,
        created_at=now(),
    ).returning(TaskRun.id)
    return db.session.execute(statement).scalar()


def _by_source(feeds: list[Feed]) -> list[list[Feed]]:
    wechat = [feed for feed in feeds if feed.source_type == SOURCE_WECHAT]
    others = [feed for feed in feeds if feed.source_type != SOURCE_WECHAT]
    return [group for group in (others, wechat) if group]


def _create_allocations(run_id: str, task: MessageTask, feeds: list[Feed],
                        coalesce: bool) -> list[Allocation]:
    cfg = settings()
    if coalesce:
        queued = _feeds_already_queued(task.id)
        # Still pending from an earlier slot: that allocation already covers this feed.
        feeds = [feed for feed in feeds if feed.id not in queued]
    size = cfg.feeds_per_allocation
    allocations = []
    # One source per allocation, so a node is only handed sources it runs.
    chunks = [group[start:start + size]
              for group in _by_source(feeds) for start in range(0, len(group), size)]
    for chunk in chunks:
        labels = sorted(set(task.labels or []).union(*(set(f.labels or []) for f in chunk)))
        allocations.append(Allocation(
            run_id=run_id, task_id=task.id, feed_ids=[feed.id for feed in chunk],
            status=ALLOC_PENDING, priority=min(feed.sync_time or 0 for feed in chunk),
            labels=labels, label_key=label_key(labels),
            needs_wechat=any(feed.source_type == SOURCE_WECHAT for feed in chunk),
            attempt=0, max_attempts=cfg.max_attempts,
        ))
    db.session.add_all(allocations)
    if allocations:
        work_signal.bump()  # parked claims look again (docs/OPERATIONS.md)
    db.session.execute(
        db.update(TaskRun).where(TaskRun.id == run_id).values(allocation_count=len(allocations))
    )
    db.session.flush()
    return allocations


def schedule_due_runs(moment: datetime | None = None) -> int:
    """Create the run of every enabled task whose latest cron slot has no run yet.

    Only the latest slot counts: slots missed while the parent was down run once.
    Returns the number of allocations created.
    """
    moment = moment or now()
    tz_name = settings().schedule_timezone
    tasks = list(db.session.execute(
        db.select(MessageTask).where(MessageTask.status == STATUS_ENABLED)
    ).scalars())
    if not tasks:
        return 0
    last_slots = dict(db.session.execute(
        db.select(TaskRun.task_id, func.max(TaskRun.slot))
        .where(TaskRun.trigger == TRIGGER_CRON).group_by(TaskRun.task_id)
    ).tuples().all())
    feeds = None
    created = 0
    for task in tasks:
        try:
            slot = latest_slot(task.cron_exp, moment, tz_name)
        except (ValueError, KeyError):
            continue  # validated on input; an expression croniter later rejects is skipped
        if slot < task.created_at.replace(microsecond=0) or (
            task.id in last_slots and last_slots[task.id] >= slot
        ):
            continue
        run_id = _insert_run(task, slot, TRIGGER_CRON)
        if run_id is None:
            continue  # another worker got there first
        if feeds is None:
            feeds = _enabled_feeds()
        created += len(_create_allocations(run_id, task, _task_feeds(task, feeds), coalesce=True))
    return created


def dispatch_task(task_id: str) -> dict:
    """Run a task now (admin), whatever its schedule or status."""
    task = get_task(task_id)
    moment = now()
    run_id = _insert_run(task, moment, TRIGGER_MANUAL)
    while run_id is None:  # the same instant as another run of this task
        moment += timedelta(microseconds=1)
        run_id = _insert_run(task, moment, TRIGGER_MANUAL)
    allocations = _create_allocations(run_id, task, _task_feeds(task, _enabled_feeds()),
                                      coalesce=False)
    return {"run_id": run_id, "task_id": task.id,
            "allocations": [allocation.id for allocation in allocations]}
