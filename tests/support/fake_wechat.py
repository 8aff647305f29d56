"""A fake mp.weixin.qq.com on 127.0.0.1, answering the calls WeRSS makes as WeChat does.

It serves the browserless QR login (start, QR image, scan status, login, account list), a
session check page, ``searchbiz``, ``appmsgpublish`` (nested JSON strings) and ``appmsg``
with paging, and article pages. Tests drive it: ``scan()`` / ``confirm()`` a pending login,
``rate_limit_per_minute`` answers 200013 past that many list/search calls a minute,
``session_lifetime`` answers 200003 once a session is older, ``verification`` serves the
verification wall instead of article pages, ``invalid_fakeids`` answer 200002.
"""

from __future__ import annotations

import json
import secrets
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlsplit

PAGE_SIZE_LIMIT = 20
VERIFICATION_TEXT = "当前环境异常，完成验证后即可继续访问"


def tiny_png(seed: bytes = b"") -> bytes:
    """Return a valid 8x8 greyscale PNG (its pixels vary with ``seed``)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    pixels = (seed * 64 or bytes(64))[:64]
    rows = b"".join(b"\x00" + pixels[y * 8:(y + 1) * 8] for y in range(8))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


@dataclass
class FakeAccount:
    fakeid: str
    nickname: str
    signature: str = ""
    round_head_img: str = "https://mmbiz.qpic.cn/head.jpg"
    articles: list[dict] = field(default_factory=list)  # newest first


@dataclass
class FakeLogin:
    uuid: str
    fingerprint: str
    status: int = 0  # 0 waiting, 4 scanned, 1 confirmed
    qr_fetches: int = 0
    statuses_seen: set = field(default_factory=set)  # the statuses the poller was told


@dataclass
class FakeSession:
    token: str
    slave_sid: str
    created: float
    nickname: str


class FakeWechat:
    """The fake server; ``base_url`` is what CASCADE_WECHAT_BASE_URL points at."""

    def __init__(self, nickname: str = "测试运营号", avatar: str = "https://mmbiz.qpic.cn/avatar.jpg"):
        self.nickname = nickname
        self.avatar = avatar
        self.accounts: dict[str, FakeAccount] = {}
        self.logins: dict[str, FakeLogin] = {}
        self.sessions: dict[str, FakeSession] = {}
        self.rate_limit_per_minute: int | None = None
        self.session_lifetime: float | None = None
        self.verification = False
        self.invalid_fakeids: set[str] = set()
        self.list_delay = 0.0  # seconds each list/search call takes, as a slow network
        self.in_flight = 0
        self.max_in_flight = 0  # the most list/search calls answered at once
        self.calls_left: dict[str, int] = {}  # token -> list/search calls before 200013
        self.freq_controlled: list[str] = []  # the token of every 200013 answer
        self.calls: list[tuple[str, str, dict]] = []  # (path, token, query)
        self.list_calls: list[tuple[float, str]] = []  # (time, token) of list/search calls
        self.lock = threading.RLock()
        self.clock = time.time
        self._next_aid = 2650000001
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="fake-wechat")

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> FakeWechat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- test controls -------------------------------------------------------------------
    def add_account(self, fakeid: str, nickname: str, articles: int = 0,
                    signature: str = "") -> FakeAccount:
        with self.lock:
            account = FakeAccount(fakeid, nickname, signature or f"{nickname}的简介")
            self.accounts[fakeid] = account
        for _ in range(articles):
            self.publish(fakeid)
        return account

    def publish(self, fakeid: str, title: str | None = None, when: int | None = None) -> dict:
        """Publish one article at the top of an account's list; return its item."""
        with self.lock:
            account = self.accounts[fakeid]
            aid = f"{self._next_aid}_1"
            self._next_aid += 1
            # Each article later than the one before: the newest is at the top.
            moment = when or int(self.clock()) - 86400 + 60 * (self._next_aid - 2650000001)
            item = {
                "aid": aid, "appmsgid": int(aid.split("_")[0]), "itemidx": 1,
                "title": title or f"{account.nickname} 第{len(account.articles) + 1}篇",
                "link": f"{self.base_url}/s/{aid}", "cover": f"https://mmbiz.qpic.cn/{aid}.jpg",
                "digest": f"摘要 {aid}", "create_time": moment, "update_time": moment,
                "item_show_type": 0, "copyright_stat": 1, "is_deleted": False,
            }
            account.articles.insert(0, item)
            return item

    def pending_login(self) -> FakeLogin | None:
        with self.lock:
            waiting = [login for login in self.logins.values() if login.status != 1]
            return waiting[-1] if waiting else None

    def scan(self) -> None:
        """The phone scanned the newest pending QR code (not yet confirmed)."""
        with self.lock:
            self._require_pending().status = 4

    def confirm(self) -> None:
        """The phone confirmed the newest pending login."""
        with self.lock:
            self._require_pending().status = 1

    def wait_for_qr(self, timeout: float = 20.0) -> FakeLogin:
        """Wait until someone fetched the QR image of a pending login."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            login = self.pending_login()
            if login and login.qr_fetches:
                return login
            time.sleep(0.05)
        raise AssertionError("nobody fetched a WeChat login QR code")

    def wait_for_status_seen(self, status: int, timeout: float = 20.0) -> None:
        """Wait until the poller of the newest pending login was told ``status``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            login = self.pending_login()
            if login and status in login.statuses_seen:
                return
            time.sleep(0.02)
        raise AssertionError(f"no poller saw WeChat scan status {status}")

    def newest_token(self) -> str:
        with self.lock:
            return max(self.sessions.values(), key=lambda s: s.created).token

    def limit_session(self, token: str, calls: int) -> None:
        """Answer 200013 to this session once it has made ``calls`` more list/search calls."""
        with self.lock:
            self.calls_left[token] = calls

    def expire_session(self, token: str) -> None:
        with self.lock:
            self.sessions.pop(token, None)

    def expire_sessions(self) -> None:
        """Every session ends now (as when the account logs in elsewhere)."""
        with self.lock:
            self.sessions.clear()

    def list_call_count(self, path: str | None = None) -> int:
        with self.lock:
            return sum(1 for call in self.calls
                       if path is None or call[0] == path)

    def _require_pending(self) -> FakeLogin:
        login = self.pending_login()
        if login is None:
            raise AssertionError("no WeChat login is waiting for a scan")
        return login

    # -- serving -------------------------------------------------------------------------
    def _session(self, token: str, cookies: SimpleCookie) -> FakeSession | None:
        session = self.sessions.get(token)
        if session is None:
            return None
        sid = cookies.get("slave_sid")
        if sid is None or sid.value != session.slave_sid:
            return None
        if self.session_lifetime is not None and self.clock() - session.created > self.session_lifetime:
            return None
        return session

    def _rate_limited(self, token: str) -> bool:
        if token in self.calls_left:
            if self.calls_left[token] <= 0:
                return True
            self.calls_left[token] -= 1
        now = self.clock()
        self.list_calls = [(t, k) for t, k in self.list_calls if now - t < 60]
        if self.rate_limit_per_minute is not None and len(
                [1 for _, k in self.list_calls if k == token]) >= self.rate_limit_per_minute:
            return True
        self.list_calls.append((now, token))
        return False

    def _api(self, path: str, query: dict, cookies: SimpleCookie) -> tuple[int, dict]:
        """Answer one JSON call of a logged-in session: (HTTP status, body)."""
        token = query.get("token", "")
        session = self._session(token, cookies)
        if session is None:
            return 200, {"base_resp": {"ret": 200003, "err_msg": "invalid session"}}
        if self._rate_limited(token):
            self.freq_controlled.append(token)
            return 200, {"base_resp": {"ret": 200013, "err_msg": "freq control"}}
        if path == "/cgi-bin/searchbiz":
            name = query.get("query", "")
            found = [a for a in self.accounts.values() if name and name in a.nickname]
            begin, count = int(query.get("begin", 0)), int(query.get("count", 5))
            return 200, {"base_resp": {"ret": 0, "err_msg": "ok"}, "total": len(found),
                         "list": [{"fakeid": a.fakeid, "nickname": a.nickname,
                                   "alias": "", "round_head_img": a.round_head_img,
                                   "service_type": 1, "signature": a.signature}
                                  for a in found[begin:begin + count]]}
        fakeid = query.get("fakeid", "")
        if fakeid in self.invalid_fakeids or fakeid not in self.accounts:
            return 200, {"base_resp": {"ret": 200002, "err_msg": "invalid args"}}
        begin = int(query.get("begin", 0))
        count = min(int(query.get("count", 5)), PAGE_SIZE_LIMIT)
        articles = self.accounts[fakeid].articles
        page = articles[begin:begin + count]
        if path == "/cgi-bin/appmsg":
            return 200, {"base_resp": {"ret": 0, "err_msg": "ok"}, "app_msg_cnt": len(articles),
                         "app_msg_list": page}
        publish_list = [{"publish_type": 101, "publish_info": json.dumps(
            {"type": 9, "msgid": int(item["aid"].split("_")[0]), "appmsgex": [item]},
            ensure_ascii=False)} for item in page]
        return 200, {"base_resp": {"ret": 0, "err_msg": "ok"}, "is_admin": True,
                     "publish_page": json.dumps({"total_count": len(articles),
                                                 "publish_count": len(articles),
                                                 "masssend_count": 0,
                                                 "publish_list": publish_list},
                                                ensure_ascii=False)}

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _cookies(self) -> SimpleCookie:
                jar = SimpleCookie()
                try:
                    jar.load(self.headers.get("Cookie", ""))
                except Exception:  # noqa: BLE001 - a bad cookie header is no session
                    pass
                return jar

            def _send(self, status: int, body: bytes, content_type: str,
                      cookies: dict | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in (cookies or {}).items():
                    self.send_header("Set-Cookie", f"{name}={value}; Path=/")
                self.end_headers()
                self.wfile.write(body)

            def _json(self, body: dict, cookies: dict | None = None) -> None:
                self._send(200, json.dumps(body, ensure_ascii=False).encode(),
                           "application/json; charset=UTF-8", cookies)

            def _route(self, method: str) -> None:
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[-1] for k, v in parse_qs(
                    self.rfile.read(length).decode() if length else "").items()}
                cookies = self._cookies()
                with fake.lock:
                    fake.calls.append((parts.path, query.get("token", ""), query))
                    self._answer(method, parts.path, {**query, **form}, cookies)

            def _answer(self, method, path, query, cookies):
                action = query.get("action")
                if path == "/cgi-bin/bizlogin" and action == "startlogin" and method == "POST":
                    uuid = secrets.token_hex(8)
                    fake.logins[uuid] = FakeLogin(uuid, query.get("fingerprint", ""))
                    return self._json({"base_resp": {"ret": 0, "err_msg": "ok"}, "status": 1},
                                      {"uuid": uuid})
                uuid = cookies["uuid"].value if "uuid" in cookies else ""
                login = fake.logins.get(uuid)
                if path == "/cgi-bin/scanloginqrcode" and action == "getqrcode":
                    if login is None:
                        return self._send(404, b"", "text/plain")
                    login.qr_fetches += 1
                    return self._send(200, tiny_png(uuid.encode()), "image/png")
                if path == "/cgi-bin/scanloginqrcode" and action == "ask":
                    if login is None:
                        return self._json({"base_resp": {"ret": 1, "err_msg": "no login"}})
                    login.statuses_seen.add(login.status)
                    return self._json({"base_resp": {"ret": 0, "err_msg": "ok"},
                                       "status": login.status, "user_category": 1,
                                       "acct_size": 1})
                if path == "/cgi-bin/bizlogin" and action == "login" and method == "POST":
                    if login is None or login.status != 1:
                        return self._json({"base_resp": {"ret": 200003, "err_msg": "not confirmed"}})
                    fake.logins.pop(uuid, None)
                    token = str(secrets.randbelow(9 * 10**9) + 10**9)
                    sid = secrets.token_urlsafe(24)
                    fake.sessions[token] = FakeSession(token, sid, fake.clock(), fake.nickname)
                    return self._json({"base_resp": {"ret": 0, "err_msg": "ok"},
                                       "redirect_url": f"/cgi-bin/home?t=home/index&lang=zh_CN&token={token}"},
                                      {"slave_sid": sid, "slave_user": "gh_fake", "data_ticket": "x"})
                if path == "/cgi-bin/switchacct" and action == "get_acct_list":
                    session = fake._session(query.get("token", ""), cookies)
                    if session is None:
                        return self._json({"base_resp": {"ret": 200003, "err_msg": "invalid session"}})
                    return self._json({"base_resp": {"ret": 0, "err_msg": "ok"}, "biz_list": {
                        "list": [{"nickname": fake.nickname, "headimgurl": fake.avatar,
                                  "username": "gh_fake"}]}})
                if path == "/cgi-bin/home":
                    session = fake._session(query.get("token", ""), cookies)
                    if session is None:
                        return self._send(200, "<html><body>invalid session 请重新登录 "
                                               "<a href='/cgi-bin/loginpage'>loginpage</a>"
                                               "</body></html>".encode(), "text/html")
                    return self._send(200, f"<html><body>{session.nickname}</body></html>".encode(),
                                      "text/html")
                if path in ("/cgi-bin/searchbiz", "/cgi-bin/appmsgpublish", "/cgi-bin/appmsg"):
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                    if fake.list_delay:
                        fake.lock.release()  # others are served meanwhile
                        try:
                            time.sleep(fake.list_delay)
                        finally:
                            fake.lock.acquire()
                    fake.in_flight -= 1
                    _, body = fake._api(path, query, cookies)
                    return self._json(body)
                if path.startswith("/s/"):
                    if fake.verification:
                        return self._send(200, f"<html><body><p>{VERIFICATION_TEXT}</p>"
                                               "</body></html>".encode(), "text/html")
                    aid = path[3:]
                    return self._send(200, (
                        "<html><body><h1 id='activity-name'>t</h1>"
                        f"<div class=\"rich_media_content\" id=\"js_content\" style=\"visibility: hidden;\">"
                        f"<p>正文 {aid}</p><img data-src=\"https://mmbiz.qpic.cn/{aid}/0.png\">"
                        "</div><script>var x = 1;</script></body></html>").encode(), "text/html")
                return self._send(404, b"not found", "text/plain")

            def do_GET(self):
                self._route("GET")

            def do_POST(self):
                self._route("POST")

        return Handler
