"""The real parent app, in this process, behind a `requests` transport the child's client uses.

``ParentClient(config, session=parent_session(app))`` signs and sends exactly what it
sends over a socket; the adapter hands each prepared request to the Flask test client
and turns its answer back into a ``requests.Response``. ``InProcessParent.down = True``
makes every call fail as a refused connection does.
"""

from __future__ import annotations

import threading
from io import BytesIO
from urllib.parse import urlsplit

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict


class InProcessParent(BaseAdapter):
    def __init__(self, app):
        super().__init__()
        self.app = app
        self.down = False
        self.calls: list[tuple[str, str, int]] = []  # (method, path, status)
        # Lease threads and the test share one app: one request at a time, as in a worker.
        self._lock = threading.Lock()

    def send(self, request: requests.PreparedRequest, **kwargs) -> requests.Response:
        if self.down:
            raise requests.ConnectionError("connection refused (the parent is down)")
        parts = urlsplit(request.url)
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        headers = {name: value for name, value in request.headers.items()
                   if name.lower() != "content-length"}
        with self._lock, self.app.test_client() as client:
            answer = client.open(parts.path, method=request.method, query_string=parts.query,
                                 headers=headers, data=body)
            status, content = answer.status_code, answer.get_data()
            answer_headers = CaseInsensitiveDict(answer.headers.items())
        self.calls.append((request.method, parts.path, status))
        response = requests.Response()
        response.status_code = status
        response.headers = answer_headers
        response.raw = BytesIO(content)
        response._content = content
        response.url = request.url
        response.request = request
        response.encoding = "utf-8"
        return response

    def close(self) -> None:
        pass


def parent_session(adapter: InProcessParent) -> requests.Session:
    """A session whose every http:// URL reaches ``adapter``'s app."""
    session = requests.Session()
    session.mount("http://", adapter)
    return session
