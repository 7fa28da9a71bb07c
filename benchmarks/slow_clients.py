"""/metrics latency while slow clients hold connections to the exporter.

Usage::

    python benchmarks/slow_clients.py

One fresh gevent_greenlets worker; its main exporter. For each kind of slow client (`idle`:
connects and sends nothing; `trickle`: sends a request one byte every `--trickle-interval` s and
never ends its headers) and each count in `--clients`, this process holds that many connections
open (one the exporter closes is reopened at once), then times `--scrapes` scrapes of /metrics,
each on a fresh connection, `--pause` s apart: 50 scrapes span more than the exporter's 2 s
client deadline, so it closes the slow clients, and they come back, while scrapes go on. A scrape
not answered within `--timeout` s counts as a timeout. Reports median, p99 and max latency, the
timeouts, and the worker's open descriptors and threads while the clients were held. Target:
every scrape answered within 1 s under 300 slow clients.
"""

from __future__ import annotations

import errno
import os
import selectors
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import _bench

from membench.stats import percentile

KINDS = ("idle", "trickle")
REQUEST = b"GET /metrics HTTP/1.1\r\nHost: slow\r\nX-Slow: " + b"a" * 4000


class SlowClients(threading.Thread):
    """Holds `count` connections to `address` open, reopening any the server closes."""

    def __init__(self, address: str, count: int, trickle_s: float | None) -> None:
        super().__init__(daemon=True)
        host, port = address.rsplit(":", 1)
        self.target = (host, int(port))
        self.count = count
        self.trickle_s = trickle_s
        self.selector = selectors.DefaultSelector()
        self.sent: dict[socket.socket, int] = {}
        self.reopened = 0
        self.stopping = threading.Event()

    def open(self) -> None:
        sock = socket.socket()
        sock.setblocking(False)
        # Non-blocking: past the server's backlog a connect waits for the kernel to retry its SYN.
        sock.connect_ex(self.target)
        self.selector.register(sock, selectors.EVENT_READ)
        self.sent[sock] = 0

    def reopen(self, sock: socket.socket) -> None:
        self.selector.unregister(sock)
        del self.sent[sock]
        sock.close()
        self.reopened += 1
        self.open()

    def connected(self) -> int:
        """How many of the connections the kernel has completed."""
        done = 0
        for sock in list(self.sent):
            try:
                sock.getpeername()
                done += 1
            except OSError:
                pass
        return done

    def run(self) -> None:
        for _ in range(self.count):
            self.open()
        next_byte = time.monotonic()
        while not self.stopping.is_set():
            wait = max(0.0, next_byte - time.monotonic()) if self.trickle_s else 0.1
            for key, _ in self.selector.select(wait):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    if sock.recv(65536):
                        continue  # an answer (a 431 or a reply): the close follows
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    pass
                self.reopen(sock)
            if self.trickle_s and time.monotonic() >= next_byte:
                next_byte += self.trickle_s
                self.trickle()
        for sock in list(self.sent):
            sock.close()
        self.selector.close()

    def trickle(self) -> None:
        for sock, n in list(self.sent.items()):
            try:
                self.sent[sock] += sock.send(REQUEST[n % len(REQUEST) : n % len(REQUEST) + 1])
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.ENOTCONN):
                    self.reopen(sock)

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)


def timed_scrapes(address: str, n: int, pause: float, timeout: float) -> tuple[list[float], int]:
    """Latencies (s) of the answered scrapes, and how many went unanswered within `timeout`."""
    latencies, timeouts = [], 0
    for _ in range(n):
        t0 = time.perf_counter()
        try:
            _bench.scrape(address, timeout=timeout)
        except OSError:  # URLError and socket timeouts both are
            timeouts += 1
        else:
            latencies.append(time.perf_counter() - t0)
        time.sleep(pause)
    return latencies, timeouts


def worker_resources(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    threads = next(int(line.split()[1]) for line in status.splitlines() if line[:8] == "Threads:")
    return {"fds": len(os.listdir(f"/proc/{pid}/fd")), "threads": threads}


def one_level(
    address: str, pid: int, kind: str, count: int, args: Any
) -> tuple[dict[str, Any], list[Any]]:
    clients = SlowClients(address, count, args.trickle_interval if kind == "trickle" else None)
    clients.start()
    try:
        deadline = time.monotonic() + 5
        while clients.connected() < count and time.monotonic() < deadline:
            time.sleep(0.05)
        connected = clients.connected()
        latencies, timeouts = timed_scrapes(address, args.scrapes, args.pause, args.timeout)
        held = worker_resources(pid)
    finally:
        clients.stop()
    ms = [x * 1000 for x in latencies]
    result = {
        "clients": count,
        "connected_at_start": connected,
        "reopened": clients.reopened,
        "scrapes": args.scrapes,
        "answered": len(ms),
        "timeouts": timeouts,
        "median_ms": percentile(ms, 50) if ms else None,
        "p99_ms": percentile(ms, 99) if ms else None,
        "max_ms": max(ms) if ms else None,
        "worker_fds": held["fds"],
        "worker_threads": held["threads"],
        "met": timeouts == 0 and bool(ms) and max(ms) < 1000.0,
        "latencies_ms": [round(x, 3) for x in ms],
    }
    row = [
        f"{kind} x {count}",
        connected,
        f"{len(ms)}/{args.scrapes}",
        result["median_ms"] if ms else "-",
        result["p99_ms"] if ms else "-",
        result["max_ms"] if ms else "-",
        held["fds"],
        held["threads"],
    ]
    return result, row


def main(argv: list[str]) -> int:
    script = _bench.Script("slow_clients", __doc__)
    script.add_argument("--clients", default="0,100,300")
    script.add_argument("--kinds", default=",".join(KINDS))
    script.add_argument("--scrapes", type=int, default=50)
    script.add_argument("--pause", type=float, default=0.06)
    script.add_argument("--timeout", type=float, default=5.0)
    script.add_argument("--trickle-interval", type=float, default=0.1)
    args = script.parse(argv)

    results: dict[str, list[dict[str, Any]]] = {}
    rows = []
    with _bench.broker() as (url, app), _bench.workdir() as wd, _bench.Workers(url, app, wd) as ws:
        worker = ws.start("gevent_greenlets")
        ((pid, (_, address)),) = [
            (p, a) for p, a in _bench.exporter_addresses(worker).items() if a[0] == "main"
        ]
        idle = worker_resources(pid)
        for kind in args.kinds.split(","):
            for count in (int(c) for c in args.clients.split(",")):
                result, row = one_level(address, pid, kind, count, args)
                results.setdefault(kind, []).append(result)
                rows.append(row)
                print(f"{kind} x {count}: done", flush=True)
    print("\n/metrics latency (ms) of a gevent worker's exporter while slow clients hold it")
    _bench.print_table(
        ["slow clients", "connected", "answered", "median", "p99", "max", "fds", "threads"], rows
    )
    return script.save(
        scrapes=args.scrapes,
        pause_s=args.pause,
        timeout_s=args.timeout,
        trickle_interval_s=args.trickle_interval,
        worker_idle=idle,
        results=results,
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
