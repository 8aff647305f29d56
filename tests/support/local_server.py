"""A real HTTP server on 127.0.0.1 answering each path as a test says (``LocalServer``)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable


@dataclass
class Reply:
    status: int = 200
    body: bytes | str = b""
    headers: dict = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering
    drip: float | None = None  # send the body a byte at a time, this many seconds apart
    content_length: bool = True  # False: end the body by closing the connection


@dataclass
class Recorded:
    method: str
    path: str
    headers: Message  # case-insensitive .get()
    body: bytes


class LocalServer:
    """A threaded HTTP server answering each path with a Reply (or a function of the request)."""

    def __init__(self):
        self.routes: dict[str, Reply | Callable[[Recorded], Reply]] = {}
        self.requests: list[Recorded] = []
        self._stopped = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> LocalServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stopped.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}{path}"

    def serve(self, path: str, reply: Reply | Callable[[Recorded], Reply]) -> str:
        self.routes[path] = reply
        return self.url(path)

    def requests_to(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path.split("?")[0] == path]

    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self._answer()

            def do_POST(self):
                self._answer()

            def log_message(self, *args):
                pass

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                recorded = Recorded(self.command, self.path, self.headers,
                                    self.rfile.read(length) if length else b"")
                server.requests.append(recorded)
                route = server.routes.get(self.path.split("?")[0], Reply(404, b"not found"))
                reply = route(recorded) if callable(route) else route
                if reply.delay and server._stopped.wait(reply.delay):
                    return
                body = reply.body.encode("utf-8") if isinstance(reply.body, str) else reply.body
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    if reply.content_length:
                        self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    if reply.drip is None:
                        self.wfile.write(body)
                        return
                    for index in range(len(body)):
                        self.wfile.write(body[index:index + 1])
                        self.wfile.flush()
                        if server._stopped.wait(reply.drip):
                            return
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up, as some tests want it to

        return Handler
