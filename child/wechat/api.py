"""The HTTP calls to mp.weixin.qq.com that WeRSS makes, and what their answers mean.

Every call carries the session's cookies, a browser User-Agent and
``lang=zh_CN&f=json&ajax=1``. ``base_resp.ret`` becomes an exception named by meaning:
200013 (and the verification wall) rate limiting, 200003 (and the login-page markers) an
expired session, 200002 an invalid account; any other non-zero code a WechatError with
WeChat's message. Nothing here logs cookies or tokens.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import requests

BROWSER_UA = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/124.0 Safari/537.36")
PAGE_SIZE = 5
RET_FREQ_CONTROL = 200013
RET_INVALID_SESSION = 200003
RET_INVALID_ARGS = 200002
VERIFICATION_MARKER = "当前环境异常，完成验证后即可继续访问"
EXPIRED_MARKERS = ("invalid session", "请重新登录", "loginpage")
_TOKEN_RE = re.compile(r"token=(\d+)")


class WechatError(Exception):
    """WeChat answered with an error (``ret`` is base_resp.ret when it gave one)."""

    def __init__(self, message: str, ret: int | None = None):
        super().__init__(message)
        self.ret = ret


class WechatRateLimitedError(WechatError):
    """Frequency control (200013) or the verification wall: stop for a cool-down."""


class WechatSessionExpiredError(WechatError):
    """The login is no longer valid (200003 or the login page): scan again."""


class WechatInvalidAccountError(WechatError):
    """200002: WeChat refuses this account's fakeid (WeRSS disables the feed)."""


@dataclass
class WechatSession:
    """A logged-in session: what must stay secret (cookies, token) and what may be shown."""

    token: str
    cookies: dict[str, str]
    fingerprint: str
    account_name: str = ""
    account_avatar: str = ""
    created_at: float = 0.0
    expires_at: float = 0.0
    expired: bool = False

    def to_json(self) -> str:
        return json.dumps(self.__dict__, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> WechatSession:
        return cls(**json.loads(text))

    def valid_at(self, moment: float) -> bool:
        return not self.expired and (not self.expires_at or moment < self.expires_at)


@dataclass
class PendingLogin:
    """A login between startlogin and login: its own cookie jar holds WeChat's uuid."""

    fingerprint: str
    http: requests.Session = field(repr=False)


class WechatApi:
    """mp.weixin.qq.com, or whatever ``base_url`` names (a fake in tests)."""

    def __init__(self, base_url: str = "https://mp.weixin.qq.com", timeout: float = 20,
                 session_ttl: float = 2 * 86400, clock=time.time):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session_ttl = session_ttl
        self.clock = clock

    # -- plumbing -------------------------------------------------------------------------
    def _http(self, cookies: dict[str, str] | None = None) -> requests.Session:
        http = requests.Session()
        http.trust_env = False
        http.headers.update({"User-Agent": BROWSER_UA, "Referer": self.base_url + "/"})
        for name, value in (cookies or {}).items():
            http.cookies.set(name, value)
        return http

    def _call(self, http: requests.Session, method: str, path: str, params: dict | None = None,
              data: dict | None = None) -> requests.Response:
        query = {"lang": "zh_CN", "f": "json", "ajax": 1, **(params or {})}
        try:
            response = http.request(method, self.base_url + path, params=query, data=data,
                                    timeout=(10, self.timeout), allow_redirects=False)
        except requests.RequestException as exc:
            raise WechatError(f"WeChat could not be reached: {type(exc).__name__}") from None
        if response.status_code >= 400:
            raise WechatError(f"WeChat answered HTTP {response.status_code} for {path}")
        return response

    def _json(self, response: requests.Response) -> dict:
        text = _text(response)
        if VERIFICATION_MARKER in text:
            raise WechatRateLimitedError("WeChat shows its verification page (当前环境异常)")
        try:
            body = json.loads(text)
        except ValueError:
            if any(marker in text for marker in EXPIRED_MARKERS):
                raise WechatSessionExpiredError("WeChat shows its login page: the session expired",
                                                RET_INVALID_SESSION) from None
            raise WechatError("WeChat answered with something that is not JSON") from None
        if not isinstance(body, dict):
            raise WechatError("WeChat answered with unexpected JSON")
        base = body.get("base_resp") or {}
        ret = base.get("ret", 0)
        message = str(base.get("err_msg") or "")
        if ret in (0, "0", None):
            return body
        ret = int(ret) if str(ret).lstrip("-").isdigit() else ret
        said = f" {message}" if message else ""
        if ret == RET_FREQ_CONTROL:
            raise WechatRateLimitedError(f"WeChat frequency control (200013{said})", ret)
        if ret == RET_INVALID_SESSION:
            raise WechatSessionExpiredError(f"WeChat session expired (200003{said})", ret)
        if ret == RET_INVALID_ARGS:
            raise WechatInvalidAccountError(
                f"WeChat refuses this account (200002{said}): check its faker_id, then edit "
                "the feed to collect it again", ret)
        raise WechatError(f"WeChat error {ret}: {message or 'no message'}", ret)

    # -- login ----------------------------------------------------------------------------
    def start_login(self) -> PendingLogin:
        fingerprint = secrets.token_hex(16)
        http = self._http()
        self._json(self._call(http, "POST", "/cgi-bin/bizlogin", {"action": "startlogin"},
                              {"fingerprint": fingerprint, "token": "", "login_type": 3,
                               "userlang": "zh_CN", "redirect_url": ""}))
        return PendingLogin(fingerprint, http)

    def qr_image(self, login: PendingLogin) -> bytes:
        response = self._call(login.http, "GET", "/cgi-bin/scanloginqrcode",
                              {"action": "getqrcode", "random": int(self.clock() * 1000)})
        if not response.content.startswith((b"\x89PNG", b"\xff\xd8\xff")):
            raise WechatError("WeChat did not send a QR image")
        return response.content

    def ask(self, login: PendingLogin) -> int:
        """Return the scan status: 0 waiting, 4/2 scanned, 1/3 confirmed."""
        body = self._json(self._call(login.http, "GET", "/cgi-bin/scanloginqrcode",
                                     {"action": "ask", "fingerprint": login.fingerprint}))
        return int(body.get("status") or 0)

    def finish_login(self, login: PendingLogin) -> WechatSession:
        body = self._json(self._call(login.http, "POST", "/cgi-bin/bizlogin", {"action": "login"},
                                     {"fingerprint": login.fingerprint, "token": "",
                                      "userlang": "zh_CN", "redirect_url": "", "lang": "zh_CN",
                                      "f": "json", "ajax": 1}))
        match = _TOKEN_RE.search(str(body.get("redirect_url") or ""))
        if not match:
            raise WechatError("WeChat's login answer holds no token")
        now = self.clock()
        cookies = {c.name: c.value or "" for c in login.http.cookies}
        expiries = [c.expires for c in login.http.cookies if c.expires]
        session = WechatSession(
            token=match.group(1), cookies=cookies, fingerprint=login.fingerprint,
            created_at=now, expires_at=min([now + self.session_ttl, *expiries]))
        name, avatar = self.account(session)
        session.account_name, session.account_avatar = name, avatar
        return session

    def account(self, session: WechatSession) -> tuple[str, str]:
        body = self._json(self._call(self._http(session.cookies), "GET", "/cgi-bin/switchacct",
                                     {"action": "get_acct_list", "token": session.token}))
        accounts = ((body.get("biz_list") or {}).get("list") or [{}])
        first = accounts[0] if accounts else {}
        return str(first.get("nickname") or ""), str(first.get("headimgurl") or "")

    def check(self, session: WechatSession) -> bool:
        """Ask WeChat's home page whether the session still works."""
        response = self._call(self._http(session.cookies), "GET", "/cgi-bin/home",
                              {"t": "home/index", "token": session.token})
        return not any(marker in _text(response) for marker in EXPIRED_MARKERS)

    # -- accounts and articles ------------------------------------------------------------
    def search(self, session: WechatSession, query: str, count: int = PAGE_SIZE) -> list[dict]:
        """Search official accounts by name (WeRSS's searchbiz), as the contract's rows."""
        body = self._json(self._call(self._http(session.cookies), "GET", "/cgi-bin/searchbiz",
                                     {"action": "search_biz", "begin": 0, "count": count,
                                      "query": query, "token": session.token}))
        return [{"faker_id": str(item.get("fakeid") or ""),
                 "mp_name": str(item.get("nickname") or ""),
                 "mp_intro": str(item.get("signature") or ""),
                 "mp_cover": str(item.get("round_head_img") or "")}
                for item in body.get("list") or [] if item.get("fakeid")]

    def list_page(self, session: WechatSession, fakeid: str, page: int,
                  mode: str = "web") -> list[dict]:
        """Return one page (``count=5``) of an account's article items, newest first."""
        http = self._http(session.cookies)
        common = {"begin": page * PAGE_SIZE, "count": PAGE_SIZE, "fakeid": fakeid,
                  "token": session.token}
        if mode == "api":
            body = self._json(self._call(http, "GET", "/cgi-bin/appmsg",
                                         {"action": "list_ex", "type": 9, "query": "", **common}))
            return [item for item in body.get("app_msg_list") or [] if isinstance(item, dict)]
        body = self._json(self._call(http, "GET", "/cgi-bin/appmsgpublish",
                                     {"sub": "list", "sub_action": "list_ex", **common}))
        return _publish_items(body)

    def article_content(self, session: WechatSession, link: str) -> str | None:
        """Fetch an article page and return ``#js_content`` with lazy images made real."""
        try:
            response = self._http(session.cookies).get(link, timeout=(10, self.timeout))
        except requests.RequestException:
            return None
        text = _text(response)
        if VERIFICATION_MARKER in text:
            raise WechatRateLimitedError("WeChat shows its verification page (当前环境异常)")
        if response.status_code != 200:
            return None
        return extract_content(text)


def _text(response: requests.Response) -> str:
    """WeChat's pages are UTF-8 whatever their Content-Type says."""
    return response.content.decode("utf-8", "replace")


def _publish_items(body: dict) -> list[dict]:
    """Decode ``publish_page`` and each ``publish_info`` (JSON strings inside JSON)."""
    page = body.get("publish_page")
    if page is None:
        return []
    if isinstance(page, str):
        try:
            page = json.loads(page) if page else {}
        except ValueError:
            raise WechatError("WeChat's publish_page is not valid JSON") from None
    items = []
    for entry in page.get("publish_list") or []:
        info = entry.get("publish_info")
        if isinstance(info, str):
            try:
                info = json.loads(info) if info else {}
            except ValueError:
                continue
        for item in (info or {}).get("appmsgex") or []:
            if isinstance(item, dict):
                items.append({**item, "publish_type": entry.get("publish_type")})
    return items


class _ContentExtractor(HTMLParser):
    """Copy the element with id js_content, turning data-src into src."""

    VOID = {"img", "br", "hr", "input", "meta", "link", "source", "area", "col", "embed", "wbr"}

    def __init__(self):
        super().__init__(convert_charrefs=False)
        self.depth = 0
        self.parts: list[str] = []
        self.done = False
        self.skipping = 0  # inside a script or style of the content: dropped

    def _render(self, tag: str, attrs: list[tuple[str, Any]], closed: bool = False) -> str:
        values = dict(attrs)
        if "data-src" in values:
            values["src"] = values.pop("data-src")
        if tag == "div" and values.get("id") == "js_content":
            values.pop("style", None)  # WeChat hides it until its script runs
        rendered = "".join(f' {k}="{_attr(v)}"' if v is not None else f" {k}"
                           for k, v in values.items())
        return f"<{tag}{rendered}{' /' if closed else ''}>"

    def handle_starttag(self, tag, attrs):
        if self.done:
            return
        if self.depth == 0:
            if dict(attrs).get("id") == "js_content":
                self.depth = 1
                self.parts.append(self._render(tag, attrs))
            return
        if tag in ("script", "style"):
            self.skipping += 1
            return
        self.parts.append(self._render(tag, attrs))
        if tag not in self.VOID:
            self.depth += 1

    def handle_startendtag(self, tag, attrs):
        if self.depth and not self.done:
            self.parts.append(self._render(tag, attrs, closed=True))

    def handle_endtag(self, tag):
        if self.skipping and tag in ("script", "style"):
            self.skipping -= 1
            return
        if self.depth and not self.done and tag not in self.VOID:
            self.parts.append(f"</{tag}>")
            self.depth -= 1
            if self.depth == 0:
                self.done = True

    def handle_data(self, data):
        if self.depth and not self.done and not self.skipping:
            self.parts.append(data)

    def handle_entityref(self, name):
        self.handle_data(f"&{name};")

    def handle_charref(self, name):
        self.handle_data(f"&#{name};")


def _attr(value: str) -> str:
    return str(value).replace("&", "&amp;").replace('"', "&quot;")


def extract_content(html: str) -> str | None:
    """Return the ``div#js_content`` of an article page, or None when it has none."""
    parser = _ContentExtractor()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # noqa: BLE001 - html.parser is lenient; keep what was read
        pass
    return "".join(parser.parts) or None
