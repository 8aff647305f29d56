"""The message a task sends for one feed's new articles: its body and content type.

Used by the webhook notifier and by the parent's preview, so a preview is what is sent.
"""

from __future__ import annotations

import json
from datetime import datetime

from .templates import render

JSON_TYPE = "application/json; charset=utf-8"
TEXT_TYPE = "text/plain; charset=utf-8"


def build_message(task: dict, feed: dict, articles: list[dict], now: datetime,
                  content_format: str = "html") -> tuple[str, str]:
    """Return (body, content type); an empty template sends a default JSON document.

    :raises TemplateError: the task's template cannot be rendered.
    """
    template = task.get("message_template") or ""
    if not template.strip():
        document = {"task": {"id": task.get("id"), "name": task.get("name")},
                    "feed": {"id": feed.get("id"), "mp_name": feed.get("mp_name")},
                    "articles": articles}
        return json.dumps(document, ensure_ascii=False), JSON_TYPE
    text = render(template, feed=feed, articles=articles, task=task, now=now,
                  content_format=content_format)
    try:
        json.loads(text)
    except ValueError:
        return text, TEXT_TYPE
    return text, JSON_TYPE
