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

Claim parking (issue 14; docs/OPERATIONS.md, "Waiting claims"): a native claim that carries
the ``X-Work-Token`` of its last answer and ``Prefer: wait=N`` is held by the event loop
while the work generation it names is still current and its due moment has not come: no
thread, no app call, no query. The worker releases it to the app when the generation moves
(in FIFO batches, see ``_pump``) or its due moment comes, and answers it itself with a
``204`` "no change" when its wait runs out.
"""

from __future__ import annotations

import errno
import heapq
import random
import re
import resource
import selectors
import socket
import time
from collections import deque
from dataclasses import dataclass, field, replace
from functools import partial

from gunicorn.util import http_date
from gunicorn.workers.gthread import TConn, ThreadWorker

from shared import paths

from .metrics import count_abandoned_request, count_worker_claim_answer

REQUEST_READ_TIMEOUT = 15.0
MAX_HEAD = 64 * 1024
MAX_BUFFERED_BODY = 1024 * 1024
_CONTENT_LENGTH = re.compile(rb"^content-length:[ \t]*(\d{1,12})[ \t]*\r?$", re.I | re.M)
_CHUNKED = re.compile(rb"^transfer-encoding:.*chunked", re.I | re.M)
_EXPECT = re.compile(rb"^expect:[ \t]*100-continue", re.I | re.M)

# Parking. The longest a claim is held before the worker answers "no change" itself.
PARK_MAX = 50
# Released claims in flight at once after the generation moves, per thread (see _pump).
RELEASE_WINDOW_PER_THREAD = 2
# A parked connection is answered "no change" on another claim's word only if the app saw
# one of its own claims this recently: a change that moves no generation (an admin edits a
# node's labels, a WeChat session becomes valid) reaches every parked child within this.
APP_CLAIM_AT_LEAST_EVERY = 300.0
# Backpressure (see _defer): once this many requests per thread are with the app (three
# waiting for each one running), claims it would have to answer now are told to come back
# in DEFER_SECONDS instead.
APP_BACKLOG_PER_THREAD = 4
DEFER_SECONDS = (5, 25)
# A request that waited this long for a thread is looked at first: if its client has gone
# (given up and closed the connection), the app does not serve it (see client_gone).
ABANDONED_AFTER = 1.0
NATIVE_CLAIM_PATH = paths.CASCADE_PREFIX + paths.CLAIM
_CLAIM_LINE = re.compile(rb"POST " + re.escape(NATIVE_CLAIM_PATH.encode()) + rb" HTTP/1\.([01])\r\n")
_WORK_TOKEN = re.compile(rb"^x-work-token:[ \t]*([^\r\n]*?)[ \t]*\r?$", re.I | re.M)
_PREFER_WAIT = re.compile(rb"^prefer:[^\r\n]*?(?<![\w-])wait[ \t]*=[ \t]*(\d{1,6})\b",
                          re.I | re.M)
_LENGTH_LINE = re.compile(rb"^content-length:[ \t]*(\d{1,12})[ \t]*\r?$", re.I | re.M)
_CLOSE = re.compile(rb"^connection:[^\r\n]*\bclose\b", re.I | re.M)
_KEEP_ALIVE = re.compile(rb"^connection:[^\r\n]*\bkeep-alive\b", re.I | re.M)


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


def client_gone(sock) -> bool:
    """Whether the peer closed (or reset) the connection and nothing more is there to read.

    One non-blocking peek. The request itself is already read (the event loop buffered
    it), so an end of stream here means the client gave up waiting: a child's request
    times out, it closes, and asks again later. A client that half-closes after sending
    (``shutdown(SHUT_WR)``, rare in HTTP/1.1) reads as gone too, which is why only a
    request that waited ``ABANDONED_AFTER`` for a thread is looked at.
    """
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True


@dataclass(frozen=True)
class ParkableClaim:
    """What the worker needs of a claim it may park."""

    token: bytes
    generation: int
    due: int
    wait: int
    close: bool = False  # the client (or a proxy) wants the connection closed after it


def native_claim(data: bytes) -> tuple[bytes, bool] | None:
    """``(head, close)`` if ``data`` is exactly one whole native ``POST`` claim, else None.

    Nothing may be pipelined behind it; ``close``: the client (or a proxy) wants the
    connection closed after the answer.
    """
    end = data.find(b"\r\n\r\n")
    line = _CLAIM_LINE.match(data)
    if end < 0 or not line:
        return None
    head = data[:end + 2]
    if _CHUNKED.search(head) or _EXPECT.search(head):
        return None
    close = bool(_CLOSE.search(head)) or (line.group(1) == b"0" and not _KEEP_ALIVE.search(head))
    lengths = _LENGTH_LINE.findall(head)
    if len(lengths) > 1 or len(data) != end + 4 + (int(lengths[0]) if lengths else 0):
        return None
    return head, close


def parkable_claim(data: bytes) -> ParkableClaim | None:
    """The claim in ``data`` if it asks to be parked, else None (the app serves it).

    ``data`` must be exactly one whole HTTP/1.x request (nothing pipelined behind it):
    a native ``POST`` claim with one well-formed ``X-Work-Token`` and ``Prefer: wait=N``.
    """
    from .services.work_signal import parse_token

    claim = native_claim(data)
    if claim is None:
        return None
    head, close = claim
    tokens = _WORK_TOKEN.findall(head)
    waits = _PREFER_WAIT.findall(head)
    parsed = parse_token(tokens[0]) if len(tokens) == 1 else None
    if parsed is None or not waits or int(waits[0]) <= 0:
        return None
    return ParkableClaim(tokens[0], parsed[0], parsed[1], int(waits[0]), close)


@dataclass(eq=False)
class _Parked:
    claim: ParkableClaim
    until: float  # monotonic: answer "no change" then
    due_at: float  # monotonic: release to the app then
    seq: int
    eligible_since: float | None = None  # monotonic: waiting for release since then
    by_due: bool = False  # waiting because its due second came, not new work
    prebuffer: bytes = field(default=b"", repr=False)


def come_back_answer(retry_after: int, close: bool = False, token: bytes | None = None) -> bytes:
    """The worker's answer to a claim while the app is backed up: 204, claim again later.

    With ``token`` (due when the ``retry_after`` ends), a child parks its next claim on it
    at once instead of sleeping: it comes to the app when its due second or new work comes.
    """
    return b"".join((
        b"HTTP/1.1 204 No Content\r\n",
        b"Server: gunicorn\r\n",
        b"Date: ", http_date().encode(), b"\r\n",
        b"Connection: ", b"close" if close else b"keep-alive", b"\r\n",
        *((b"X-Work-Token: ", token, b"\r\n") if token else ()),
        b"Retry-After: ", str(retry_after).encode(), b"\r\n",
        b"\r\n",
    ))


def no_change_answer(token: bytes, wait: int, close: bool = False) -> bytes:
    """The worker's own answer to a parked claim: 204, come back at once with ``token``."""
    return b"".join((
        b"HTTP/1.1 204 No Content\r\n",
        b"Server: gunicorn\r\n",
        b"Date: ", http_date().encode(), b"\r\n",
        b"Connection: ", b"close" if close else b"keep-alive", b"\r\n",
        b"X-Work-Token: ", token, b"\r\n",
        b"Retry-After: 0\r\n",
        b"Preference-Applied: wait=", str(wait).encode(), b"\r\n",
        b"\r\n",
    ))


class BufferingThreadWorker(ThreadWorker):
    """A gthread worker whose event loop reads each request before a thread serves it."""

    def init_process(self):
        self.buffering: dict[TConn, float] = {}
        # Parking state, touched only by the event loop's thread (others defer to it).
        self.parked: dict[TConn, _Parked] = {}  # insertion order: FIFO
        self.max_parked = 0
        self.generation: int | None = None
        self._park_timers: list[tuple[float, int, TConn]] = []
        self._park_seq = 0
        self._to_release: deque[TConn] = deque()
        self._released: set[TConn] = set()
        self._release_window = RELEASE_WINDOW_PER_THREAD * max(1, self.cfg.threads)
        # Claim class -> (generation, due, asked at monotonic, asked at UNIX time): a 204
        # the app gave a node of that class (labels, sources, WeChat) under this generation.
        self._quiet: dict[str | None, tuple[int, int, float, float]] = {}
        # socket -> (status, token, claim class) of a native claim's answer
        self._answers: dict[object, tuple[int, str | None, str | None]] = {}
        self._watcher = None
        self.in_app = 0  # requests handed to the thread pool and not finished yet
        self._deferring = 0  # claims deferred since the app last caught up (see _defer)
        self._handing_out = False  # the app's last answer to a native claim was a 200
        super().init_process()

    def run(self):
        self._start_parking()
        try:
            super().run()
        finally:
            if self._watcher is not None:
                self._watcher.stop()

    # -- parking: set-up --------------------------------------------------------------------
    def _start_parking(self) -> None:
        app = self.wsgi  # type: ignore[has-type]  # set by gunicorn before run()
        config = getattr(app, "config", None)
        if not config or "WERSS_SETTINGS" not in config:
            return
        self.max_parked = config["WERSS_SETTINGS"].cascade.max_parked_claims
        database_url = config.get("SQLALCHEMY_DATABASE_URI", "")
        if self.max_parked <= 0 or ":memory:" in database_url:
            self.max_parked = 0
            return
        from .services.work_signal import GenerationWatcher

        # Parked connections count against gunicorn's per-worker cap, and each is a file.
        self.worker_connections = self.cfg.worker_connections + self.max_parked
        self.max_keepalived = self.worker_connections - self.cfg.threads
        _raise_open_files(self.worker_connections + 256)
        self.wsgi = self._parking_app(app)
        self._watcher = GenerationWatcher(
            database_url, lambda gen: self.method_queue.defer(self._observe_generation, gen))
        self._watcher.start()

    def _parking_app(self, app):
        """Tell the app claims may park, and note each native claim's answer for the loop."""
        answers = self._answers

        def parking(environ, start_response):
            environ["werss.parking"] = True
            if (environ.get("REQUEST_METHOD") != "POST"
                    or environ.get("PATH_INFO") != NATIVE_CLAIM_PATH):
                return app(environ, start_response)
            sock = environ.get("gunicorn.socket")
            # Read now, before the claim's candidate query: the view's token needs no query.
            environ["werss.generation"] = self.generation

            def noting(status, headers, exc_info=None):
                token = next((value for name, value in headers
                              if name.lower() == "x-work-token"), None)
                # The claim view has run by now, and said what kind of node asked.
                answers[sock] = (int(status.split(" ", 1)[0]), token,
                                 environ.get("werss.claim_class"))
                return start_response(status, headers, exc_info)

            return app(environ, noting)

        return parking

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
            if not self._park(conn) and not self._defer(conn):
                self._hand_to_thread(conn)

    def _hand_to_thread(self, conn: TConn) -> None:
        conn.data_ready = True
        conn.init()  # plain HTTP/1: only builds the parser
        conn.parser.unreader.unread(bytes(conn.prebuffer))
        conn.prebuffer = bytearray()
        self.enqueue_req(conn)

    def enqueue_req(self, conn):
        # What a claim answer of this request can know: the world as of this moment.
        conn.enqueued_at, conn.enqueued_wall = time.monotonic(), time.time()
        self.in_app += 1
        super().enqueue_req(conn)

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
        if not self.alive:
            # Stopping: do not wait out parked claims; they claim again elsewhere at once.
            for conn in list(self.parked):
                self._answer(conn, self.parked[conn].claim.token, close=True)
        self._run_park_timers()

    def wait_for_and_dispatch_events(self, timeout):
        if self._park_timers:
            timeout = min(timeout, max(0.0, self._park_timers[0][0] - time.monotonic()))
        super().wait_for_and_dispatch_events(timeout)

    def handle(self, conn):
        """Serve a request in a thread, unless its client gave up while it waited for one.

        Once more requests come than the app can serve, each waits longer for a thread;
        past the clients' timeouts, every request the app served was one nobody waited
        for any more, and a fleet of children got nothing but timeouts (bench/README.md,
        "A fleet the parent cannot keep up with"). A request whose client has gone is
        dropped, so the app's time goes to the ones still waiting.
        """
        waited = time.monotonic() - getattr(conn, "enqueued_at", time.monotonic())
        if waited >= ABANDONED_AFTER and not self.cfg.is_ssl and client_gone(conn.sock):
            count_abandoned_request()
            return False  # finish_request closes the connection
        return super().handle(conn)

    def finish_request(self, conn, fs):
        self.in_app -= 1
        if self._deferring and self.in_app <= self.cfg.threads:
            self.log.info("app caught up; claims told to come back later meanwhile: %d",
                          self._deferring)
            self._deferring = 0
        answer = self._answers.pop(conn.sock, None)
        released = conn in self._released
        self._released.discard(conn)
        super().finish_request(conn, fs)
        if answer is not None:
            self._handing_out = answer[0] == 200
            self._learn(conn, *answer)
        if released or answer is not None:
            self._pump()

    # -- parking: the event loop's side -----------------------------------------------------
    def _park(self, conn: TConn) -> bool:
        """Hold a claim whose token is current, off the thread pool; False: serve it."""
        if (not self.max_parked or self.generation is None or not self.alive
                or len(self.parked) >= self.max_parked):
            return False
        claim = parkable_claim(bytes(conn.prebuffer))
        if claim is None or claim.generation != self.generation:
            return False
        moment, wall = time.monotonic(), time.time()
        if claim.due <= wall:
            return False
        self._park_seq += 1
        entry = _Parked(claim, until=moment + min(claim.wait, PARK_MAX),
                        due_at=moment + (claim.due - wall), seq=self._park_seq,
                        prebuffer=bytes(conn.prebuffer))
        conn.prebuffer = bytearray()
        self.parked[conn] = entry
        heapq.heappush(self._park_timers, (entry.until, entry.seq, conn))
        if entry.due_at < entry.until:
            heapq.heappush(self._park_timers, (entry.due_at, entry.seq, conn))
        self.poller.register(conn.sock, selectors.EVENT_READ,
                             partial(self._on_parked_readable, conn))
        return True

    def _defer(self, conn: TConn) -> bool:
        """Answer a claim "come back later" while the app is backed up; False: serve it.

        A claim the app would have to answer now (no token to park on, a stale one, or a
        due one) costs it a few milliseconds of CPU; a fleet of children starting at once,
        or reconnecting after an outage, sends thousands. Once more requests wait for a
        thread than ``APP_BACKLOG_PER_THREAD`` allows, the worker answers such a claim
        itself, ``204`` with a ``Retry-After`` spread over ``DEFER_SECONDS`` and an
        ``X-Work-Token`` of the current generation due when it ends, as the app
        answers an empty claim: heartbeats and pulls behind it are not kept waiting, and
        the children park their next claims on that token at once (no sleep, no new
        connection), to reach the app spread over their due seconds, a release batch at a
        time, or when new work moves the generation. Parked claims released by new work
        are not deferred (they come to the app in release batches, not through here), and
        nothing is deferred while the app's last answer to a claim handed out work: a
        backlog of claims that get leases is not an idle fleet's start, and deferring them
        would leave the work pending while its takers park. Like
        a parked claim, a deferred one is not authenticated: the answer tells nothing but
        the work generation, a counter.
        """
        if not self._backed_up():
            return False
        claim = native_claim(bytes(conn.prebuffer))
        if claim is None:
            return False
        conn.prebuffer = bytearray()
        self._note_deferral("deferred")
        close = claim[1] or not self.alive or len(self.keepalived_conns) >= self.max_keepalived
        later = random.randint(*DEFER_SECONDS)
        token = (None if self.generation is None
                 else f"{self.generation}.{int(time.time()) + later}".encode())
        self._send_and_keep(conn, come_back_answer(later, close, token), close)
        return True

    def _send_and_keep(self, conn: TConn, response: bytes, close: bool) -> None:
        """Send the worker's own answer; keep the connection alive for the next request."""
        try:
            sent = conn.sock.send(response)
        except OSError:
            sent = -1
        if close or sent != len(response):
            self.nr_conns -= 1
            conn.close()
            return
        conn.set_timeout()
        self.keepalived_conns.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ,
                             partial(self.on_client_socket_readable, conn))

    def _unpark(self, conn: TConn) -> _Parked:
        entry = self.parked.pop(conn)
        try:
            self.poller.unregister(conn.sock)
        except (OSError, KeyError, ValueError):
            pass
        return entry

    def _on_parked_readable(self, conn: TConn, sock) -> None:
        if conn not in self.parked:
            return
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client went away: nobody to answer
            self._unpark(conn)
            self.nr_conns -= 1
            conn.close()
            return
        # A pipelined request behind the claim: let the app serve both, in order.
        self.parked[conn].prebuffer += data
        self._release(conn)

    def _release(self, conn: TConn, counted: bool = False) -> None:
        """Hand a parked claim to the thread pool and the app, as if it had just come."""
        entry = self._unpark(conn)
        conn.prebuffer = bytearray(entry.prebuffer)
        if counted:
            self._released.add(conn)
        self._hand_to_thread(conn)

    def _answer(self, conn: TConn, token: bytes, close: bool = False) -> None:
        """Answer a parked claim "no change, claim again with ``token``" without the app."""
        entry = self._unpark(conn)
        close = (close or entry.claim.close or not self.alive
                 or len(self.keepalived_conns) >= self.max_keepalived)
        count_worker_claim_answer("no_change")
        self._send_and_keep(conn, no_change_answer(token, entry.claim.wait, close=close), close)

    def _run_park_timers(self) -> None:
        moment = time.monotonic()
        due = False
        while self._park_timers and self._park_timers[0][0] <= moment:
            _, seq, conn = heapq.heappop(self._park_timers)
            entry = self.parked.get(conn)
            if entry is None or entry.seq != seq:
                continue  # released or answered since
            if moment >= entry.until:
                self._answer(conn, entry.claim.token)
            elif entry.eligible_since is None:
                entry.eligible_since, entry.by_due = moment, True  # the app must look
                self._to_release.append(conn)
                due = True
        if due:
            self._pump()

    def _observe_generation(self, generation: int) -> None:
        """The work generation moved (watcher or an app answer): parked claims look again."""
        if self.generation is not None and generation <= self.generation:
            return
        self.generation = generation
        self._quiet.clear()
        moment = time.monotonic()
        for conn, entry in self.parked.items():
            if entry.claim.generation == generation:
                continue
            entry.by_due = False
            if entry.eligible_since is None:
                entry.eligible_since = moment
                self._to_release.append(conn)
        self._pump()

    def _learn(self, conn: TConn, status: int, token: str | None,
               claim_class: str | None) -> None:
        from .services.work_signal import parse_token

        parsed = parse_token(token)
        if parsed is None or claim_class is None:
            return
        conn.claim_class, conn.app_answered_at = claim_class, time.monotonic()
        self._observe_generation(parsed[0])
        if status == 204 and parsed[0] == self.generation:
            self._quiet[claim_class] = (parsed[0], parsed[1], getattr(conn, "enqueued_at", 0.0),
                                        getattr(conn, "enqueued_wall", 0.0))

    def _pump(self) -> None:
        """Release waiting claims without a thundering herd.

        At most ``_release_window`` released claims are with the app at once: each that
        comes back (with leases, say) lets the next one go. Once the app answered a claim
        of some class of node 204 under the current generation, having started after a
        waiting claim of that class became waiting, it has shown there is nothing for that
        class: the worker keeps those parked under that token, as if each had been answered
        with it and come straight back (``_repark``), and answers them when their wait ends.
        """
        moment, wall = time.monotonic(), time.time()
        while self._to_release:
            conn = self._to_release[0]
            entry = self.parked.get(conn)
            if entry is None or entry.eligible_since is None:
                self._to_release.popleft()
                continue
            quiet = self._quiet_for(conn, entry, moment, wall)
            if quiet is not None:
                self._to_release.popleft()
                due = quiet[1] if entry.claim.due <= wall else min(entry.claim.due, quiet[1])
                self._repark(conn, entry, quiet[0], due, moment, wall)
                continue
            # New work: a window of claims, most of which will get some. A due second
            # alone (nothing signalled): one claim asks the app, the rest wait its answer
            # — unless no answer could be shared with it (the app has not answered this
            # connection yet, say a claim deferred at a fleet's start): holding it back
            # saves nothing, and thousands of them, one at a time, kept the app busy for
            # minutes after the start.
            alone = entry.by_due and self._could_share(conn, moment)
            if entry.by_due and not alone and self._released and self._backed_up():
                # Only its due second came, the app is backed up and one claim is already
                # asking it: this one would wait in the backlog with the heartbeats until
                # its child gave up on it.
                self._to_release.popleft()
                self._hold(conn, entry, moment, wall)
                continue
            if len(self._released) >= (1 if alone else self._release_window):
                return
            self._to_release.popleft()
            self._release(conn, counted=True)

    def _backed_up(self) -> bool:
        """Whether claims are told to come back later instead of joining the app's backlog."""
        return (bool(self.max_parked) and not self._handing_out
                and self.in_app >= APP_BACKLOG_PER_THREAD * self.cfg.threads)

    def _note_deferral(self, reason: str) -> None:
        if not self._deferring:
            self.log.warning("app backed up (%d requests with %d threads): claims are told "
                             "to come back in %d-%d s", self.in_app, self.cfg.threads,
                             *DEFER_SECONDS)
        self._deferring += 1
        count_worker_claim_answer(reason)

    def _hold(self, conn: TConn, entry: _Parked, moment: float, wall: float) -> None:
        """Keep a due claim parked, due again in ``DEFER_SECONDS``, as ``_defer`` would answer it.

        Without this, in a fleet the app could not keep up with, each claim deferred at
        the start came due 5-25 s later on a connection the app had never answered, went
        to the backlog, outwaited its child's read timeout there (5,296 of the 5,608 that
        reached the app in one run), and came back on a new connection to be deferred and
        come due again (bench/README.md, "A fleet the parent cannot keep up with"). It
        waits on to its own end as ``_repark`` keeps a claim, no round trip; the claim
        already with the app finds any due work.
        """
        self._note_deferral("held")
        self._repark(conn, entry, entry.claim.generation,
                     int(wall) + random.randint(*DEFER_SECONDS), moment, wall)

    def _repark(self, conn: TConn, entry: _Parked, generation: int, due: int,
                moment: float, wall: float) -> None:
        """Keep a claim parked as if it had just come back with the app's new token.

        Answering it 204 with that token would only bring it straight back (a round trip
        per waiting child each time the generation moves): it waits on, to its own end,
        and is then answered with the newest token.
        """
        token = f"{generation}.{due}".encode()
        entry.claim = replace(entry.claim, token=token, generation=generation, due=due)
        entry.eligible_since, entry.by_due = None, False
        self._park_seq += 1
        entry.seq = self._park_seq  # timers pushed for the old token no longer apply
        entry.due_at = moment + (due - wall)
        heapq.heappush(self._park_timers, (entry.until, entry.seq, conn))
        if entry.due_at < entry.until:
            heapq.heappush(self._park_timers, (entry.due_at, entry.seq, conn))

    @staticmethod
    def _could_share(conn: TConn, moment: float) -> bool:
        """Whether another claim's answer may answer this connection's (see _quiet_for)."""
        return moment - getattr(conn, "app_answered_at", -APP_CLAIM_AT_LEAST_EVERY) \
            < APP_CLAIM_AT_LEAST_EVERY

    def _quiet_for(self, conn: TConn, entry: _Parked, moment: float,
                   wall: float) -> tuple[int, int, float, float] | None:
        """The app's 204 that answers this waiting claim too, if there is one."""
        if not self._could_share(conn, moment):
            return None
        quiet = self._quiet.get(getattr(conn, "claim_class", None))
        if quiet is None or quiet[0] != self.generation or quiet[1] <= wall \
                or entry.eligible_since is None:
            return None
        # Asked after what made this claim wait: new work (seen by this loop), or its due
        # second (on the clock: every claim due in that second shares one answer).
        asked_late_enough = (quiet[3] >= entry.claim.due if entry.by_due
                             else quiet[2] >= entry.eligible_since)
        return quiet if asked_late_enough else None


def _raise_open_files(wanted: int) -> None:
    """Let this process hold ``wanted`` descriptors if the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
