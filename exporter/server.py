"""Serve /metrics from a real OS thread, and register the endpoint as a Prometheus file_sd target.

Under gevent, `threading` is monkey-patched: a "thread" is a greenlet that stalls while a subtask
holds the CPU. The server therefore runs on the original `_thread`, `socket` and `select.poll`:
one thread that multiplexes non-blocking sockets and holds the GIL only to handle what poll()
reports. A client that connects and sends nothing, trickles its request or never reads its reply
costs one descriptor until its own deadline and delays no one else; open clients are capped and
the oldest gives way to the newest, so a scrape is answered while hundreds of such clients wait.

`respond` is the whole of the HTTP: raw request bytes in, response bytes out, no socket, so that it
is tested without a server; the exposition itself (format negotiation, `name[]`, gzip) is
prometheus_client's. `_Server` only moves bytes between sockets and `respond`, within each
client's deadline. prometheus_client's own server is not used: it serves from `threading` and
`socketserver`, which gevent patches into greenlets that a CPU-bound subtask stalls.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import importlib
import logging
import math
import os
import resource
import select as _select_module
import socket as _socket_module
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted

from membench import settings
from membench.targets import write_target

log = logging.getLogger("membench.exporter")

MAX_REQUEST_BYTES = 8192
# Each client's whole exchange (request, reply, draining) must end within this of its connect.
CLIENT_TIMEOUT_S = 2.0
# Open clients at most: past it, the oldest is closed to make room for the newest.
_MAX_CONNECTIONS = 512
# Connections the kernel completes and queues before the thread accepts them.
_BACKLOG = 1024
# With no client, the thread still wakes this often to see whether close() closed the socket: a
# closed descriptor's number can be reused before poll() looks at it, and never wake poll.
_IDLE_WAKE_S = 1.0
# How long to stop accepting when the process is out of descriptors and no client can be closed.
_ACCEPT_PAUSE_S = 0.1
_READ, _WRITE, _DRAIN = range(3)
_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_POLLIN, _POLLOUT = _select_module.POLLIN, _select_module.POLLOUT
# Prometheus sends this header with every scrape; nobody else (curl, the runner) does.
_PROMETHEUS_HEADER = b"\r\nx-prometheus-scrape-timeout-seconds:"
# Every response carries how many Prometheus scrapes this process has begun to answer, so that
# `membench run --targets-dir` can keep a worker until Prometheus has seen its last task.
SCRAPES_HEADER = "X-Membench-Prometheus-Scrapes"
_prometheus_scrapes = 0


def _original(module: str, name: str) -> Any:
    """The unpatched attribute, whether or not gevent monkey-patched the module."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched(module):
        return monkey.get_original(module, name)
    return getattr(importlib.import_module(module), name)


def _response(
    status: str,
    body: bytes,
    content_type: str = "text/plain; charset=utf-8",
    encoding: str | None = None,
) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        + (f"Content-Encoding: {encoding}\r\n" if encoding else "")
        + f"Content-Length: {len(body)}\r\n{SCRAPES_HEADER}: {_prometheus_scrapes}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def _headers(head: bytes) -> dict[str, str]:
    """The request's headers by lower-case name (latin-1: a header is bytes, never an error)."""
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    return headers


def exposition(
    registry: CollectorRegistry, headers: dict[str, str], query: str
) -> tuple[bytes, str, str | None]:
    """(body, content type, content encoding) of /metrics, negotiated as prometheus_client's own
    server does: OpenMetrics or text by Accept, only the `name[]` families asked for, gzip by
    Accept-Encoding. The socket loop stays ours (module docstring); the exposition is theirs."""
    encoder, content_type = choose_encoder(headers.get("accept", ""))
    names = urllib.parse.parse_qs(query).get("name[]")
    body = encoder(registry.restricted_registry(names) if names else registry)
    if gzip_accepted(headers.get("accept-encoding", "")):
        # Level 1: a scrape is compressed in every worker process on each scrape, and for
        # exposition text level 1 already gives most of the ratio
        # (`benchmarks/exporter.py scrape-cost`).
        return gzip.compress(body, compresslevel=1), content_type, "gzip"
    return body, content_type, None


def respond(request: bytes, registry: CollectorRegistry) -> tuple[bytes, bool]:
    """The full response to `request` (the raw bytes read), and whether the request was too large.

    Too large: no end of headers within MAX_REQUEST_BYTES. The caller must then read the rest of
    the input before closing, or the client may never see the 431.
    """
    global _prometheus_scrapes
    head = request.partition(b"\r\n\r\n")[0]
    too_large = b"\r\n\r\n" not in request and len(request) >= MAX_REQUEST_BYTES
    method, _, rest = head.partition(b"\r\n")[0].partition(b" ")
    path, _, query = rest.partition(b" ")[0].partition(b"?")
    if too_large:
        reply = _response("431 Request Header Fields Too Large", b"request too large\n")
    elif method not in (b"GET", b"HEAD"):
        reply = _response("405 Method Not Allowed", b"method not allowed\n")
    elif path == b"/metrics":
        # Counted before collecting: a scrape counted after a reader saw the count collects
        # values set before that reading.
        if _PROMETHEUS_HEADER in head.lower():
            _prometheus_scrapes += 1
        try:
            body, content_type, encoding = exposition(
                registry, _headers(head), query.decode("latin-1")
            )
            reply = _response("200 OK", body, content_type, encoding)
        except Exception:  # a broken collector must not kill the server
            log.exception("collecting metrics failed")
            reply = _response("500 Internal Server Error", b"collection failed\n")
    elif path == b"/":
        reply = _response("200 OK", b"celery-membench exporter: see /metrics\n")
    else:
        reply = _response("404 Not Found", b"not found\n")
    if method == b"HEAD":
        reply = reply.partition(b"\r\n\r\n")[0] + b"\r\n\r\n"
    return reply, too_large


class _Conn:
    """One client: its socket, its deadline, and where it is in read, write, drain."""

    __slots__ = ("deadline", "drain", "out", "request", "sock", "state")

    def __init__(self, sock: _socket_module.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.state = _READ
        self.request = bytearray()
        self.out = memoryview(b"")
        self.drain = False


class _Server:
    """The serving thread's state: the listening socket, the open connections, the poll set."""

    def __init__(self, sock: _socket_module.socket, registry: CollectorRegistry) -> None:
        self.sock = sock
        self.registry = registry
        self.listener = sock.fileno()
        self.socket_cls: type[_socket_module.socket] = _original("socket", "socket")
        self.poller: _select_module.poll = _original("select", "poll")()
        self.poller.register(self.listener, _POLLIN)
        # By accept order, which is also deadline order: every client gets the same timeout.
        self.conns: dict[int, _Conn] = {}
        self.cap = _connection_cap()
        self.accept_paused_until = 0.0

    def run(self) -> None:
        while self.sock.fileno() >= 0:  # Exporter.close() closed it: stop
            now = time.monotonic()
            while self.conns:
                oldest = next(iter(self.conns.values()))
                if oldest.deadline > now:
                    break
                self.drop(oldest)  # too slow: no answer, as the deadline promised
            if self.accept_paused_until and now >= self.accept_paused_until:
                self.accept_paused_until = 0.0
                self.poller.modify(self.listener, _POLLIN)
            wake = [now + _IDLE_WAKE_S]
            if self.conns:
                wake.append(next(iter(self.conns.values())).deadline)
            if self.accept_paused_until:
                wake.append(self.accept_paused_until)
            for fd, _ in self.poller.poll(math.ceil((min(wake) - now) * 1000)):
                if fd == self.listener:
                    if not self.accept():
                        return
                elif (conn := self.conns.get(fd)) is not None:
                    self.step(conn)

    def accept(self) -> bool:
        """Take the waiting connections (a cap's worth at most); False once the socket is closed."""
        for _ in range(self.cap):
            try:
                # _accept, not accept: socket.accept wraps the new fd in the module's `socket`
                # class, which is gevent's once monkey-patched. typeshed leaves _accept out.
                fd, _ = self.sock._accept()  # type: ignore[attr-defined]
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return True
            except OSError as exc:
                if self.sock.fileno() < 0 or exc.errno in (errno.EBADF, errno.EINVAL):
                    return False
                if exc.errno not in _OUT_OF_RESOURCES:
                    continue  # that one connection failed (EPROTO, EPERM...): take the next
                if self.conns:  # out of descriptors or memory: give the oldest client's up
                    self.drop(next(iter(self.conns.values())))
                    continue
                # Nothing of ours to free: stop accepting for a moment rather than spin.
                self.accept_paused_until = time.monotonic() + _ACCEPT_PAUSE_S
                self.poller.modify(self.listener, 0)
                return True
            conn = _Conn(self.socket_cls(fileno=fd), time.monotonic() + CLIENT_TIMEOUT_S)
            conn.sock.setblocking(False)
            self.conns[fd] = conn
            self.poller.register(fd, _POLLIN)
            if len(self.conns) > self.cap:
                # The oldest is the slowest: a scrape is answered within milliseconds of arriving.
                self.drop(next(iter(self.conns.values())))
        return True

    def step(self, conn: _Conn) -> None:
        """Advance `conn` as far as its socket allows without blocking."""
        try:
            if conn.state == _READ:
                self.read(conn)
            elif conn.state == _WRITE:
                self.write(conn)
            elif not conn.sock.recv(65536):  # draining the rest of an oversized request
                self.drop(conn)
        except (BlockingIOError, InterruptedError):
            pass  # spurious readiness: poll again
        except OSError:
            self.drop(conn)  # reset, or gone: nobody is left to answer

    def read(self, conn: _Conn) -> None:
        seen = len(conn.request)
        chunk = conn.sock.recv(4096)
        conn.request += chunk
        # Search only the new bytes (and 3 before them): a client trickling a byte at a time must
        # not make each read scan the whole request.
        ended = conn.request.find(b"\r\n\r\n", max(0, seen - 3)) >= 0
        if chunk and not ended and len(conn.request) < MAX_REQUEST_BYTES:
            return
        reply, conn.drain = respond(bytes(conn.request), self.registry)
        conn.request = bytearray()
        conn.out = memoryview(reply)
        conn.state = _WRITE
        self.poller.modify(conn.sock.fileno(), _POLLOUT)
        self.write(conn)

    def write(self, conn: _Conn) -> None:
        # What the socket buffer does not take now waits here, and poll says when it can: a
        # client that does not read holds only its own reply, until its deadline.
        conn.out = conn.out[conn.sock.send(conn.out) :]
        if conn.out:
            return
        if not conn.drain:
            self.drop(conn)
            return
        # Closing with unread input resets the connection and the client loses the 431: read the
        # rest first, within the same deadline.
        conn.sock.shutdown(_socket_module.SHUT_WR)
        conn.state = _DRAIN
        self.poller.modify(conn.sock.fileno(), _POLLIN)

    def drop(self, conn: _Conn) -> None:
        fd = conn.sock.fileno()
        self.conns.pop(fd, None)
        with contextlib.suppress(KeyError, ValueError):
            self.poller.unregister(fd)
        conn.sock.close()

    def close_all(self) -> None:
        for conn in list(self.conns.values()):
            self.drop(conn)


def _connection_cap() -> int:
    """At most _MAX_CONNECTIONS open clients, and never more than half the descriptor limit."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return _MAX_CONNECTIONS
    return max(1, min(_MAX_CONNECTIONS, soft // 2))


# Servers running in this process; a forked child closes its copies of their clients' sockets.
_running: set[_Server] = set()


def _close_inherited_clients() -> None:
    # The serving thread does not exist in a forked child, so nothing there would ever close the
    # copies, and a client would wait for an end of reply the parent had already sent.
    for server in list(_running):
        for conn in server.conns.values():
            conn.sock.close()
        server.conns.clear()
    _running.clear()


os.register_at_fork(after_in_child=_close_inherited_clients)


def serve_forever(sock: _socket_module.socket, registry: CollectorRegistry) -> None:
    """Serve `sock` until it is closed; the body of an exporter's serving thread."""
    try:
        server = _Server(sock, registry)
    except ValueError:
        # Closed by Exporter.close() before this thread first ran: nothing to serve.
        if sock.fileno() < 0:
            return
        raise
    _running.add(server)
    try:
        server.run()
    finally:
        _running.discard(server)
        server.close_all()


def _bind(host: str, port: int) -> _socket_module.socket:
    socket_cls: type[_socket_module.socket] = _original("socket", "socket")
    family = _socket_module.AF_INET6 if ":" in host else _socket_module.AF_INET
    sock = socket_cls(family, _socket_module.SOCK_STREAM)
    sock.setsockopt(_socket_module.SOL_SOCKET, _socket_module.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(_BACKLOG)
    # Non-blocking: the serving thread accepts only what poll says is waiting.
    sock.setblocking(False)
    return sock


@dataclass
class Exporter:
    """A running metrics endpoint and the file_sd target that announces it."""

    host: str
    port: int
    target_path: Path | None
    _sock: _socket_module.socket = field(repr=False)
    owner_pid: int = field(default_factory=os.getpid)

    def close(self) -> None:
        if os.getpid() != self.owner_pid:
            # A forked child holds a copy of the parent's socket: closing the copy is all it may do;
            # shutdown() would stop the parent's server too.
            self._sock.close()
            return
        if self.target_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.target_path.unlink()
            self.target_path = None
        # shutdown() wakes the blocked accept() in the server thread.
        with contextlib.suppress(OSError):
            self._sock.shutdown(_socket_module.SHUT_RDWR)
        self._sock.close()


def start_exporter(
    registry: CollectorRegistry,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    targets_dir: Path | None = None,
    job: str = "workers",
    target_labels: dict[str, str] | None = None,
    advertise_host: str | None = None,
) -> Exporter:
    """Serve `registry` on host:port from an OS thread; register a file_sd target if asked.

    The target's host is `advertise_host`, else $MEMBENCH_ADVERTISE_HOST (for every exporter:
    workers and loadgen alike), else the bind address (the hostname for a wildcard bind).
    A port in use is logged as an error and the exporter moves to a free port, which the file_sd
    target announces: a worker never runs silently without metrics.
    """
    try:
        sock = _bind(host, port)
    except OSError as exc:
        if port == 0 or exc.errno != errno.EADDRINUSE:
            raise
        sock = _bind(host, 0)
        log.error(
            "metrics port %s:%d is in use; this process (pid %d) exports on port %d instead",
            host,
            port,
            os.getpid(),
            sock.getsockname()[1],
        )
    bound_port = sock.getsockname()[1]
    _original("_thread", "start_new_thread")(serve_forever, (sock, registry))
    target_path = None
    if targets_dir is not None:
        advertised = advertise_host or settings.advertise_host() or _advertised_host(host)
        address = f"{advertised}:{bound_port}"
        target_path = write_target(targets_dir / job, address, target_labels or {})
    return Exporter(host=host, port=bound_port, target_path=target_path, _sock=sock)


def _advertised_host(bind_host: str) -> str:
    if bind_host in ("0.0.0.0", "::", ""):
        return _socket_module.gethostname()
    return bind_host if ":" not in bind_host else f"[{bind_host}]"
