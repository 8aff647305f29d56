"""Preview a message task: its template rendered against sample or recent articles."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from child.notifiers.base import NotifyError
from shared import errors as codes
from shared.channels import MESSAGE_TYPE_MESSAGE, effective_channel

from ..config import settings
from ..clock import now
from ..errors import ApiError, NotFoundError
from ..extensions import db
from ..models import Article, Feed, MessageTask
from .message_tasks import task_to_wire

SAMPLE_FEED = {"id": "sample-feed", "mp_name": "示例公众号", "mp_cover": "", "mp_intro": "示例"}
SAMPLE_ARTICLES = [
    {"id": "sample-2", "mp_id": "sample-feed", "title": "示例文章二：\"引号\"与 <标签>",
     "url": "https://mp.weixin.qq.com/s/sample-2", "pic_url": "",
     "description": "第二篇示例的摘要", "publish_time": 1714608000,
     "content": "<h2>小标题</h2><p>第二篇的<b>正文</b>。</p>"},
    {"id": "sample-1", "mp_id": "sample-feed", "title": "示例文章一",
     "url": "https://mp.weixin.qq.com/s/sample-1",
     "pic_url": "https://mmbiz.qpic.cn/sample-1/0?wx_fmt=jpeg",
     "description": "第一篇示例的摘要", "publish_time": 1714521600,
     "content": "<p>第一篇的正文。</p><ul><li>要点一</li><li>要点二</li></ul>"},
]


def preview_message(values: dict) -> dict:
    """Render what the child would send for one feed, without sending anything.

    ``body`` is the rendered template (as WeRSS shows it); ``messages`` are the requests the
    task's channel (or the ``channel`` asked for) would make, split and shaped as sent, with
    signatures and tokens masked.

    :raises ApiError: 422 when the template cannot be rendered; 404 for an unknown task/feed.
    """
    from child.messages import build_message  # the child's own renderer: the same text
    from child.templates import TemplateError

    task = _task(values)
    feed, articles, source = _feed_and_articles(values, task)
    moment = now().astimezone(ZoneInfo(settings().schedule_timezone))
    try:
        body, content_type = build_message(task, feed, articles, moment,
                                           values["content_format"])
    except TemplateError as exc:
        raise ApiError(codes.VALIDATION_FAILED, details={"message_template": [str(exc)]}) \
            from None
    try:
        channel, messages = _as_sent(task, feed, articles, moment, values["content_format"])
    except NotifyError as exc:  # the template rendered: what is left is the channel's URL
        raise ApiError(codes.VALIDATION_FAILED, details={"web_hook_url": [str(exc)]}) from None
    return {"body": body, "content_type": content_type, "message_type": task["message_type"],
            "channel": channel, "messages": messages, "message_count": len(messages),
            "articles": source, "article_count": len(articles),
            "feed": {"id": feed["id"], "mp_name": feed["mp_name"]}}


def _as_sent(task: dict, feed: dict, articles: list[dict], moment: datetime,
             content_format: str) -> tuple[str, list[dict]]:
    """The channel's own notifier shapes the push, exactly as a child's would."""
    import requests

    from child.collectors.base import CollectedArticle
    from child.notifiers import REGISTRY

    channel = effective_channel(task)
    given: list[dict[str, Any]] = [{key: article.get(key) for key in _ARTICLE_FIELDS
                                    if article.get(key) is not None} for article in articles]
    collected = [CollectedArticle.fitted(**fields) for fields in given]
    with requests.Session() as session:  # never used: nothing is sent
        notifier = REGISTRY[channel](session, content_format=content_format,
                                     clock=lambda: moment)
        return channel, notifier.preview(task, feed, collected)


_ARTICLE_FIELDS = ("id", "mp_id", "title", "url", "pic_url", "description", "content",
                   "publish_time")


def _task(values: dict) -> dict:
    if values.get("task_id"):
        row = db.session.get(MessageTask, values["task_id"])
        if row is None:
            raise NotFoundError("message task", values["task_id"])
        task = task_to_wire(row)
    else:
        task = {"id": "preview", "name": "预览", "message_type": MESSAGE_TYPE_MESSAGE,
                "message_template": "", "mps_id": []}
    if values.get("channel") is not None:
        task = {**task, "channel": values["channel"]}
    for name in ("message_template", "message_type"):
        if values.get(name) is not None:
            task[name] = values[name]
    return task


def _feed_and_articles(values: dict, task: dict) -> tuple[dict, list[dict], str]:
    feed_id = values.get("feed_id") or next(
        (ref.get("id") for ref in task.get("mps_id") or [] if ref.get("id")), None)
    feed = db.session.get(Feed, feed_id) if feed_id else None
    if values.get("feed_id") and feed is None:
        raise NotFoundError("feed", values["feed_id"])
    if values["articles"] == "recent":
        query = db.select(Article).order_by(Article.publish_time.desc(), Article.id.desc()) \
            .limit(values["limit"])
        if feed is not None:
            query = query.where(Article.feed_id == feed.id)
        rows = db.session.execute(query).scalars().all()
        if rows:
            if feed is None:
                feed = db.session.get(Feed, rows[0].feed_id)
                rows = [row for row in rows if row.feed_id == rows[0].feed_id]
            return _feed_wire(feed, rows[0].feed_id), [_article_wire(r) for r in rows], "recent"
    articles = SAMPLE_ARTICLES[:values["limit"]]
    if feed is None:
        return dict(SAMPLE_FEED), [dict(a) for a in articles], "sample"
    return _feed_wire(feed, feed.id), [{**a, "mp_id": feed.id} for a in articles], "sample"


def _feed_wire(feed: Feed | None, feed_id: str) -> dict:
    if feed is None:
        return {"id": feed_id, "mp_name": "", "mp_cover": "", "mp_intro": ""}
    return {"id": feed.id, "mp_name": feed.mp_name, "mp_cover": feed.mp_cover or "",
            "mp_intro": feed.mp_intro or ""}


def _article_wire(article: Article) -> dict:
    return {"id": article.article_id, "mp_id": article.feed_id, "title": article.title,
            "url": article.url, "pic_url": article.pic_url, "description": article.description,
            "publish_time": article.publish_time, "content": article.content}
