"""gunicorn's gthread worker, but a connection takes a thread only once its request has arrived.

The stock worker hands a connection to a thread as soon as its first byte
arrives, and that thread then reads the rest with no deadline: 64 clients
sending a head a byte a second hold all 2 x 8 threads, and every trigger waits
until they leave. Here the main loop (a selector, no thread) reads the request
head and its body of declared length without blocking, and only then does a
thread parse and answer it from those bytes. A client that sends `Expect:
100-continue` is asked for its body from the main loop; what a client pipelines
behind a request is read there too.

The main loop answers these itself, in the app's JSON error shape, and closes
the connection without blocking: a request not in within
GUNICORN_REQUEST_READ_TIMEOUT_S (default 30 s) 408, a head over HEAD_LIMIT 431,
a chunked body 411 (its length is not known up front), a body over BODY_LIMIT
(16 MiB, the largest a hook takes) 413, and one past the worker's BODY_BUDGET
for bodies held at once 503. In a thread, every wait on the socket is bounded.
Nothing else changes: threads, keep-alive, graceful stop, the prune threads the
app starts.
"""

from __future__ import annotations

import errno
import json
import os
import selectors
import socket
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial

from gunicorn.workers.gthread import TConn, ThreadWorker

READ_TIMEOUT_VARIABLE = "GUNICORN_REQUEST_READ_TIMEOUT_S"
DEFAULT_READ_TIMEOUT_S = 30.0
HEAD_LIMIT = 64 * 1024
# the largest body a hook takes, webhook.web.hooks.ALERTMANAGER_BODY_BYTES (a test holds them
# equal; not imported: the master loads this module, and keeps no app module across a reload).
# A body is read here whole, however slowly it comes: 413 for a longer declared length
BODY_LIMIT = 16 * 1024 * 1024
# declared body bytes a worker holds at once, arriving here or in a thread: a request whose
# body would go past it is answered 503 with Retry-After (Alertmanager retries a 5xx), not
# made to wait, since waiting would hold its socket anyway. A request without a body (a cron
# trigger) needs none. With worker_connections x HEAD_LIMIT for heads, this bounds what slow
# clients can make a worker hold
BODY_BUDGET = 64 * 1024 * 1024
# a thread waits on a socket at most what is left of the request's read deadline, and at
# least this, so a request that came in just in time still gets its answer written
THREAD_IO_MIN_S = 5.0
# a refused client's further bytes are read and discarded this long before closing
LINGER_S = 2.0
_HEAD_END = b"\r\n\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_RECV = 64 * 1024


def refusal(status: int, reason: str, code: str, message: str, *fields: str) -> bytes:
    """An answer the main loop sends itself, in the app's JSON error shape, closing;
    `fields` are more header lines."""
    body = json.dumps({"error": code, "message": message}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n"
    )
    return "".join([head, *(f"{field}\r\n" for field in fields), "\r\n"]).encode() + body


REQUEST_TIMEOUT = refusal(
    408, "Request Timeout", "request_timeout", "the request did not arrive in time"
)
HEAD_TOO_LARGE = refusal(
    431,
    "Request Header Fields Too Large",
    "request_header_fields_too_large",
    f"the request head is over {HEAD_LIMIT // 1024} KiB",
)
# None of the senders prunehook serves (Alertmanager, curl, cron pingers) sends a webhook
# body chunked: each knows its length. Reading a chunked body here would mean parsing the
# chunks; handing it to a thread unread would let a client hold that thread.
LENGTH_REQUIRED = refusal(
    411,
    "Length Required",
    "length_required",
    "send the body with a Content-Length; Transfer-Encoding is not accepted",
)
BODY_TOO_LARGE = refusal(
    413,
    "Request Entity Too Large",
    "request_entity_too_large",
    f"the body is over {BODY_LIMIT // 1024 // 1024} MiB",
)
BUSY = refusal(
    503,
    "Service Unavailable",
    "service_unavailable",
    "too many request bodies arriving at once; retry",
    "Retry-After: 5",
)


def request_read_timeout_s(environ: Mapping[str, str] = os.environ) -> float:
    """Seconds a request (head and body) may take to arrive; ValueError names a bad value."""
    raw = environ.get(READ_TIMEOUT_VARIABLE, "").strip()
    if not raw:
        return DEFAULT_READ_TIMEOUT_S
    try:
        seconds = float(raw)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds <= 3600:  # nan too
        raise ValueError(f"{READ_TIMEOUT_VARIABLE}={raw!r}: give seconds, over 0 and at most 3600")
    return seconds


@dataclass(frozen=True)
class Head:
    """What the main loop needs to know of a complete request head."""

    size: int  # bytes, the blank line that ends it included
    body: int  # the declared Content-Length; 0 without one, or with one the parser refuses
    transfer_encoding: bool
    expects_continue: bool  # `Expect: 100-continue` in HTTP/1.1: the client waits to be asked


def read_head(head: bytes) -> Head:
    """The framing of a request head (`head` ends with its blank line). Validating it is
    left to gunicorn's parser, which refuses anything read differently here."""
    lengths = []
    transfer_encoding = expects_continue = False
    # gunicorn allows one empty line before the request line (RFC 9112 section 2.2)
    request_line, *lines = head.removeprefix(b"\r\n").split(b"\r\n")
    for line in lines:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"transfer-encoding":
            transfer_encoding = True
        elif name == b"content-length":
            lengths.append(value.strip())
        elif name == b"expect":
            # an HTTP/1.0 client's expectation is ignored (RFC 9110 section 10.1.1)
            expects_continue = value.strip().lower() == b"100-continue" and (
                request_line.endswith(b" HTTP/1.1")
            )
    body = 0
    if len(lengths) == 1 and lengths[0].isdigit():
        digits = lengths[0].lstrip(b"0") or b"0"
        # as long as gunicorn reads it (leading zeros too); one of over 12 digits is only
        # known to be over BODY_LIMIT (int() refuses over 4,300 digits)
        body = int(digits) if len(digits) <= 12 else 10**12
    return Head(len(head), body, transfer_encoding, expects_continue)


def wanted(head: Head) -> int:
    """The bytes of the request: its head and its declared body."""
    return head.size + head.body


class BufferedConn(TConn):
    def __init__(self, cfg, sock, client, server):
        super().__init__(cfg, sock, client, server)
        self.buffered = bytearray()
        self.searched_to = 0  # where to look for the end of the head next
        self.head: Head | None = None  # once complete
        self.held = 0  # its body's share of the worker's BODY_BUDGET

    def init(self) -> None:
        """In a thread, once gthread's handle() has made the socket blocking (no timeout):
        bound every wait on it. The whole request is in, so no read should wait at all; a
        write waits on a client that does not read its answer."""
        super().init()
        if self.timeout is not None:
            self.sock.settimeout(max(self.timeout - time.monotonic(), THREAD_IO_MIN_S))

    def next_request(self) -> None:
        self.buffered, self.searched_to, self.head = bytearray(), 0, None


class RequestBufferingWorker(ThreadWorker):
    def init_process(self) -> None:
        self.arriving: deque[BufferedConn] = deque()  # oldest deadline first
        self.lingering: deque[BufferedConn] = deque()  # answered, closing; oldest first
        self.body_bytes_held = 0
        self.read_timeout_s = request_read_timeout_s()
        # TLS, HTTP/2 and uwsgi read from the socket themselves: those keep the stock path
        self.buffering = (
            not self.cfg.is_ssl
            and self.cfg.http2_cleartext == "off"
            and self.cfg.protocol == "http"
        )
        super().init_process()

    def accept(self, listener) -> None:
        if not self.buffering:
            return super().accept(listener)
        try:
            client_sock, client_addr = listener.accept()
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return None
        self.nr_conns += 1
        self.await_request(BufferedConn(self.cfg, client_sock, client_addr, listener.getsockname()))
        return None

    def on_client_socket_readable(self, conn, client) -> None:
        """A kept-alive connection's next request waits for its bytes the same way."""
        if not isinstance(conn, BufferedConn):
            return super().on_client_socket_readable(conn, client)
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self.await_request(conn)
        return None

    def _watch(self, conn: BufferedConn, waiting: list, seconds: float, on_bytes) -> None:
        """Read `conn` from the main loop until `seconds` from now, kept in `waiting`."""
        conn.sock.setblocking(False)
        conn.timeout = time.monotonic() + seconds
        waiting.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(on_bytes, conn))

    @staticmethod
    def _receive(conn: BufferedConn) -> bytes | None:
        """What arrived: b"" when the client closed (or the connection broke), None when
        nothing was there after all."""
        try:
            return conn.sock.recv(_RECV)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            return b""

    def await_request(self, conn: BufferedConn) -> None:
        self._watch(conn, self.arriving, self.read_timeout_s, self.on_request_bytes)

    def on_request_bytes(self, conn: BufferedConn, client) -> None:
        data = self._receive(conn)
        if data is None:
            return
        if not data:
            self.stop_awaiting(conn)
            self.end(conn)
            return
        conn.buffered += data
        self.advance(conn)

    def advance(self, conn: BufferedConn) -> None:
        """Act on what has come of a request: wait for more, refuse it, or hand it to a
        thread once it is all in."""
        if conn.head is None:
            end = conn.buffered.find(_HEAD_END, conn.searched_to)
            if end < 0:
                conn.searched_to = max(len(conn.buffered) - len(_HEAD_END) + 1, 0)
                if len(conn.buffered) > HEAD_LIMIT:
                    self.refuse(conn, HEAD_TOO_LARGE)
                return
            conn.head = read_head(bytes(conn.buffered[: end + len(_HEAD_END)]))
            if conn.head.transfer_encoding:
                self.refuse(conn, LENGTH_REQUIRED)
                return
            if conn.head.body > BODY_LIMIT:
                self.refuse(conn, BODY_TOO_LARGE)
                return
            if self.body_bytes_held + conn.head.body > BODY_BUDGET:
                self.refuse(conn, BUSY)
                return
            conn.held = conn.head.body
            self.body_bytes_held += conn.held
            # the client sends its body once asked: ask here, and go on reading it here
            ask = conn.head.expects_continue and len(conn.buffered) < wanted(conn.head)
            if ask and not self.send_interim(conn, CONTINUE):
                return
        if len(conn.buffered) >= wanted(conn.head):
            self.stop_awaiting(conn)
            conn.data_ready = True
            self.enqueue_req(conn)

    def handle(self, conn):
        """In a thread: give the parser what the main loop read, then serve as gthread does."""
        if isinstance(conn, BufferedConn) and conn.buffered:
            arrived = conn.buffered  # not copied: next_request() starts a new buffer
            conn.next_request()
            conn.sock.setblocking(True)
            conn.init()
            conn.parser.unreader.unread(arrived)
        return super().handle(conn)

    def finish_request(self, conn, fs) -> None:
        """Back in the main loop once a thread is done with a request: its body is no longer
        held; a connection to close lingers without blocking the loop; and what the client
        sent behind the request (a pipelined one, read with it) is awaited here like any
        request, where gthread would have a thread read the rest."""
        if not isinstance(conn, BufferedConn):
            return super().finish_request(conn, fs)
        self.release(conn)
        if fs.cancelled() or fs.exception() is not None:
            return super().finish_request(conn, fs)
        if not fs.result():
            # gthread's graceful close waits for the client's end, up to 2 s, in this loop
            self.linger(conn)
            return None
        behind = conn.parser.unreader.take_buffered()
        if not behind:
            return super().finish_request(conn, fs)
        conn.buffered += behind
        self.await_request(conn)
        self.advance(conn)
        return None

    def release(self, conn: BufferedConn) -> None:
        self.body_bytes_held -= conn.held
        conn.held = 0

    def handle_request(self, req, conn):
        """In a thread: gunicorn answers `Expect: 100-continue` as it starts the app, but the
        main loop asked for the body already, if it had not come, and it is here now."""
        if not isinstance(conn, BufferedConn):
            return super().handle_request(req, conn)
        req._expected_100_continue = False
        try:
            return super().handle_request(req, conn)
        except TimeoutError:  # BufferedConn.init's bound: a line, not gthread's traceback
            self.log.info("closing %s: its socket waited past the request's deadline", conn.client)
            return False

    def send_interim(self, conn: BufferedConn, answer: bytes) -> bool:
        """Send a 1xx answer from the main loop; False (and the connection closed) if the
        socket would not take it whole at once."""
        try:
            sent = conn.sock.send(answer)
        except OSError:
            sent = 0
        if sent == len(answer):
            return True
        self.stop_awaiting(conn)
        self.end(conn)
        return False

    def stop_awaiting(self, conn: BufferedConn) -> None:
        self.poller.unregister(conn.sock)
        self.arriving.remove(conn)

    def refuse(self, conn: BufferedConn, answer: bytes) -> None:
        """Answer from the main loop and close: the request never reaches a thread."""
        self.stop_awaiting(conn)
        self.release(conn)
        try:
            # under 1 KiB on a socket with nothing left to send: fits its send buffer
            conn.sock.send(answer)
        except OSError:
            self.end(conn)
            return
        self.linger(conn)

    def linger(self, conn: BufferedConn) -> None:
        """Close for writing, then read and discard what the client still sends until it
        closes too, or for LINGER_S: closing with unread bytes would reset the connection,
        and the client could lose the answer (RFC 9112 section 9.6). gunicorn's own
        graceful close waits the same way, but blocking, which here is the main loop."""
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.end(conn)
            return
        self._watch(conn, self.lingering, LINGER_S, self.on_linger_bytes)

    def on_linger_bytes(self, conn: BufferedConn, client) -> None:
        data = self._receive(conn)
        if data is None:
            return
        if not data:
            self.poller.unregister(conn.sock)
            self.lingering.remove(conn)
            self.end(conn)

    def end(self, conn: BufferedConn) -> None:
        self.release(conn)
        self.nr_conns -= 1
        conn.close()

    def murder_pending(self) -> None:
        """Called by the main loop once a second (and while stopping): expire slow requests
        and lingering closes."""
        super().murder_pending()
        now = time.monotonic()
        while self.arriving and self.arriving[0].timeout <= now:
            self.refuse(self.arriving[0], REQUEST_TIMEOUT)
        while self.lingering and self.lingering[0].timeout <= now:
            conn = self.lingering.popleft()
            self.poller.unregister(conn.sock)
            self.end(conn)
