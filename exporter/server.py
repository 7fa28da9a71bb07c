"""Serve /metrics from a real OS thread, and register the endpoint as a Prometheus file_sd target.

Under gevent, `threading` is monkey-patched: a "thread" is a greenlet that stalls while a subtask
holds the CPU. The server therefore uses the original `_thread` and `socket`, answering one
request at a time; scrapes are rare and short, and this keeps the exporter's footprint tiny.

`respond` is the whole of the HTTP: raw request bytes in, response bytes out, no socket, so that it
is tested without a server. `_handle` only reads the request within its deadline and sends.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import logging
import os
import socket as _socket_module
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from membench.targets import write_target

log = logging.getLogger("membench.exporter")

_MAX_REQUEST_BYTES = 8192
_CLIENT_TIMEOUT_S = 2.0
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


def _response(status: str, body: bytes, content_type: str = "text/plain; charset=utf-8") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n{SCRAPES_HEADER}: {_prometheus_scrapes}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def _remaining(deadline: float) -> float:
    """Seconds left before `deadline`; TimeoutError (an OSError) once it has passed."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("client too slow")
    return left


def respond(request: bytes, registry: CollectorRegistry) -> tuple[bytes, bool]:
    """The full response to `request` (the raw bytes read), and whether the request was too large.

    Too large: no end of headers within _MAX_REQUEST_BYTES. The caller must then read the rest of
    the input before closing, or the client may never see the 431.
    """
    global _prometheus_scrapes
    too_large = b"\r\n\r\n" not in request and len(request) >= _MAX_REQUEST_BYTES
    method, _, rest = request.partition(b"\r\n")[0].partition(b" ")
    path = rest.partition(b" ")[0].partition(b"?")[0]
    if too_large:
        reply = _response("431 Request Header Fields Too Large", b"request too large\n")
    elif method not in (b"GET", b"HEAD"):
        reply = _response("405 Method Not Allowed", b"method not allowed\n")
    elif path == b"/metrics":
        # Counted before collecting: a scrape counted after a reader saw the count collects
        # values set before that reading.
        if _PROMETHEUS_HEADER in request.partition(b"\r\n\r\n")[0].lower():
            _prometheus_scrapes += 1
        try:
            reply = _response("200 OK", generate_latest(registry), CONTENT_TYPE_LATEST)
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


def _handle(conn: Any, registry: CollectorRegistry) -> None:
    # One deadline for the whole request, not per recv(): a client trickling a byte at a time
    # would otherwise hold this one-at-a-time server (and every scrape behind it) indefinitely.
    deadline = time.monotonic() + _CLIENT_TIMEOUT_S
    request = b""
    while b"\r\n\r\n" not in request and len(request) < _MAX_REQUEST_BYTES:
        conn.settimeout(_remaining(deadline))
        chunk = conn.recv(4096)
        if not chunk:
            break
        request += chunk
    reply, too_large = respond(request, registry)
    conn.sendall(reply)
    if too_large:
        # Closing with unread input resets the connection and the client loses the 431: read the
        # rest first, within the same deadline.
        conn.shutdown(_socket_module.SHUT_WR)
        while True:
            conn.settimeout(_remaining(deadline))
            if not conn.recv(65536):
                break


def _serve_forever(sock: Any, registry: CollectorRegistry) -> None:
    while True:
        try:
            conn, _ = sock.accept()
        except OSError:
            return  # socket closed: the exporter is stopping
        try:
            _handle(conn, registry)
        except OSError:
            pass  # client went away or sent garbage slowly; serve the next one
        finally:
            conn.close()


def _bind(host: str, port: int) -> Any:
    socket_cls = _original("socket", "socket")
    family = _socket_module.AF_INET6 if ":" in host else _socket_module.AF_INET
    sock = socket_cls(family, _socket_module.SOCK_STREAM)
    sock.setsockopt(_socket_module.SOL_SOCKET, _socket_module.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(64)
    return sock


@dataclass
class Exporter:
    """A running metrics endpoint and the file_sd target that announces it."""

    host: str
    port: int
    target_path: Path | None
    _sock: Any = field(repr=False)
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
    _original("_thread", "start_new_thread")(_serve_forever, (sock, registry))
    target_path = None
    if targets_dir is not None:
        address = f"{advertise_host or _advertised_host(host)}:{bound_port}"
        target_path = write_target(targets_dir / job, address, target_labels or {})
    return Exporter(host=host, port=bound_port, target_path=target_path, _sock=sock)


def _advertised_host(bind_host: str) -> str:
    if bind_host in ("0.0.0.0", "::", ""):
        return _socket_module.gethostname()
    return bind_host if ":" not in bind_host else f"[{bind_host}]"
