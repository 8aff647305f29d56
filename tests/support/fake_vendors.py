"""Local fakes of the chat vendors' robot endpoints, answering as the real ones do.

One threaded HTTP server on 127.0.0.1 serves every channel's path. Each robot checks its
token and (when given a secret) its signature with this module's own implementation of the
vendor's algorithm, enforces a sliding-window rate limit, and answers with the vendor's
real success and error bodies. Accepted messages are recorded with their arrival time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

DINGTALK_OK = {"errcode": 0, "errmsg": "ok"}
DINGTALK_TOO_FAST = {"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"}
DINGTALK_SIGN = {"errcode": 310000, "errmsg": "sign not match, more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]"}
DINGTALK_KEYWORD = {"errcode": 310000, "errmsg": "keywords not in content, more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]"}
DINGTALK_TOKEN = {"errcode": 300001, "errmsg": "token is not exist"}
FEISHU_OK = {"code": 0, "data": {}, "msg": "success"}
FEISHU_SIGN = {"code": 19021, "data": {}, "msg": "sign match fail or timestamp is not within one hour from current time"}
FEISHU_KEYWORD = {"code": 19024, "data": {}, "msg": "Key Words Not Found"}
FEISHU_BUSY = {"code": 11232, "data": {}, "msg": "frequency limited psm[lark.oapi.app_platform_runtime]appID[1]"}
FEISHU_TOO_LARGE = {"code": 9499, "data": {}, "msg": "request body too large"}
WECOM_OK = {"errcode": 0, "errmsg": "ok"}
WECOM_TOO_FAST = {"errcode": 45009, "errmsg": "api freq out of limit"}
WECOM_BAD_KEY = {"errcode": 93000, "errmsg": "invalid webhook url, hint: [1700000000_1], from ip: 127.0.0.1"}
WECOM_TOO_LONG = {"errcode": 40058, "errmsg": "markdown.content exceed max length 4096"}


def dingtalk_signature(secret: str, timestamp: str) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def feishu_signature(secret: str, timestamp: str) -> str:
    digest = hmac.new(f"{timestamp}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


@dataclass
class Received:
    channel: str
    robot: str
    at: float  # time.monotonic() of arrival
    body: dict


@dataclass
class Robot:
    """One destination: its token, optional secret and keyword, and its rate limit."""

    channel: str
    token: str
    secret: str | None = None
    keyword: str | None = None
    limit: int | None = None  # messages per ``window`` seconds; more are throttled
    window: float = 60.0
    throttle_next: int = 0  # answer this many throttling errors first, whatever the rate
    accepted: list[Received] = field(default_factory=list)
    refused: list[tuple[float, dict]] = field(default_factory=list)
    _recent: deque = field(default_factory=deque)

    def admit(self, now: float) -> bool:
        if self.throttle_next > 0:
            self.throttle_next -= 1
            return False
        if self.limit is None:
            return True
        while self._recent and self._recent[0] <= now - self.window:
            self._recent.popleft()
        if len(self._recent) >= self.limit:
            return False
        self._recent.append(now)
        return True

    def max_in_window(self, window: float | None = None) -> int:
        """The most accepted messages in any ``window`` seconds (default: the limit's)."""
        window = window or self.window
        times = sorted(r.at for r in self.accepted)
        best, start = 0, 0
        for end, moment in enumerate(times):
            while times[start] <= moment - window:
                start += 1
            best = max(best, end - start + 1)
        return best


class FakeVendors:
    """Every vendor's robot endpoint on one local server (use as a context manager)."""

    def __init__(self):
        self.robots: dict[tuple[str, str], Robot] = {}
        self.lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> FakeVendors:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def add(self, channel: str, token: str, **options) -> Robot:
        robot = Robot(channel, token, **options)
        self.robots[(channel, token)] = robot
        return robot

    def url(self, robot: Robot) -> str:
        """The webhook URL a task uses for ``robot``, shaped like the vendor's."""
        return {
            "dingtalk": f"{self.base}/robot/send?access_token={robot.token}",
            "feishu": f"{self.base}/open-apis/bot/v2/hook/{robot.token}",
            "wecom": f"{self.base}/cgi-bin/webhook/send?key={robot.token}",
            "bark": f"{self.base}/{robot.token}",
            "serverchan": f"{self.base}/{robot.token}.send",
            "telegram": f"{self.base}/bot{robot.token}/sendMessage?chat_id=-100123",
        }[robot.channel]

    # -- the vendors ---------------------------------------------------------------------------
    def _dingtalk(self, query: dict, body: dict) -> tuple[int, dict]:
        robot = self.robots.get(("dingtalk", query.get("access_token", "")))
        if robot is None:
            return 200, DINGTALK_TOKEN
        if robot.secret:
            timestamp, sign = query.get("timestamp", ""), query.get("sign", "")
            fresh = timestamp.isdigit() and abs(int(timestamp) / 1000 - time.time()) < 3600
            if not fresh or not hmac.compare_digest(sign, dingtalk_signature(robot.secret, timestamp)):
                return self._refuse(robot, body, DINGTALK_SIGN)
        text = json.dumps(body, ensure_ascii=False)
        if robot.keyword and robot.keyword not in text:
            return self._refuse(robot, body, DINGTALK_KEYWORD)
        return self._accept(robot, body, DINGTALK_OK, DINGTALK_TOO_FAST)

    def _feishu(self, token: str, body: dict, size: int = 0) -> tuple[int, dict]:
        robot = self.robots.get(("feishu", token))
        if size > 20 * 1024:
            return 400, FEISHU_TOO_LARGE
        if robot is None:
            return 200, {"code": 19001, "data": {}, "msg": "param invalid: incoming webhook access token invalid"}
        if robot.secret:
            timestamp, sign = str(body.get("timestamp", "")), str(body.get("sign", ""))
            fresh = timestamp.isdigit() and abs(int(timestamp) - time.time()) < 3600
            if not fresh or not hmac.compare_digest(sign, feishu_signature(robot.secret, timestamp)):
                return self._refuse(robot, body, FEISHU_SIGN)
        if robot.keyword and robot.keyword not in json.dumps(body, ensure_ascii=False):
            return self._refuse(robot, body, FEISHU_KEYWORD)
        return self._accept(robot, body, FEISHU_OK, FEISHU_BUSY)

    def _wecom(self, query: dict, body: dict) -> tuple[int, dict]:
        robot = self.robots.get(("wecom", query.get("key", "")))
        if robot is None:
            return 200, WECOM_BAD_KEY
        content = (body.get("markdown") or {}).get("content", "")
        if len(content.encode()) > 4096:
            return self._refuse(robot, body, WECOM_TOO_LONG)
        return self._accept(robot, body, WECOM_OK, WECOM_TOO_FAST)

    def _bark(self, body: dict) -> tuple[int, dict]:
        robot = self.robots.get(("bark", body.get("device_key", "")))
        if robot is None:
            return 400, {"code": 400, "message": "failed to get device token: device not registered",
                         "timestamp": int(time.time())}
        return self._accept(robot, body, {"code": 200, "message": "success",
                                          "timestamp": int(time.time())},
                            {"code": 429, "message": "too many requests"})

    def _serverchan(self, key: str, body: dict) -> tuple[int, dict]:
        robot = self.robots.get(("serverchan", key))
        if robot is None:
            return 200, {"code": 40001, "message": "bad pushtoken", "data": None}
        if len(body.get("title", "")) > 32:
            return self._refuse(robot, body, {"code": 40002, "message": "title too long"})
        return self._accept(robot, body, {"code": 0, "message": "", "data": {
            "pushid": "1", "readkey": "r", "error": "SUCCESS", "errno": 0}},
            {"code": 40005, "message": "超过当天的发送次数限制"})

    def _telegram(self, token: str, body: dict) -> tuple[int, dict]:
        robot = self.robots.get(("telegram", token))
        if robot is None:
            return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
        if len(body.get("text", "")) > 4096:
            return self._refuse(robot, body, {"ok": False, "error_code": 400,
                                              "description": "Bad Request: message is too long"}, 400)
        if not robot.admit(time.monotonic()):
            robot.refused.append((time.monotonic(), body))
            return 429, {"ok": False, "error_code": 429,
                         "description": "Too Many Requests: retry after 1",
                         "parameters": {"retry_after": 1}}
        robot.accepted.append(Received("telegram", robot.token, time.monotonic(), body))
        return 200, {"ok": True, "result": {"message_id": len(robot.accepted)}}

    def _accept(self, robot: Robot, body: dict, ok: dict, throttled: dict) -> tuple[int, dict]:
        now = time.monotonic()
        if not robot.admit(now):
            robot.refused.append((now, body))
            return 200, throttled
        robot.accepted.append(Received(robot.channel, robot.token, now, body))
        return 200, ok

    @staticmethod
    def _refuse(robot: Robot, body: dict, answer: dict, status: int = 200) -> tuple[int, dict]:
        robot.refused.append((time.monotonic(), body))
        return status, answer

    def _route(self, method: str, target: str, raw: bytes, content_type: str) -> tuple[int, dict]:
        parts = urlsplit(target)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if "json" in content_type:
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                return 400, {"errcode": 40001, "errmsg": "invalid json"}
        else:
            body = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        path = unquote(parts.path)
        with self.lock:
            if path == "/robot/send":
                return self._dingtalk(query, body)
            if path.startswith("/open-apis/bot/v2/hook/"):
                return self._feishu(path.rsplit("/", 1)[1], body, len(raw))
            if path == "/cgi-bin/webhook/send":
                return self._wecom(query, body)
            if path == "/push":
                return self._bark(body)
            if path.startswith("/bot") and path.endswith("/sendMessage"):
                return self._telegram(path[4:-len("/sendMessage")], body)
            if path.endswith(".send"):
                return self._serverchan(path[1:-len(".send")], body)
        return 404, {"error": "not found"}

    def _handler(self):
        vendors = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, answer = vendors._route("POST", self.path, raw,
                                                self.headers.get("Content-Type", ""))
                data = json.dumps(answer, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        return Handler
