"""gunicorn's gthread worker, but a connection takes a thread only once its request has arrived.

The stock worker hands a connection to a thread as soon as its first byte
arrives, and that thread then reads the rest with no deadline: 64 clients
sending a head a byte a second hold all 2 x 8 threads, and every trigger waits
until they leave. Here the main loop (a selector, no thread) reads the request
head, and a body of declared length up to BUFFER_LIMIT, without blocking; only
then does a thread parse and answer it from those bytes. A request that has
not arrived within GUNICORN_REQUEST_READ_TIMEOUT_S (default 30 s) is answered
408, a head over HEAD_LIMIT 431; either way the connection is closed. Nothing else changes:
threads, keep-alive, graceful stop, the prune threads the app starts.
"""

from __future__ import annotations

import errno
import os
import selectors
import socket
import time
from collections import deque
from collections.abc import Mapping
from functools import partial

from gunicorn.workers.gthread import TConn, ThreadWorker

READ_TIMEOUT_VARIABLE = "GUNICORN_REQUEST_READ_TIMEOUT_S"
DEFAULT_READ_TIMEOUT_S = 30.0
HEAD_LIMIT = 64 * 1024
# larger bodies (an Alertmanager group of thousands of alerts) go to a thread once this much
# has arrived: a client that sends that much has shown it is no trickle
BUFFER_LIMIT = 1024 * 1024
_HEAD_END = b"\r\n\r\n"
_RECV = 64 * 1024


def _refusal(status: str) -> bytes:
    return f"HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()


REQUEST_TIMEOUT = _refusal("408 Request Timeout")
HEAD_TOO_LARGE = _refusal("431 Request Header Fields Too Large")


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


def body_to_buffer(head: bytes) -> int:
    """Body bytes to read before a thread takes over: a declared length, else none.

    A chunked body, or a client waiting for `100 Continue`, is handed over with its head.
    """
    lengths = []
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name in (b"transfer-encoding", b"expect"):
            return 0
        if name == b"content-length":
            lengths.append(value.strip())
    if len(lengths) == 1 and lengths[0].isdigit() and len(lengths[0]) < 12:
        return int(lengths[0])
    return 0  # none, or one the parser will refuse


class BufferedConn(TConn):
    def __init__(self, cfg, sock, client, server):
        super().__init__(cfg, sock, client, server)
        self.buffered = bytearray()
        self.wanted: int | None = None  # head + body bytes, once the head is complete


class RequestBufferingWorker(ThreadWorker):
    def init_process(self) -> None:
        self.arriving: deque[BufferedConn] = deque()  # oldest deadline first
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

    def await_request(self, conn: BufferedConn) -> None:
        conn.sock.setblocking(False)
        conn.timeout = time.monotonic() + self.read_timeout_s
        self.arriving.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_request_bytes, conn))

    def on_request_bytes(self, conn: BufferedConn, client) -> None:
        try:
            data = conn.sock.recv(_RECV)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.drop(conn)
            return
        searched_to = max(len(conn.buffered) - len(_HEAD_END) + 1, 0)
        conn.buffered += data
        if conn.wanted is None:
            end = conn.buffered.find(_HEAD_END, searched_to)
            if end < 0:
                if len(conn.buffered) > HEAD_LIMIT:
                    self.drop(conn, HEAD_TOO_LARGE)
                return
            head_size = end + len(_HEAD_END)
            conn.wanted = head_size + body_to_buffer(bytes(conn.buffered[:head_size]))
        if len(conn.buffered) >= min(conn.wanted, BUFFER_LIMIT):
            self.poller.unregister(conn.sock)
            self.arriving.remove(conn)
            conn.data_ready = True
            self.enqueue_req(conn)

    def handle(self, conn):
        """In a thread: give the parser what the main loop read, then serve as gthread does."""
        if isinstance(conn, BufferedConn) and conn.buffered:
            arrived, conn.buffered, conn.wanted = bytes(conn.buffered), bytearray(), None
            conn.sock.setblocking(True)
            conn.init()
            conn.parser.unreader.unread(arrived)
        return super().handle(conn)

    def drop(self, conn: BufferedConn, answer: bytes = b"") -> None:
        self.poller.unregister(conn.sock)
        self.arriving.remove(conn)
        self.nr_conns -= 1
        if answer:
            try:
                conn.sock.send(answer)  # a few bytes on an idle socket: fits its send buffer
                conn.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        conn.close()

    def murder_pending(self) -> None:
        """Called by the main loop once a second (and while stopping): expire slow requests."""
        super().murder_pending()
        now = time.monotonic()
        while self.arriving and self.arriving[0].timeout <= now:
            self.drop(self.arriving[0], REQUEST_TIMEOUT)
