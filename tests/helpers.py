"""Test helpers: a fake clock and callers that sign requests like a real child."""

from __future__ import annotations

import json as jsonlib
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from urllib.parse import urlencode

from shared import signing

ADMIN_USERNAME = "admin"
ADMIN_PASSWORD = "correct horse battery"
SECRET_KEY = "test-secret-key-0123456789abcdef"


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, start: datetime | None = None):
        self.current = start or datetime.now(timezone.utc).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> datetime:
        self.current += timedelta(seconds=seconds)
        return self.current

    def timestamp(self) -> int:
        return int(self.current.timestamp())


@dataclass
class NodeCredentials:
    node_id: str
    api_key: str
    api_secret: str


class NodeCaller:
    """Call node routes through a Flask test client with plain or signed AK-SK."""

    def __init__(self, client, creds: NodeCredentials, clock=None, mode: str = "signed",
                 prefix: str = "/api/v1/cascade"):
        self.client = client
        self.creds = creds
        self.clock = clock
        self.mode = mode
        self.prefix = prefix

    def authorization(self, method: str, path: str, query: str, body: bytes) -> str:
        if self.mode == "plain":
            return signing.plain_authorization(self.creds.api_key, self.creds.api_secret)
        timestamp = self.clock.timestamp() if self.clock else None
        return signing.signed_authorization(
            self.creds.api_key, self.creds.api_secret, method, path, query, body,
            timestamp=timestamp,
        )

    def request(self, method: str, route: str, json=None, params: dict | None = None,
                headers: dict | None = None, data: bytes | None = None):
        path = self.prefix + route
        query = urlencode(params or {})
        body = data if data is not None else (
            jsonlib.dumps(json).encode() if json is not None else b"")
        all_headers = {"Authorization": self.authorization(method, path, query, body)}
        if body:
            all_headers["Content-Type"] = "application/json"
        all_headers.update(headers or {})
        return self.client.open(path + (f"?{query}" if query else ""), method=method,
                                data=body, headers=all_headers)

    def get(self, route, **kwargs):
        return self.request("GET", route, **kwargs)

    def post(self, route, **kwargs):
        return self.request("POST", route, **kwargs)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def assert_error(response, status: int, error: str):
    """Assert a response is the contract's error envelope with this status and code."""
    body = response.get_json() if hasattr(response, "get_json") else response.json()
    assert response.status_code == status, (response.status_code, body)
    assert body["code"] == status
    assert body["error"] == error, body
    assert isinstance(body["message"], str) and body["message"]
    assert "details" in body
    assert body["request_id"]
    return body
