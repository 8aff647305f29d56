"""The only place the child speaks HTTP to the parent.

One ``_request()`` does everything: it signs with a fresh timestamp and nonce on every
attempt, sends one Idempotency-Key per logical write (the caller keeps it across
retries and restarts), uses explicit timeouts, and retries connection errors, timeouts,
429 (honouring Retry-After) and 502/503/504 with capped exponential backoff and jitter.
"""

from __future__ import annotations

import json
import logging
import random
import socket
import threading
import time
import uuid
import weakref
from dataclasses import dataclass
from typing import Any, Callable

import requests
from marshmallow import Schema, ValidationError
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from shared import paths, signing
from shared.envelope import (
    CURSOR_HEADER, IDEMPOTENCY_HEADER, NEXT_AFTER_HEADER, REQUEST_ID_HEADER, WORK_TOKEN_HEADER,
)
from shared.lease_schemas import LeaseSchema
from shared.schemas import (
    FeedChangesSchema, FeedSchema, MessageTaskChangesSchema, MessageTaskSchema,
)

from . import errors
from .config import ChildConfig

log = logging.getLogger(__name__)
RETRY_STATUSES = {502, 503, 504}
# What the parent sends, loaded through the contract's schemas: the child works only with
# the fields shared/ declares, in the types it declares.
_PULLED = {paths.FEEDS: FeedSchema(many=True), paths.MESSAGE_TASKS: MessageTaskSchema(many=True)}
_CHANGES = {paths.FEED_CHANGES: FeedChangesSchema(),
            paths.MESSAGE_TASK_CHANGES: MessageTaskChangesSchema()}
_LEASES = LeaseSchema(many=True)
# Claim parking (docs/PROTOCOL.md#post-claim): a parent that parks names its work generation
# in this header; sent back with ``Prefer: wait=N`` the claim is held open until work
# appears or N seconds pass.
PARK_WAIT = 50


def load_wire(schema: Schema, data: Any, route: str) -> Any:
    """Load a payload the parent sent through its shared schema.

    :raises errors.ContractError: the payload breaks the contract (named by field).
    """
    try:
        return schema.load(data)
    except ValidationError as exc:
        raise errors.ContractError(
            f"the parent's answer to {route} breaks the wire contract: "
            f"{str(exc.messages)[:500]}") from None


@dataclass
class RetryPolicy:
    """How often and how long to retry one logical call (kept apart from transport)."""

    max_attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 30.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay * 4)
        capped = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return random.uniform(capped / 2, capped)  # jitter: spread a fleet's retries


@dataclass
class Response:
    status: int
    data: Any
    headers: CaseInsensitiveDict
    request_id: str | None


@dataclass
class Page:
    """One page of a paged full pull (items None: not modified)."""

    items: list | None
    etag: str | None
    cursor: str | None
    next_after: str | None


def new_idempotency_key() -> str:
    return uuid.uuid4().hex


class AbortableAdapter(HTTPAdapter):
    """An adapter whose requests in flight another thread can end at once (``abort()``).

    A parked claim blocks its thread in a socket read for up to a minute; closing the
    session does not touch a connection in use, so the adapter keeps the connections its
    pools have handed out and shuts their sockets down, which wakes the blocked read.
    """

    def __init__(self, *args, **kwargs):
        # Weak: a connection urllib3 drops after an error is never handed back to its pool.
        self._in_use: weakref.WeakSet = weakref.WeakSet()
        self._lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        in_use, lock = self._in_use, self._lock

        def tracking(base):
            class Pool(base):
                def _get_conn(self, timeout=None):
                    conn = super()._get_conn(timeout)
                    with lock:
                        in_use.add(conn)
                    return conn

                def _put_conn(self, conn):
                    if conn is not None:  # None: urllib3 closed it after an error
                        with lock:
                            in_use.discard(conn)
                    super()._put_conn(conn)
            return Pool

        self.poolmanager.pool_classes_by_scheme = {
            "http": tracking(HTTPConnectionPool), "https": tracking(HTTPSConnectionPool)}

    def abort(self) -> int:
        """Shut down the socket of every request in flight; returns how many there were."""
        with self._lock:
            socks = [conn.sock for conn in self._in_use if getattr(conn, "sock", None)]
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the other side
        return len(socks)


class ParentClient:
    def __init__(self, config: ChildConfig, session: requests.Session | None = None,
                 retry: RetryPolicy | None = None, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.time, user_agent: str = "werss-child"):
        self.config = config
        self.session = session or requests.Session()
        self.session.trust_env = False
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.clock = clock
        self.user_agent = user_agent
        self.last_success_at: float | None = None
        # Hears the commands (WeChat login, account search) the parent sends along with
        # heartbeat and claim answers.
        self.on_commands: Callable[[list], None] | None = None
        # Seconds the parent asked us to wait after the last claim that brought nothing
        # (its Retry-After, from the work it knows is coming); None when it said nothing.
        self.claim_retry_after: float | None = None
        # The X-Work-Token of the last claim answer: the next claim parks with it. None: the
        # parent (or a proxy, or the WeRSS prefix) does not park; follow Retry-After.
        self.claim_token: str | None = None
        # A parent that has answered a claim with Retry-After or a token does not hold
        # claims in a long-poll of its own (only parents older than claim pacing do).
        self.parent_long_polls = True
        # Claims have a session of their own, so a stop can end the one in flight without
        # touching the connections of the leases still being finished (a session given by
        # the caller, e.g. a test's in-process parent, serves claims too).
        self._claim_adapter = AbortableAdapter()
        if session is None:
            self.claim_session = requests.Session()
            self.claim_session.trust_env = False
            self.claim_session.mount("http://", self._claim_adapter)
            self.claim_session.mount("https://", self._claim_adapter)
        else:
            self.claim_session = session
        self._claims_aborted = threading.Event()

    # -- transport ---------------------------------------------------------------------------
    def _authorization(self, prepared: requests.PreparedRequest) -> str:
        if self.config.auth_mode == "plain":
            return signing.plain_authorization(self.config.api_key, self.config.api_secret)
        path, _, query = prepared.path_url.partition("?")
        body = prepared.body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        # requests leaves method None only on a PreparedRequest nobody prepared.
        method = prepared.method or "GET"
        return signing.signed_authorization(self.config.api_key, self.config.api_secret,
                                            method, path, query, body,
                                            timestamp=int(self.clock()))

    def _request(self, method: str, route: str, *, json_body: Any = None, params=None,
                 idempotency_key: str | None = None, headers: dict | None = None,
                 timeout: float | None = None, retry: RetryPolicy | None = None,
                 session: requests.Session | None = None,
                 cancelled: threading.Event | None = None) -> Response:
        """``cancelled``: once set, a failed attempt is not retried (the caller is stopping)."""
        policy = retry or self.retry
        url = self.config.parent_api_url + paths.CASCADE_PREFIX + route
        body = None if json_body is None else json.dumps(json_body, ensure_ascii=False).encode()
        attempt = 0
        while True:
            attempt += 1
            request_headers = {"User-Agent": self.user_agent, "Accept": "application/json",
                               **(headers or {})}
            if body is not None:
                request_headers["Content-Type"] = "application/json"
            if idempotency_key:
                request_headers[IDEMPOTENCY_HEADER] = idempotency_key
            prepared = requests.Request(method, url, data=body, params=params,
                                        headers=request_headers).prepare()
            # Signed afresh on every attempt: a retry is a new request with a new nonce.
            prepared.headers["Authorization"] = self._authorization(prepared)
            try:
                raw = (session or self.session).send(
                    prepared, timeout=(min(10.0, self.config.request_timeout),
                                       timeout or self.config.request_timeout),
                    verify=self.config.ca_bundle or True, allow_redirects=False)
            except requests.RequestException as exc:
                # Connection errors, timeouts, and answers cut off mid-body alike.
                error = errors.ParentUnavailableError(
                    f"cannot reach the parent at {self.config.parent_api_url}: "
                    f"{type(exc).__name__}")
            else:
                try:
                    return self._interpret(raw)
                except (errors.ParentUnavailableError) as exc:
                    error = exc
            if attempt >= policy.max_attempts or (cancelled and cancelled.is_set()):
                raise error
            wait = policy.delay(attempt, getattr(error, "retry_after", None))
            log.info("parent call %s %s failed (%s); retry %d in %.1fs", method, route, error,
                     attempt, wait)
            self.sleep(wait)

    def _interpret(self, raw: requests.Response) -> Response:
        request_id = raw.headers.get(REQUEST_ID_HEADER)
        if raw.status_code in (200, 201, 202, 204, 304):
            self.last_success_at = self.clock()
            data = None
            if raw.status_code not in (204, 304) and raw.content:
                try:
                    data = raw.json().get("data")
                except (ValueError, AttributeError):
                    raise errors.ParentUnavailableError(
                        "the parent answered with something that is not JSON",
                        raw.status_code, request_id=request_id) from None
            return Response(raw.status_code, data, CaseInsensitiveDict(raw.headers), request_id)
        try:
            body = raw.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        code = body.get("error")
        message = body.get("message") or f"HTTP {raw.status_code}"
        kwargs: dict[str, Any] = dict(status=raw.status_code, code=code,
                                      details=body.get("details"),
                                      request_id=body.get("request_id") or request_id)
        status = raw.status_code
        if status == 429:
            retry_after = _retry_after(raw.headers.get("Retry-After"))
            raise errors.RateLimitedError(message, retry_after=retry_after, **kwargs)
        if status in RETRY_STATUSES or status >= 500:
            raise errors.ParentUnavailableError(
                message, retry_after=_retry_after(raw.headers.get("Retry-After")), **kwargs)
        if status == 401:
            if code in ("request_expired", "replayed_request"):
                # Clock skew or a nonce collision: a fresh signature may pass.
                raise errors.ParentUnavailableError(message, **kwargs)
            raise errors.AuthenticationError(message, **kwargs)
        if status == 403:
            raise errors.PermissionDeniedError(message, **kwargs)
        if status == 404:
            raise errors.NotFoundError(message, **kwargs)
        if status == 409:
            raise errors.ConflictError(message, **kwargs)
        if status == 410:
            raise errors.CursorExpiredError(message, **kwargs)
        raise errors.InvalidRequestError(message, **kwargs)

    # -- routes ------------------------------------------------------------------------------
    def heartbeat(self, payload: dict) -> dict:
        data = self._request("POST", paths.HEARTBEAT, json_body=payload).data
        self._hand_over_commands(data)
        return data

    def _hand_over_commands(self, data) -> None:
        if isinstance(data, dict) and data.get("commands") and self.on_commands:
            self.on_commands(data["commands"])

    def report_wechat_login(self, body: dict) -> dict:
        return self._request("POST", paths.WECHAT_LOGIN_STATE, json_body=body,
                             idempotency_key=new_idempotency_key()).data

    def command_result(self, command_id: str, body: dict) -> dict:
        return self._request("POST", paths.COMMAND_RESULT.format(command_id=command_id),
                             json_body=body, idempotency_key=new_idempotency_key()).data

    def whoami(self, retry: RetryPolicy | None = None) -> dict:
        return self._request("GET", paths.WHOAMI, retry=retry).data

    def pull(self, route: str, etag: str | None = None) -> tuple[list | None, str | None, str | None]:
        """Full pull of feeds or tasks: (items or None if unchanged, etag, cursor)."""
        headers = {"If-None-Match": etag} if etag else None
        response = self._request("GET", route, headers=headers)
        etag = response.headers.get("ETag", etag)
        cursor = response.headers.get(CURSOR_HEADER)
        if response.status == 304:
            return None, etag, cursor
        return load_wire(_PULLED[route], response.data, route), etag, cursor

    def pull_page(self, route: str, limit: int, after: str | None = None,
                  etag: str | None = None) -> "Page":
        """One page of a full pull; ``etag`` only on page one (a 304 means nothing changed)."""
        params = {"limit": limit, **({"after": after} if after is not None else {})}
        headers = {"If-None-Match": etag} if etag else None
        response = self._request("GET", route, params=params, headers=headers)
        if response.status == 304:
            return Page(None, response.headers.get("ETag", etag), None, None)
        return Page(load_wire(_PULLED[route], response.data, route), response.headers.get("ETag"),
                    response.headers.get(CURSOR_HEADER), response.headers.get(NEXT_AFTER_HEADER))

    def changes(self, route: str, since: str, limit: int = 500,
                etag: str | None = None) -> dict | None:
        """One page of changes after ``since``, its ETag under "etag"; None on a 304."""
        headers = {"If-None-Match": etag} if etag else None
        response = self._request("GET", route, params={"since": since, "limit": limit},
                                 headers=headers)
        if response.status == 304:
            return None
        return {**load_wire(_CHANGES[route], response.data, route),
                "etag": response.headers.get("ETag")}

    def claim(self, max_count: int, wait: int, idempotency_key: str) -> list[dict]:
        """Claim up to ``max_count`` leases; parked at the parent when it gave us a token.

        ``wait`` goes in the body for parents older than claim pacing, which long-poll for it.
        """
        if self._claims_aborted.is_set():
            raise errors.ParentUnavailableError("claims were ended: the agent is stopping")
        headers, timeout = None, wait + 15
        if self.claim_token:
            headers = {WORK_TOKEN_HEADER: self.claim_token, "Prefer": f"wait={PARK_WAIT}"}
            timeout = PARK_WAIT + 15
        self.claim_token = None  # a failed claim leaves no token: the next one asks afresh
        response = self._request("POST", paths.CLAIM, json_body={"max": max_count, "wait": wait},
                                 idempotency_key=idempotency_key, headers=headers,
                                 timeout=timeout, session=self.claim_session,
                                 cancelled=self._claims_aborted)
        self.claim_token = response.headers.get(WORK_TOKEN_HEADER) or None
        retry_after = _retry_after(response.headers.get("Retry-After"))
        if self.claim_token or retry_after is not None:
            self.parent_long_polls = False
        if response.status == 204:
            self.claim_retry_after = retry_after
            return []
        self.claim_retry_after = None
        self._hand_over_commands(response.data)
        return load_wire(_LEASES, response.data["leases"], paths.CLAIM)

    def end_claims(self) -> int:
        """Stop claiming and close the claim in flight now (a parked claim holds nothing
        at the parent: it drops the connection). Returns the requests that were ended."""
        self._claims_aborted.set()
        return self._claim_adapter.abort()

    def cancel_claim_wait(self) -> dict:
        """End this node's waiting claim now (the agent is stopping); one quick try."""
        return self._request("POST", paths.CLAIM_CANCEL, timeout=2.0,
                             retry=RetryPolicy(max_attempts=1)).data

    def renew(self, lease_id: str) -> dict:
        return self._request("POST", paths.LEASE_RENEW.format(lease_id=lease_id)).data

    def plan_deliveries(self, lease_id: str, feed_id: str, article_ids: list[str],
                        idempotency_key: str, retry: RetryPolicy | None = None) -> dict:
        """Ask which of these articles the lease's task has not delivered (the deliveries)."""
        return self._request("POST", paths.LEASE_DELIVERIES.format(lease_id=lease_id),
                             json_body={"feed_id": feed_id, "article_ids": article_ids},
                             idempotency_key=idempotency_key, retry=retry).data

    def send_permit(self, body: dict) -> dict:
        """Ask for the next send moment of one push destination (child/permits.py)."""
        return self._request("POST", paths.SEND_PERMITS, json_body=body).data

    def send_write(self, method: str, route: str, body: Any, idempotency_key: str,
                   retry: RetryPolicy | None = None) -> Response:
        """Send one outbox entry (articles, results, completions)."""
        return self._request(method, route, json_body=body, idempotency_key=idempotency_key,
                             retry=retry)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None
