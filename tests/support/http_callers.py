"""HTTP callers of a live parent: an admin with a Bearer token, a node with AK-SK."""

from __future__ import annotations

import requests

from shared import signing
from shared.paths import CASCADE_PREFIX, LOGIN
from tests.helpers import ADMIN_PASSWORD, ADMIN_USERNAME, NodeCredentials

HTTP_TIMEOUT = 30.0


class AdminHttp:
    """An admin talking to a live parent with a Bearer token."""

    def __init__(self, base_url: str, token: str):
        self.base_url = base_url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"
        # No kept-alive connections: gunicorn lingers on them when it stops.
        self.session.headers["Connection"] = "close"

    @classmethod
    def login(cls, base_url: str, username: str = ADMIN_USERNAME,
              password: str = ADMIN_PASSWORD) -> AdminHttp:
        response = requests.post(base_url + LOGIN,
                                 json={"username": username, "password": password},
                                 headers={"Connection": "close"}, timeout=HTTP_TIMEOUT)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["data"]["token_type"] == "bearer"
        return cls(base_url, body["data"]["access_token"])

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", HTTP_TIMEOUT)
        return self.session.request(method, self.base_url + path, **kwargs)

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path, **kwargs):
        return self.request("POST", path, **kwargs)

    def delete(self, path, **kwargs):
        return self.request("DELETE", path, **kwargs)

    def create_node_with_credentials(self, name: str = "child-e2e",
                                     prefix: str = CASCADE_PREFIX) -> NodeCredentials:
        response = self.post(f"{prefix}/nodes", json={"name": name, "node_type": 1})
        assert response.status_code == 201, response.text
        node_id = response.json()["data"]["node_id"]
        response = self.post(f"{prefix}/nodes/{node_id}/credentials")
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        return NodeCredentials(node_id, data["api_key"], data["api_secret"])

    def close(self) -> None:
        self.session.close()


class NodeHttp:
    """A child node calling a live parent with plain or signed AK-SK, as `requests` sends it."""

    def __init__(self, base_url: str, creds: NodeCredentials, mode: str = "signed",
                 prefix: str = CASCADE_PREFIX):
        self.base_url = base_url
        self.creds = creds
        self.mode = mode
        self.prefix = prefix

    def prepare(self, method: str, route: str, *, json=None, params=None, headers=None,
                timestamp: int | None = None) -> requests.PreparedRequest:
        """Build the exact request to send, signed over the path and query it will carry."""
        prepared = requests.Request(
            method, self.base_url + self.prefix + route, json=json, params=params,
            headers={"Connection": "close", **(headers or {})},
        ).prepare()
        prepared.headers["Authorization"] = self.authorization(prepared, timestamp)
        return prepared

    def authorization(self, prepared: requests.PreparedRequest,
                      timestamp: int | None = None) -> str:
        if self.mode == "plain":
            return signing.plain_authorization(self.creds.api_key, self.creds.api_secret)
        path, _, query = prepared.path_url.partition("?")
        body = prepared.body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        return signing.signed_authorization(
            self.creds.api_key, self.creds.api_secret, prepared.method, path, query, body,
            timestamp=timestamp,
        )

    @staticmethod
    def send(prepared: requests.PreparedRequest) -> requests.Response:
        """Send on a new connection of its own."""
        with requests.Session() as session:
            return session.send(prepared, timeout=HTTP_TIMEOUT)

    def request(self, method: str, route: str, **kwargs) -> requests.Response:
        return self.send(self.prepare(method, route, **kwargs))

    def get(self, route, **kwargs):
        return self.request("GET", route, **kwargs)

    def post(self, route, **kwargs):
        return self.request("POST", route, **kwargs)
