"""Push new articles to a task's webhook: one POST of the rendered template per feed.

Header values, cookies and the webhook URL's query (DingTalk-style tokens live there) never
reach a log line or an error message.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Callable
from urllib.parse import urlsplit

import requests

from shared.channels import destination_key

from ..addresses import describe_url
from ..collectors.base import CollectedArticle
from ..messages import build_message
from ..templates import TemplateError
from .base import DELIVERY_ID_HEADER, NotifyError, Permit
from .redact import Redactor, task_secrets

log = logging.getLogger(__name__)

MAX_ERROR_BODY = 200


class WebhookNotifier:
    """POST the task's message (its template rendered, or a default JSON document)."""

    name = "webhook"

    def __init__(self, session: requests.Session, timeout: float = 20, *,
                 clock: Callable[[], datetime] = lambda: datetime.now().astimezone(),
                 content_format: str = "html", permit: Permit | None = None):
        self.permit = permit
        self.session = session
        self.timeout = timeout
        self.content_format = content_format  # html, text or markdown, as WeRSS's setting
        self.clock = clock  # its time zone is the one dates are shown in
        self.last_reply: dict | None = None

    def push(self, task: dict, feed: dict, articles: list[CollectedArticle], *,
             delivery_id: str | None = None) -> int:
        if not articles:
            return 0
        url = (task.get("web_hook_url") or "").strip()
        where, parts = describe_url(url), urlsplit(url)
        if parts.scheme.lower() not in ("http", "https"):
            raise NotifyError(f"the webhook URL of task {task.get('id')} is not an http(s) URL",
                              retryable=False)
        body, content_type = self._body(task, feed, articles)
        headers, secrets = _headers(task)
        # Error pages sometimes echo the URL, or just the token from it, in any encoding.
        redactor = Redactor([*secrets, *task_secrets(task)])
        if not any(name.lower() == "content-type" for name in headers):
            headers["Content-Type"] = content_type
        if self.permit is not None:
            self.permit(self.name, destination_key(self.name, url))
        if delivery_id:
            headers[DELIVERY_ID_HEADER] = delivery_id
        try:
            response = self.session.post(url, data=body.encode("utf-8"), headers=headers,
                                         timeout=(self.timeout, self.timeout),
                                         allow_redirects=False, stream=True)
        except requests.Timeout:
            raise NotifyError(f"webhook {where} timed out", retryable=True) from None
        except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema,
                requests.exceptions.MissingSchema, requests.exceptions.InvalidHeader) as exc:
            raise NotifyError(f"webhook {where} cannot be called: {type(exc).__name__}",
                              retryable=False) from None
        except requests.RequestException as exc:
            raise NotifyError(f"webhook {where} could not be reached: "
                              f"{type(exc).__name__}", retryable=True) from None
        with response:
            status = response.status_code
            if 200 <= status < 300:
                self.last_reply = {"ok": True, "status": status, "vendor_code": None,
                                   "vendor_message": f"HTTP {status}"}
                log.info("pushed %d article(s) of feed %s to webhook %s (HTTP %d)",
                         len(articles), feed.get("id"), where, status)
                return len(articles)
            message = f"webhook {where} answered HTTP {status}"
            if 300 <= status < 400:
                message += " (a redirect; it is not followed for a POST, fix the URL)"
            else:
                excerpt = _excerpt(response, redactor)
                if excerpt:
                    message += f": {excerpt}"
        retryable = status == 408 or status == 429 or status >= 500
        raise NotifyError(message, retryable=retryable, vendor_code=str(status),
                          retry_after=_retry_after(response.headers.get("Retry-After")))

    def preview(self, task: dict, feed: dict, articles: list[CollectedArticle]) -> list[dict]:
        """The one POST a push would make, without sending: header values masked."""
        url = (task.get("web_hook_url") or "").strip()
        body, content_type = self._body(task, feed, articles)
        headers, secrets = _headers(task)
        redactor = Redactor([*secrets, *task_secrets(task)])
        return [{"title": None, "text": body,
                 "request": {"method": "POST", "url": describe_url(url) if url else "",
                             "content_type": content_type,
                             "headers": sorted(headers), "body": redactor.mask(body)}}]

    def _body(self, task: dict, feed: dict, articles: list[CollectedArticle]) -> tuple[str, str]:
        wire = [article.to_wire() for article in articles]
        try:
            return build_message(task, feed, wire, self.clock(), self.content_format)
        except TemplateError as exc:
            raise NotifyError(f"the message template of task {task.get('id')} cannot be "
                              f"rendered: {exc}", retryable=False) from None


def _headers(task: dict) -> tuple[dict[str, str], list[str]]:
    """Return the task's headers plus its cookies as one Cookie header, and the secrets."""
    headers: dict[str, str] = {}
    secrets: list[str] = []
    for name, value in (task.get("headers") or {}).items():
        if not isinstance(name, str) or not isinstance(value, str) or not name.strip() \
                or not _sendable(name + value):
            raise NotifyError(f"task {task.get('id')} has an invalid header {str(name)[:64]!r}",
                              retryable=False)
        headers[name.strip()] = value
        secrets.append(value)
    cookies = []
    for part in (task.get("cookies") or "").split(";"):
        name, sep, value = part.strip().partition("=")
        if not sep or not name.strip():
            continue
        if not _sendable(part):
            raise NotifyError(f"task {task.get('id')} has an invalid cookie", retryable=False)
        cookies.append(f"{name.strip()}={value.strip()}")
        secrets.append(value.strip())
    if cookies:
        existing = next((n for n in headers if n.lower() == "cookie"), None)
        if existing:
            headers[existing] = "; ".join([headers[existing], *cookies])
        else:
            headers["Cookie"] = "; ".join(cookies)
    return headers, secrets


def _sendable(text: str) -> bool:
    """HTTP/1.1 header text: Latin-1 without line breaks (requests would echo it in errors)."""
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return not any(c in text for c in "\r\n\x00")


def _excerpt(response: requests.Response, redactor: Redactor) -> str:
    """The start of an error answer, withheld whole if it echoes a secret in any encoding."""
    try:
        raw = next(response.iter_content(chunk_size=4096), b"")
    except requests.RequestException:
        return ""
    return redactor.safe(raw.decode(response.encoding or "utf-8", errors="replace"),
                         MAX_ERROR_BODY)


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
