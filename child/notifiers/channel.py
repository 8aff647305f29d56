"""What the chat channels share: compose, split, ask for a send permit, send, read the reply.

A channel module says how to build one request and how to read its vendor's answer; this
module does everything else the same way for all of them. Vendors answer errors with HTTP
200 and an error code in the body, so the body decides. Throttling answers are waited out
and tried again (``throttle_retries`` times) before the push fails as retryable.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable
from urllib.parse import urlsplit

import requests

from shared.channels import destination_key, destination_of

from ..addresses import describe_url
from ..collectors.base import CollectedArticle
from ..templates import TemplateError, render
from .base import NotifyError, Permit
from .redact import Redactor, task_secrets, url_secrets

log = logging.getLogger(__name__)

DEFAULT_THROTTLE_WAIT = 60.0
MAX_THROTTLE_WAIT = 600.0


@dataclass
class Outgoing:
    """One HTTP request to a vendor."""

    method: str
    url: str
    json: Any = None
    data: Any = None
    headers: dict = field(default_factory=dict)
    secrets: list = field(default_factory=list)  # computed ones, e.g. a signature


@dataclass
class Reply:
    """What a vendor answered: ``ok``, its own code and message, and the HTTP status."""

    ok: bool
    status: int
    code: int | str | None = None
    message: str = ""
    throttled: bool = False
    retry_after: float | None = None
    retryable: bool = False

    def to_wire(self) -> dict:
        return {"ok": self.ok, "status": self.status, "vendor_code": self.code,
                "vendor_message": self.message}


class ChannelNotifier:
    """Base of every chat channel: subclasses set ``name``, the size bound and two methods."""

    name = ""
    max_size = 4000  # of one message's text, as ``measure`` counts it
    title_limit = 64
    has_title = True  # False: a part's "(i/n)" goes at the start of its text

    def __init__(self, session: requests.Session, timeout: float = 20, *,
                 permit: Permit | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now().astimezone(),
                 sleep: Callable[[float], None] = time.sleep, throttle_retries: int = 3,
                 content_format: str = "html"):
        self.content_format = content_format  # html, text or markdown, as WeRSS's setting
        self.session = session
        self.timeout = timeout
        self.permit = permit
        self.clock = clock
        self.sleep = sleep
        self.throttle_retries = throttle_retries
        self.last_reply: Reply | None = None

    # -- what a channel module provides --------------------------------------------------------
    def build(self, task: dict, title: str, text: str, msg_uuid: str | None) -> Outgoing:
        raise NotImplementedError

    def read(self, status: int, body: Any) -> Reply:
        raise NotImplementedError

    def measure(self, text: str) -> int:
        """Size of ``text`` as the vendor counts it (bytes of UTF-8 unless overridden)."""
        return len(text.encode("utf-8"))

    def destination(self, task: dict) -> str:
        """The robot or chat a push goes to: what one rate limit applies to."""
        return destination_of(task.get("web_hook_url") or "")

    # -- the push ------------------------------------------------------------------------------
    def push(self, task: dict, feed: dict, articles: list[CollectedArticle], *,
             delivery_id: str | None = None) -> int:
        if not articles:
            return 0
        parts = self.messages(task, feed, articles, delivery_id)
        for part_title, part, uuid in parts:
            self.send(task, part_title, part, msg_uuid=uuid)
        log.info("pushed %d article(s) of feed %s via %s in %d message(s)", len(articles),
                 feed.get("id"), self.name, len(parts))
        return len(articles)

    def messages(self, task: dict, feed: dict, articles: list[CollectedArticle],
                 delivery_id: str | None = None) -> list[tuple[str, str, str | None]]:
        """The push as messages in order: ``(title, text, msg_uuid)``, split to the bound."""
        title, text = self.compose(task, feed, articles)
        parts = split_message(text, self.max_size, self.measure)
        messages = []
        for index, part in enumerate(parts):
            part_title = title
            if len(parts) > 1:
                marker = f"({index + 1}/{len(parts)})"
                part_title = f"{title} {marker}"
                if not self.has_title:
                    part = f"{marker}\n{part}"
            # The first part carries the delivery id itself, so a retried single message is
            # recognised by vendors that deduplicate (DingTalk msgUuid).
            uuid = None if delivery_id is None else (
                delivery_id if index == 0 else f"{delivery_id}-{index + 1}")
            messages.append((part_title, part, uuid))
        return messages

    def preview(self, task: dict, feed: dict, articles: list[CollectedArticle]) -> list[dict]:
        """The requests a push would make, in order, without sending: secrets masked."""
        redactor = self.redactor(task)
        previews = []
        for title, text, uuid in self.messages(task, feed, articles):
            outgoing = self.build(task, title[:self.title_limit], text, uuid)
            for value in [*outgoing.headers.values(), *outgoing.secrets]:
                redactor.add(value)
            body = outgoing.json if outgoing.json is not None else outgoing.data
            if isinstance(body, bytes):
                body = body.decode("utf-8", "replace")
            previews.append({"title": title[:self.title_limit], "text": text,
                             "request": {"method": outgoing.method,
                                         "url": describe_url(outgoing.url),
                                         "body": redactor.mask(body)}})
        return previews

    def send(self, task: dict, title: str, text: str, *, msg_uuid: str | None = None) -> Reply:
        """Send one message; return the vendor's reply.

        :raises NotifyError: the vendor refused it, or throttled it past the retries.
        """
        redactor = self.redactor(task)
        self._check_url(task)
        attempt = 0
        while True:
            attempt += 1
            limit = self._wait_for_permit(task)
            outgoing = self.build(task, title[:self.title_limit], text, msg_uuid)
            for value in [*outgoing.headers.values(), *outgoing.secrets,
                          *url_secrets(outgoing.url)]:
                redactor.add(value)
            reply = self._call(outgoing, redactor)
            self.last_reply = reply
            if reply.ok:
                return reply
            message = (f"{self.name} refused the message ({_where(task)}): "
                       f"{_code_text(reply)}")
            if reply.throttled and attempt <= self.throttle_retries:
                wait = _throttle_wait(reply, limit)
                log.warning("%s; trying again in %.0fs", message, wait)
                self.sleep(wait)
                continue
            raise NotifyError(message, retryable=reply.retryable or reply.throttled,
                              retry_after=_throttle_wait(reply, limit) if reply.throttled
                              else None, vendor_code=reply.code)

    def compose(self, task: dict, feed: dict, articles: list[CollectedArticle]) -> tuple[str, str]:
        """The title and markdown text of a push: the task's template, else a list of links."""
        name = feed.get("mp_name") or feed.get("id") or ""
        title = f"{name} 更新了 {len(articles)} 篇文章"
        wire = [article.to_wire() for article in articles]
        template = task.get("message_template") or ""
        if template.strip():
            try:
                return title, render(template, feed=feed, articles=wire, task=task,
                                     now=self.clock(), content_format=self.content_format)
            except TemplateError as exc:
                raise NotifyError(f"the message template of task {task.get('id')} cannot be "
                                  f"rendered: {exc}") from None
        tz = self.clock().tzinfo
        lines = [f"### {title}", ""]
        for article in articles:
            when = datetime.fromtimestamp(article.publish_time, tz).strftime("%Y-%m-%d %H:%M")
            lines.append(f"- [{article.title}]({article.url}) {when}")
        return title, "\n".join(lines)

    def redactor(self, task: dict) -> Redactor:
        return Redactor(task_secrets(task))

    # -- plumbing ------------------------------------------------------------------------------
    def _check_url(self, task: dict) -> None:
        url = (task.get("web_hook_url") or "").strip()
        if urlsplit(url).scheme.lower() not in ("http", "https"):
            raise NotifyError(f"the webhook URL of task {task.get('id')} is not an http(s) URL")

    def _wait_for_permit(self, task: dict) -> dict | None:
        if self.permit is None:
            return None
        # The parent grants permits only for destinations of this node's live leases, and
        # computes the same key from the task it leased (shared.channels.destination_key).
        return self.permit(self.name, destination_key(self.name, task.get("web_hook_url") or ""))

    def _call(self, outgoing: Outgoing, redactor: Redactor) -> Reply:
        where = describe_url(outgoing.url)
        data, headers = outgoing.data, dict(outgoing.headers)
        if outgoing.json is not None:
            # UTF-8 as it is: \u escapes would triple the size vendors bound (Feishu 20 KB).
            data = json.dumps(outgoing.json, ensure_ascii=False).encode("utf-8")
            headers.setdefault("Content-Type", "application/json; charset=utf-8")
        try:
            response = self.session.request(
                outgoing.method, outgoing.url, data=data, headers=headers or None,
                timeout=(self.timeout, self.timeout), allow_redirects=False)
        except requests.Timeout:
            raise NotifyError(f"{self.name} {where} timed out", retryable=True) from None
        except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema,
                requests.exceptions.MissingSchema, requests.exceptions.InvalidHeader) as exc:
            raise NotifyError(f"{self.name} {where} cannot be called: "
                              f"{type(exc).__name__}") from None
        except requests.RequestException as exc:
            raise NotifyError(f"{self.name} {where} could not be reached: "
                              f"{type(exc).__name__}", retryable=True) from None
        with response:
            status = response.status_code
            raw = response.content[:65536]
        try:
            body = json.loads(raw.decode("utf-8")) if raw else None
        except (UnicodeDecodeError, ValueError):
            body = None
        if 300 <= status < 400:
            return Reply(False, status, message=f"HTTP {status}: a redirect, not followed")
        reply = self.read(status, body)
        if not reply.ok and reply.code is None and body is None and raw:
            reply.message = reply.message or raw.decode("utf-8", "replace")
        reply.message = redactor.safe(reply.message)
        if not reply.ok and (status >= 500 or status in (408, 429)):
            reply.retryable = True
        return reply


def read_errcode(status: int, body: Any, throttled_code: int) -> Reply:
    """Read an ``{"errcode", "errmsg"}`` answer (DingTalk, WeCom): 0 is success."""
    if not isinstance(body, dict) or "errcode" not in body:
        return Reply(False, status, message=f"HTTP {status}")
    code = body.get("errcode")
    message = str(body.get("errmsg") or "")
    if code == 0:
        return Reply(True, status, 0, message)
    return Reply(False, status, code, message, throttled=code == throttled_code)


def split_message(text: str, limit: int, measure: Callable[[str], int] = len) -> list[str]:
    """Split ``text`` into parts of at most ``limit``, at line breaks where possible.

    Nothing is dropped: joining the parts with newlines gives the text back (a line longer
    than a part is cut into pieces, in order).
    """
    if measure(text) <= limit:
        return [text]
    budget = max(16, limit - 16)  # room for the "(i/n)" a title-less channel adds
    parts: list[str] = []
    current = ""
    for line in text.split("\n"):
        candidate = line if not current else f"{current}\n{line}"
        if measure(candidate) <= budget:
            current = candidate
            continue
        if current:
            parts.append(current)
            current = ""
        while measure(line) > budget:
            cut = _longest_prefix(line, budget, measure)
            parts.append(line[:cut])
            line = line[cut:]
        current = line
    if current or not parts:
        parts.append(current)
    return parts


def _longest_prefix(line: str, budget: int, measure: Callable[[str], int]) -> int:
    low, high = 1, len(line)
    while low < high:
        middle = (low + high + 1) // 2
        if measure(line[:middle]) <= budget:
            low = middle
        else:
            high = middle - 1
    return low


def _throttle_wait(reply: Reply, limit: dict | None) -> float:
    if reply.retry_after is not None:
        return min(MAX_THROTTLE_WAIT, max(0.0, float(reply.retry_after)))
    # One window of the destination's limit is long enough for the vendor's count to reset.
    if limit and limit.get("per"):
        return min(MAX_THROTTLE_WAIT, float(limit["per"]))
    return DEFAULT_THROTTLE_WAIT


def _code_text(reply: Reply) -> str:
    if reply.code is None:
        return f"HTTP {reply.status}" + (f" {reply.message}" if reply.message else "")
    return f"code {reply.code} {reply.message}".strip() + f" (HTTP {reply.status})"


def _where(task: dict) -> str:
    return describe_url((task.get("web_hook_url") or "").strip())
