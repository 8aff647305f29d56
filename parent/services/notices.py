"""Admin notices through the ``notice:`` channel: once per change, never once per check.

Changes are read from records, so whoever writes them (presence sweeps, the WeChat login
code) needs to know nothing about notices:
- the sync log's ``node_offline`` and ``wechat_session_expired`` entries (one entry per
  online→offline or valid→expired edge), read after a cursor;
- a task's recent pushes — its deliveries that were sent or failed for good, and the results
  of allocations no delivery records (WeRSS children push on their own): when its last
  ``failing_after`` pushes all failed it is announced once, and again only after a success.
A cursor step is claimed with a guarded UPDATE, so with several workers each change is
announced by exactly one of them. A notice whose send fails is logged, not resent.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import requests
from flask import current_app
from sqlalchemy.exc import IntegrityError

from ..clock import now
from ..extensions import db, rowcount
from ..models import Allocation, Delivery, MessageTask, Node, NoticeMark, SyncLog
from ..models.delivery import DELIVERY_FAILED, DELIVERY_SENT
from ..models.sync_log import OP_NODE_OFFLINE, OP_WECHAT_SESSION_EXPIRED
from ..models.work import ALLOC_COMPLETED

log = logging.getLogger(__name__)

CURSOR = "sync_log_cursor"
FAILING = "failing"
HEALTHY = "ok"
PUSH_FAILED_PREFIX = "push failed"  # how the child reports a failed push in a feed result
LOOKBACK = timedelta(days=1)


def notice_settings() -> dict | None:
    return current_app.config["WERSS_SETTINGS"].notice


def send_notices() -> int:
    """Announce what changed since the last call; return how many notices went out."""
    notice = notice_settings()
    if notice is None:
        return 0
    messages = _sync_log_notices() + _failing_task_notices(notice["failing_after"])
    db.session.commit()  # the claims are ours before anything is sent
    sent = 0
    for title, text in messages:
        try:
            deliver(notice, title, text)
            sent += 1
        except Exception as exc:  # noqa: BLE001 - one notice failing must not stop the rest
            log.warning("system notice %r could not be sent: %s", title, exc)
    return sent


def deliver(notice: dict, title: str, text: str) -> None:
    """Send one notice through the configured channel (with the shared rate limit)."""
    from child.collectors.base import CollectedArticle
    from child.notifiers import notifier_for
    from child.notifiers.channel import ChannelNotifier

    from .send_budgets import local_permit

    with requests.Session() as session:
        notifier = notifier_for(notice, session, 10, permit=local_permit)
        if isinstance(notifier, ChannelNotifier):
            notifier.send(notice, title, f"### {title}\n\n{text}")
            return
        notifier.push(notice, {"id": "werss-notice", "mp_name": "WeRSS Cascade"}, [
            CollectedArticle(id="werss-notice", mp_id="werss-notice", title=title, url="",
                             pic_url="", description=text, content=None,
                             publish_time=int(now().timestamp()))])


def _claim(name: str, old: str | None, new: str) -> bool:
    """Move a mark from ``old`` to ``new``; True only for the one caller that did."""
    if old is None:
        try:
            with db.session.begin_nested():
                db.session.add(NoticeMark(name=name, value=new))
            return True
        except IntegrityError:  # another worker created it first
            return False
    return rowcount(db.session.execute(
        db.update(NoticeMark).where(NoticeMark.name == name, NoticeMark.value == old)
        .values(value=new).execution_options(synchronize_session=False))) == 1


def _marks(prefix: str) -> dict[str, str]:
    return dict(db.session.execute(
        db.select(NoticeMark.name, NoticeMark.value).where(NoticeMark.name.like(prefix + "%"))
    ).tuples().all())


def _sync_log_notices() -> list[tuple[str, str]]:
    mark = _marks(CURSOR).get(CURSOR)
    newest = db.session.execute(db.select(db.func.max(SyncLog.id))).scalar() or 0
    if mark is None:
        # First run: announce what happens from now on, not the history.
        _claim(CURSOR, None, str(newest))
        return []
    if newest <= int(mark) or not _claim(CURSOR, mark, str(newest)):
        return []
    rows = db.session.execute(
        db.select(SyncLog, Node.name).outerjoin(Node, Node.id == SyncLog.node_id)
        .where(SyncLog.id > int(mark), SyncLog.id <= newest,
               SyncLog.operation.in_((OP_NODE_OFFLINE, OP_WECHAT_SESSION_EXPIRED)))
        .order_by(SyncLog.id)).all()
    return [_describe(entry, name or entry.node_id) for entry, name in rows]


def _describe(entry: SyncLog, name: str) -> tuple[str, str]:
    when = entry.finished_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    if entry.operation == OP_NODE_OFFLINE:
        return (f"节点离线：{name}",
                f"子节点 {name}（{entry.node_id}）在 {when} 前后停止了心跳，已标记为离线。"
                f"请检查它的进程、网络与凭证。")
    detail = f"（{entry.error_message}）" if entry.error_message else ""
    return (f"微信登录已过期：{name}",
            f"节点 {name}（{entry.node_id}）的微信公众平台登录在 {when} 过期{detail}。"
            f"重新登录：在管理后台为该节点发起扫码登录"
            f"（POST /api/v1/cascade/nodes/{entry.node_id}/wechat/login），"
            f"再用微信扫描 GET /api/v1/cascade/nodes/{entry.node_id}/wechat/qr.png 的二维码。")


def _outcome(results: list | None) -> str | None:
    """failed / sent / None (nothing was pushed) for one allocation's feed results."""
    failed = [r for r in results or []
              if str(r.get("error") or "").startswith(PUSH_FAILED_PREFIX)]
    if failed:
        return str(failed[0].get("error"))
    if any((r.get("pushed_count") or 0) > 0 for r in results or []):
        return HEALTHY
    return None


def _delivery_outcome(delivery: Delivery) -> str:
    if delivery.status == DELIVERY_SENT:
        return HEALTHY
    code = f"code {delivery.vendor_code} " if delivery.vendor_code else ""
    return f"{PUSH_FAILED_PREFIX}: {delivery.channel} {code}{delivery.vendor_message or ''}"


def _recent_outcomes(failing_after: int) -> dict[str, list[str]]:
    """Each task's newest push outcomes, newest first: its deliveries that ended (sent or
    failed for good), and for pushes no delivery records (a WeRSS child pushes on its own
    and only says so in its results) the allocation's results."""
    since = now() - LOOKBACK
    timed: dict[str, list[tuple]] = {}
    recorded: set[str] = set()
    deliveries = db.session.execute(
        db.select(Delivery).where(Delivery.status.in_((DELIVERY_SENT, DELIVERY_FAILED)),
                                  Delivery.updated_at >= since)
        .order_by(Delivery.updated_at.desc()).limit(5000)).scalars()
    for delivery in deliveries:
        if delivery.allocation_id:
            recorded.add(delivery.allocation_id)
        timed.setdefault(delivery.task_id, []).append(
            (delivery.updated_at, _delivery_outcome(delivery)))
    rows = db.session.execute(
        db.select(Allocation.id, Allocation.task_id, Allocation.results, Allocation.completed_at)
        .where(Allocation.status == ALLOC_COMPLETED, Allocation.completed_at >= since)
        .order_by(Allocation.completed_at.desc(), Allocation.id.desc()).limit(5000)).all()
    for allocation_id, task_id, results, completed_at in rows:
        outcome = None if allocation_id in recorded else _outcome(results)
        if outcome is not None:
            timed.setdefault(task_id, []).append((completed_at, outcome))
    return {task_id: [outcome for _, outcome in sorted(
                items, key=lambda item: item[0], reverse=True)[:failing_after]]
            for task_id, items in timed.items()}


def _failing_task_notices(failing_after: int) -> list[tuple[str, str]]:
    recent = _recent_outcomes(failing_after)
    marks = _marks("task:")
    names = dict(db.session.execute(
        db.select(MessageTask.id, MessageTask.name).where(MessageTask.id.in_(list(recent)))
    ).tuples().all()) if recent else {}
    notices = []
    for task_id, outcomes in recent.items():
        key = f"task:{task_id}"
        failing = len(outcomes) >= failing_after and HEALTHY not in outcomes
        state = FAILING if failing else HEALTHY
        previous = marks.get(key)
        if previous == state or (previous is None and state == HEALTHY):
            if previous is None:
                _claim(key, None, state)
            continue
        if not _claim(key, previous, state) or state == HEALTHY:
            continue
        name = names.get(task_id, task_id)
        notices.append((f"推送持续失败：{name}",
                        f"任务 {name}（{task_id}）最近 {failing_after} 次推送都失败了，最后一次："
                        f"{outcomes[0][:300]}。请检查 webhook 地址、签名密钥与关键词，可用 "
                        f"POST /api/v1/message-tasks/{task_id}/test 发送测试消息。"))
    return notices
