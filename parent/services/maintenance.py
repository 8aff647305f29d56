"""Housekeeping any worker may run at any time: presence, expired leases, due runs, pruning.

Every step is a guarded update or an idempotent delete, so several workers or parent
instances running it at once is harmless. No special process is needed.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from sqlalchemy import text

from ..config import settings
from ..clock import now
from ..extensions import db, rowcount
from ..models import Allocation, IdempotencyRecord, Lease, TaskReport, TaskRun, UsedNonce
from ..models.work import ALLOC_COMPLETED, ALLOC_DEAD
from ..models.replication import ENTITY_FEED, ENTITY_MESSAGE_TASK
from . import admins, leasing, nodes, replication, scheduling, sync_logs
from . import notices, presence, send_budgets

log = logging.getLogger(__name__)
IDEMPOTENCY_RETENTION = timedelta(hours=48)
NONCE_RETENTION = timedelta(seconds=2 * 300 + 60)
FLUSH_TICK = 1.0  # seconds between the background thread's looks at what is due


def run_maintenance() -> dict:
    """Run every housekeeping step once, each in its own transaction."""
    cfg = settings()
    report = {}
    steps = {
        "presence": nodes.sweep_presence,
        "notices": notices.send_notices,
        "send_budgets": send_budgets.prune,
        "expired_leases": leasing.requeue_expired,
        "schedule": scheduling.schedule_due_runs,
        "sync_logs": lambda: sync_logs.prune_sync_logs(cfg.sync_log_retention_days),
        "feed_changes": lambda: replication.prune_change_log(ENTITY_FEED, cfg.change_log_retention_days),
        "task_changes": lambda: replication.prune_change_log(
            ENTITY_MESSAGE_TASK, cfg.change_log_retention_days),
        "nonces": lambda: rowcount(db.session.execute(
            db.delete(UsedNonce).where(UsedNonce.seen_at < now() - NONCE_RETENTION))),
        "idempotency": lambda: rowcount(db.session.execute(
            db.delete(IdempotencyRecord).where(
                IdempotencyRecord.created_at < now() - IDEMPOTENCY_RETENTION))),
        "tokens": lambda: admins.prune_tokens_and_failures(cfg.login_window_seconds),
        "finished_work": lambda: prune_finished_work(cfg.work_retention_days),
        "statistics": refresh_queue_statistics,
        "reports": lambda: rowcount(db.session.execute(
            db.delete(TaskReport).where(TaskReport.received_at < now() - timedelta(
                days=cfg.sync_log_retention_days)))),
    }
    for name, step in steps.items():
        try:
            report[name] = step()
            db.session.commit()
        except Exception:  # noqa: BLE001 - one failing step must not stop the others
            db.session.rollback()
            log.exception("maintenance step %s failed", name)
    return report


ANALYZE_AFTER_CHANGES = 1000


def refresh_queue_statistics() -> bool:
    """On PostgreSQL, ANALYZE allocations once many rows changed since the last time.

    Without fresh statistics (autovacuum off, or not yet run after a big dispatch) the
    planner sorts every pending row on each claim instead of reading the claim index in
    order; autovacuum's own threshold (10 % of the table) is too lax for a queue.
    """
    if db.session.get_bind().dialect.name != "postgresql":
        return False
    changed = db.session.execute(text(
        "SELECT n_mod_since_analyze FROM pg_stat_user_tables WHERE relname = 'allocations'"
    )).scalar()
    if not changed or changed < ANALYZE_AFTER_CHANGES:
        return False
    db.session.execute(text("ANALYZE allocations"))
    return True


def prune_finished_work(retention_days: int) -> int:
    """Forget completed and dead allocations (and their leases and runs) past retention.

    Articles are the product and are kept; feeds keep their last-run bookkeeping.
    """
    cutoff = now() - timedelta(days=retention_days)
    finished = db.select(Allocation.id).where(
        Allocation.status.in_((ALLOC_COMPLETED, ALLOC_DEAD)), Allocation.updated_at < cutoff)
    db.session.execute(db.delete(Lease).where(Lease.allocation_id.in_(finished))
                       .execution_options(synchronize_session=False))
    removed = rowcount(db.session.execute(
        db.delete(Allocation).where(Allocation.id.in_(finished))
        .execution_options(synchronize_session=False)))
    newer = db.aliased(TaskRun)
    db.session.execute(
        db.delete(TaskRun).where(
            TaskRun.created_at < cutoff,
            ~db.exists().where(Allocation.run_id == TaskRun.id),
            # A task's latest run marks its last slot: without it a monthly task would
            # run that old slot again once retention passed.
            db.exists().where(newer.task_id == TaskRun.task_id, newer.slot > TaskRun.slot),
        ).execution_options(synchronize_session=False))
    return removed


def start_background_maintenance(app) -> threading.Thread:
    """Run maintenance every ``maintenance_interval`` seconds in a daemon thread, and in
    between write this worker's signs of life and unchanged pulls once they are due
    (presence.flush_if_due), so they reach the database even when no request comes."""
    stop = threading.Event()

    def loop():
        interval = app.config["WERSS_SETTINGS"].cascade.maintenance_interval
        next_run = time.monotonic() + interval
        while not stop.wait(FLUSH_TICK):
            with app.app_context():
                try:
                    if time.monotonic() >= next_run:
                        next_run = time.monotonic() + interval
                        run_maintenance()
                    else:
                        presence.flush_if_due()
                except Exception:  # noqa: BLE001 - the thread must outlive a failed flush
                    db.session.rollback()
                    log.exception("flushing signs of life failed")
                finally:
                    db.session.remove()

    thread = threading.Thread(target=loop, name="werss-maintenance", daemon=True)
    thread.stop_event = stop  # type: ignore[attr-defined]
    thread.start()
    return thread
