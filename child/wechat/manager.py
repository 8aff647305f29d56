"""The child's one WeChat login: its state, pacing and cool-down, and the parent's requests.

The agent asks it for the heartbeat's ``capabilities.wechat``, hands it the commands the
parent sends (start a login, search accounts), and hears from it when the session expires
so it can report at once and hand its WeChat leases back.
"""

from __future__ import annotations

import base64
import logging
import random
import threading
import time
from pathlib import Path
from typing import Callable

from shared.timeutil import from_unix, isoformat_z

from .api import WechatApi, WechatError, WechatSession
from .login import run_login
from .session import SessionStore

log = logging.getLogger("werss.child.wechat")
KIND_LOGIN = "wechat_login"
KIND_SEARCH = "wechat_search"


class WechatManager:
    def __init__(self, config, cache, client=None, *, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] | None = None,
                 poll_interval: float = 2.0):
        self.config = config
        self.cache = cache
        self.client = client
        self.clock = clock
        self.stop_event = threading.Event()
        self.sleep = sleep or self.stop_event.wait
        self.poll_interval = poll_interval
        self.api = WechatApi(config.wechat_base_url, timeout=min(config.request_timeout, 30),
                             clock=clock)
        self.store = SessionStore(cache, config.api_secret)
        self._session = self.store.load()
        self._lock = threading.RLock()
        # One account at a time per login, as WeRSS does: leases worked in parallel must
        # not multiply the rate WeChat sees from this session.
        self.collecting = threading.Lock()
        self.blocked_until = 0.0
        self._last_account_at: float | None = None
        self._login_thread: threading.Thread | None = None
        self._login_stop = threading.Event()
        self.on_expired: Callable[[], None] | None = None  # the agent reports and releases
        self.on_login: Callable[[], None] | None = None  # the agent reports the new session

    # -- session state --------------------------------------------------------------------
    def session(self) -> WechatSession | None:
        """The session if it is still valid (by its flag and its stored expiry)."""
        with self._lock:
            session = self._session
        if session is None or session.expired:
            # `werss-child wechat login` may have stored a new one while the agent runs.
            stored = self.store.load()
            if stored is not None and (session is None or stored.token != session.token):
                with self._lock:
                    self._session = session = stored
        if session is None:
            return None
        if not session.valid_at(self.clock()):
            if not session.expired:
                self.mark_expired("its stored expiry passed")
            return None
        return session

    def capability(self) -> dict:
        """``capabilities.wechat`` for the heartbeat: never the cookies or token."""
        session = self.session()
        with self._lock:
            known = self._session
        account = ({"name": known.account_name, "avatar": known.account_avatar}
                   if known else None)
        return {"session_valid": session is not None,
                "expires_at": isoformat_z(from_unix(known.expires_at))
                if known and known.expires_at else None,
                "account": account}

    def adopt(self, session: WechatSession) -> None:
        with self._lock:
            self._session = session
            self.blocked_until = 0.0
        self.store.save(session)
        log.info("WeChat session for %r valid until %s", session.account_name,
                 isoformat_z(from_unix(session.expires_at)))

    def mark_expired(self, reason: str) -> None:
        """The valid -> expired change: record it once and tell the agent."""
        with self._lock:
            session = self._session
            if session is None or session.expired:
                return
            session.expired = True
        self.store.save(session)
        log.warning("WeChat session for %r expired (%s): log in again with "
                    "`werss-child wechat login` or from the parent", session.account_name, reason)
        if self.on_expired:
            try:
                self.on_expired()
            except Exception:  # noqa: BLE001 - reporting is retried by the next heartbeat
                log.exception("reporting the expired WeChat session failed")

    def check_session(self) -> bool:
        """Ask WeChat's home page whether the login still works (an idle child notices too)."""
        session = self.session()
        if session is None or self.blocked():
            return session is not None
        try:
            alive = self.api.check(session)
        except WechatError as exc:
            log.info("WeChat session check could not run: %s", exc)
            return True
        if not alive:
            self.mark_expired("WeChat's home page asks to log in again")
        return alive

    def block(self) -> float:
        """Frequency control: no WeChat calls for the cool-down; return when it ends."""
        with self._lock:
            self.blocked_until = max(self.blocked_until, self.clock() + self.config.wechat_cooldown)
            return self.blocked_until

    def blocked(self) -> bool:
        return self.clock() < self.blocked_until

    # -- pacing ---------------------------------------------------------------------------
    def pause(self, kind: str) -> None:
        """A random pause of the configured range: ``page``, ``article`` or ``account``."""
        low, high = getattr(self.config, f"wechat_{kind}_pause")
        if kind == "account":
            with self._lock:
                last = self._last_account_at
            if last is None:
                return
            wait = random.uniform(low, high) - (self.clock() - last)
        else:
            wait = random.uniform(low, high)
        if wait > 0:
            self.sleep(wait)

    def account_done(self) -> None:
        with self._lock:
            self._last_account_at = self.clock()

    # -- logins ---------------------------------------------------------------------------
    def login(self, on_state: Callable[..., None], qr_file: str | None = None,
              stop: threading.Event | None = None) -> WechatSession:
        """Run the QR login; the new session replaces the old one.

        The QR image is also saved (DATA_DIR/wechat-login-qr.png unless ``qr_file``), where
        the health listener serves it, until the scan completes or expires.
        """
        from .cli import qr_path

        path = Path(qr_file) if qr_file else qr_path(self.config)

        def show(state, **fields):
            if state == "waiting_scan" and fields.get("qr_png"):
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(fields["qr_png"])
            elif state != "waiting_scan":
                path.unlink(missing_ok=True)
            on_state(state, **fields)

        try:
            session = run_login(self.api, show, poll_interval=self.poll_interval,
                                stop=stop or self.stop_event, clock=self.clock)
        finally:
            path.unlink(missing_ok=True)
        self.adopt(session)
        return session

    def handle_commands(self, commands: list[dict]) -> None:
        """Start what the parent asked for, each in its own thread (logins take minutes)."""
        for command in commands or []:
            kind = command.get("kind")
            if kind == KIND_LOGIN:
                with self._lock:
                    running, stop = self._login_thread, threading.Event()
                    if running and running.is_alive():
                        # The admin asked again: the newer request replaces the old login.
                        self._login_stop.set()
                        running.join(timeout=self.poll_interval + 5)
                    self._login_stop = stop
                    self._login_thread = threading.Thread(
                        target=self._login_for_parent, args=(command, stop), daemon=True,
                        name="werss-wechat-login")
                    self._login_thread.start()
            elif kind == KIND_SEARCH:
                threading.Thread(target=self._search_for_parent, args=(command,), daemon=True,
                                 name="werss-wechat-search").start()

    def _report(self, command_id: str | None, state: str, **fields) -> None:
        body: dict = {"command_id": command_id, "state": state}
        if fields.get("qr_png") is not None:
            body["qr_png"] = base64.b64encode(fields["qr_png"]).decode("ascii")
        if fields.get("qr_expires_at"):
            body["qr_expires_at"] = isoformat_z(from_unix(fields["qr_expires_at"]))
        for name in ("account", "expires_at", "error"):
            if fields.get(name) is not None:
                body[name] = fields[name]
        try:
            self.client.report_wechat_login(body)
        except Exception as exc:  # noqa: BLE001 - the login goes on; the heartbeat tells the rest
            log.warning("could not tell the parent the WeChat login is %s: %s", state, exc)

    def _login_for_parent(self, command: dict, stop: threading.Event | None = None) -> None:
        command_id = command.get("id")
        log.info("the parent asked for a WeChat login; the QR code is shown there")
        try:
            session = self.login(lambda state, **kw: self._report(command_id, state, **kw),
                                 stop=stop)
        except WechatError as exc:
            log.warning("WeChat login failed: %s", exc)
            self._report(command_id, "failed", error=str(exc))
            return
        except Exception as exc:  # noqa: BLE001
            log.exception("WeChat login failed")
            self._report(command_id, "failed",
                         error=f"the child hit an error: {type(exc).__name__}")
            return
        self._report(command_id, "valid",
                     account={"name": session.account_name, "avatar": session.account_avatar},
                     expires_at=isoformat_z(from_unix(session.expires_at)))
        if self.on_login:
            self.on_login()

    def _search_for_parent(self, command: dict) -> None:
        query = str((command.get("payload") or {}).get("query") or "")
        body: dict
        session = self.session()
        if session is None:
            body = {"error": "this node has no valid WeChat session"}
        elif self.blocked():
            body = {"error": "this node is cooling down after WeChat's frequency control"}
        else:
            try:
                body = {"results": self.api.search(session, query)}
            except WechatError as exc:
                from .api import WechatRateLimitedError, WechatSessionExpiredError

                if isinstance(exc, WechatSessionExpiredError):
                    self.mark_expired(str(exc))
                elif isinstance(exc, WechatRateLimitedError):
                    self.block()
                body = {"error": str(exc)}
        try:
            self.client.command_result(command["id"], body)
        except Exception as exc:  # noqa: BLE001
            log.warning("could not send the account search results: %s", exc)
