"""gunicorn's gthread worker, but slow clients cannot take its threads (issue 8 item 5).

gthread hands a connection to a thread as soon as its first bytes arrive; the thread
then blocks until the whole request has come. Sixteen half-sent requests (2 workers x 8
threads) therefore stopped every heartbeat. Here the worker's event loop reads the
request head, and a body of up to ``MAX_BUFFERED_BODY`` bytes, without blocking, as a
buffering proxy does; a thread is committed only once the request is in. A client that
has not sent its head (and small body) within ``REQUEST_READ_TIMEOUT`` seconds is
disconnected, as is one whose head grows past ``MAX_HEAD``.

Not buffered (handed to a thread as gthread does): TLS served by gunicorn itself, HTTP/2
prior knowledge, chunked bodies and bodies larger than ``MAX_BUFFERED_BODY`` (node uploads
and imports; put a buffering proxy in front if untrusted clients send those), and
``Expect: 100-continue`` requests, whose client waits for the server before the body.
"""

from __future__ import annotations

import errno
import re
import selectors
import time
from functools import partial

from gunicorn.workers.gthread import TConn, ThreadWorker

REQUEST_READ_TIMEOUT = 15.0
MAX_HEAD = 64 * 1024
MAX_BUFFERED_BODY = 1024 * 1024
_CONTENT_LENGTH = re.compile(rb"^content-length:[ \t]*(\d{1,12})[ \t]*\r?$", re.I | re.M)
_CHUNKED = re.compile(rb"^transfer-encoding:.*chunked", re.I | re.M)
_EXPECT = re.compile(rb"^expect:[ \t]*100-continue", re.I | re.M)


def request_is_buffered(data: bytes) -> bool:
    """Tell whether ``data`` holds a whole request head and the body worth waiting for."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return len(data) > MAX_HEAD  # too big a head: let gunicorn refuse it
    head = data[:end]
    if _CHUNKED.search(head) or _EXPECT.search(head):
        return True
    match = _CONTENT_LENGTH.search(head)
    length = int(match.group(1)) if match else 0
    return len(data) - (end + 4) >= min(length, MAX_BUFFERED_BODY)


class BufferingThreadWorker(ThreadWorker):
    """A gthread worker whose event loop reads each request before a thread serves it."""

    def init_process(self):
        self.buffering: dict[TConn, float] = {}
        super().init_process()

    def _buffers(self, conn: TConn) -> bool:
        from gunicorn.http2 import negotiation

        return not self.cfg.is_ssl and not negotiation.prior_knowledge_allowed(
            self.cfg, conn.client)

    def accept(self, listener):
        try:
            client_sock, client_addr = listener.accept()
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = TConn(self.cfg, client_sock, client_addr, listener.getsockname())
        if self._buffers(conn):
            self._start_buffering(conn)
        else:
            client_sock.setblocking(True)
            self.enqueue_req(conn)

    def on_client_socket_readable(self, conn, client):
        """A kept-alive connection has a new request: read it in the loop too."""
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        if self._buffers(conn):
            self._start_buffering(conn)
            self._on_buffer_readable(conn, client)
        else:
            self.enqueue_req(conn)

    def _start_buffering(self, conn: TConn) -> None:
        conn.sock.setblocking(False)
        conn.prebuffer = bytearray()
        self.buffering[conn] = time.monotonic() + REQUEST_READ_TIMEOUT
        self.poller.register(conn.sock, selectors.EVENT_READ,
                             partial(self._on_buffer_readable, conn))

    def _on_buffer_readable(self, conn: TConn, sock) -> None:
        if conn not in self.buffering:
            return
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(conn)
            return
        conn.prebuffer += data
        if request_is_buffered(conn.prebuffer):
            self._stop_buffering(conn)
            conn.data_ready = True
            conn.init()  # plain HTTP/1: only builds the parser
            conn.parser.unreader.unread(bytes(conn.prebuffer))
            conn.prebuffer = bytearray()
            self.enqueue_req(conn)

    def _stop_buffering(self, conn: TConn) -> None:
        self.buffering.pop(conn, None)
        try:
            self.poller.unregister(conn.sock)
        except (OSError, KeyError, ValueError):
            pass

    def _drop(self, conn: TConn) -> None:
        self._stop_buffering(conn)
        self.nr_conns -= 1
        conn.close()

    def murder_pending(self):
        super().murder_pending()
        moment = time.monotonic()
        expired = [conn for conn, deadline in self.buffering.items()
                   if deadline <= moment or not self.alive]
        for conn in expired:
            self._drop(conn)
