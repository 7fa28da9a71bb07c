"""exporter/server.py: `respond`, the HTTP of every exporter, on raw bytes without a socket; and
the serving loop on real sockets, which slow, silent or non-reading clients must not stall."""

from __future__ import annotations

import contextlib
import gzip
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)

from membench.exporter import server
from membench.exporter.server import SCRAPES_HEADER, Exporter, respond, start_exporter
from membench.processes import wait_for

GET_METRICS = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
# What Prometheus sends (header names are case-insensitive; Prometheus capitalises them).
PROMETHEUS_SCRAPE = (
    b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Prometheus-Scrape-Timeout-Seconds: 4\r\n\r\n"
)


def parse(reply: bytes) -> tuple[str, dict[str, str], bytes]:
    """(status line, headers by lower-case name, body) of a raw reply."""
    head, sep, body = reply.partition(b"\r\n\r\n")
    assert sep, reply
    status, *lines = head.decode("ascii").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(": ")
        headers[name.lower()] = value
    return status, headers, body


def scrapes(reply: bytes) -> int:
    return int(parse(reply)[1][SCRAPES_HEADER.lower()])


def counted(registry: CollectorRegistry) -> int:
    """The Prometheus scrapes counted so far, as any reply reports them."""
    return scrapes(respond(b"GET / HTTP/1.1\r\n\r\n", registry)[0])


@pytest.fixture
def registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("membench_test_events", "Events seen by the test.", registry=registry).inc(3)
    return registry


class BrokenCollector:
    def collect(self) -> Iterator[Metric]:
        raise RuntimeError("collector is broken")


def test_metrics_is_the_exposition_with_its_content_type(registry: CollectorRegistry) -> None:
    reply, too_large = respond(GET_METRICS, registry)
    status, headers, body = parse(reply)
    assert status == "HTTP/1.1 200 OK"
    assert not too_large
    assert (
        headers["content-type"] == CONTENT_TYPE_PLAIN_0_0_4
    )  # what Prometheus's text parser reads
    assert headers["content-length"] == str(len(body))
    assert headers["connection"] == "close"
    assert b"membench_test_events_total 3.0\n" in body


def test_headers_come_in_a_fixed_order(registry: CollectorRegistry) -> None:
    reply, _ = respond(b"GET / HTTP/1.1\r\n\r\n", registry)
    head = reply.partition(b"\r\n\r\n")[0].split(b"\r\n")
    names = [line.partition(b":")[0] for line in head[1:]]
    assert names == [b"Content-Type", b"Content-Length", SCRAPES_HEADER.encode(), b"Connection"]


def test_name_parameters_select_families(registry: CollectorRegistry) -> None:
    Gauge("membench_test_bytes", "Bytes.", registry=registry).set(7)
    status, _, body = parse(
        respond(b"GET /metrics?name[]=membench_test_bytes HTTP/1.1\r\n\r\n", registry)[0]
    )
    assert status == "HTTP/1.1 200 OK"
    assert b"membench_test_bytes 7.0\n" in body and b"membench_test_events" not in body
    status, _, body = parse(respond(b"GET /metrics?name[]=nothing HTTP/1.1\r\n\r\n", registry)[0])
    assert status == "HTTP/1.1 200 OK" and body == b""


def test_openmetrics_when_accepted_as_prometheus_asks(registry: CollectorRegistry) -> None:
    accept = (
        b"Accept: application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
        b"version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\n"
    )
    reply, _ = respond(GET_METRICS.replace(b"Host: x\r\n", accept), registry)
    _, headers, body = parse(reply)
    assert headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    families = {f.name: f for f in openmetrics_families(body.decode())}
    assert families["membench_test_events"].samples[0].value == 3.0
    assert body.endswith(b"# EOF\n")


def test_gzip_when_accepted(registry: CollectorRegistry) -> None:
    reply, _ = respond(GET_METRICS.replace(b"Host: x\r\n", b"Accept-Encoding: gzip\r\n"), registry)
    _, headers, body = parse(reply)
    assert headers["content-encoding"] == "gzip"
    assert headers["content-length"] == str(len(body))
    assert b"membench_test_events_total 3.0\n" in gzip.decompress(body)
    _, headers, _ = parse(respond(GET_METRICS, registry)[0])
    assert "content-encoding" not in headers


def test_root_points_to_metrics(registry: CollectorRegistry) -> None:
    status, headers, body = parse(respond(b"GET / HTTP/1.1\r\n\r\n", registry)[0])
    assert status == "HTTP/1.1 200 OK"
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert body == b"celery-membench exporter: see /metrics\n"


@pytest.mark.parametrize(
    ("request_line", "status", "body"),
    [
        (b"GET /nope HTTP/1.1", "HTTP/1.1 404 Not Found", b"not found\n"),
        (b"GET /metrics/ HTTP/1.1", "HTTP/1.1 404 Not Found", b"not found\n"),
        (b"POST /metrics HTTP/1.1", "HTTP/1.1 405 Method Not Allowed", b"method not allowed\n"),
        (b"get /metrics HTTP/1.1", "HTTP/1.1 405 Method Not Allowed", b"method not allowed\n"),
        (b"garbage", "HTTP/1.1 405 Method Not Allowed", b"method not allowed\n"),
    ],
)
def test_other_requests_are_refused(
    registry: CollectorRegistry, request_line: bytes, status: str, body: bytes
) -> None:
    reply, too_large = respond(request_line + b"\r\n\r\n", registry)
    assert parse(reply)[0] == status
    assert parse(reply)[2] == body
    assert parse(reply)[1]["content-length"] == str(len(body))
    assert not too_large


def test_empty_request_is_refused(registry: CollectorRegistry) -> None:
    # A client that connects and closes without a byte: still one well-formed answer.
    reply, too_large = respond(b"", registry)
    assert parse(reply)[0] == "HTTP/1.1 405 Method Not Allowed"
    assert not too_large


def test_headers_without_an_end_past_the_limit_are_431(registry: CollectorRegistry) -> None:
    request = b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * server.MAX_REQUEST_BYTES
    reply, too_large = respond(request, registry)
    status, _, body = parse(reply)
    assert status == "HTTP/1.1 431 Request Header Fields Too Large"
    assert body == b"request too large\n"
    assert too_large


def test_a_short_request_without_an_end_is_not_too_large(registry: CollectorRegistry) -> None:
    # The client closed early: answered as far as it can be parsed, nothing left to drain.
    reply, too_large = respond(b"GET /metrics HTTP/1.1\r\nHost: x", registry)
    assert parse(reply)[0] == "HTTP/1.1 200 OK"
    assert not too_large


def test_a_long_body_after_complete_headers_is_not_too_large(registry: CollectorRegistry) -> None:
    request = b"GET / HTTP/1.1\r\n\r\n" + b"a" * (2 * server.MAX_REQUEST_BYTES)
    reply, too_large = respond(request, registry)
    assert parse(reply)[0] == "HTTP/1.1 200 OK"
    assert not too_large


@pytest.mark.parametrize("path", [b"/", b"/metrics", b"/nope"])
def test_head_is_the_get_reply_without_its_body(registry: CollectorRegistry, path: bytes) -> None:
    get, _ = respond(b"GET " + path + b" HTTP/1.1\r\n\r\n", registry)
    head, too_large = respond(b"HEAD " + path + b" HTTP/1.1\r\n\r\n", registry)
    assert head.endswith(b"\r\n\r\n")
    assert parse(head)[2] == b""
    assert not too_large
    get_status, get_headers, get_body = parse(get)
    head_status, head_headers, _ = parse(head)
    assert head_status == get_status
    # Content-Length still announces the body a GET would get.
    assert head_headers["content-length"] == str(len(get_body)) != "0"
    assert head_headers["content-type"] == get_headers["content-type"]


def test_head_of_an_oversized_request_has_no_body_either(registry: CollectorRegistry) -> None:
    reply, too_large = respond(b"HEAD / HTTP/1.1\r\nX: " + b"a" * 9000, registry)
    assert reply.startswith(b"HTTP/1.1 431 ")
    assert reply.endswith(b"\r\n\r\n") and parse(reply)[2] == b""
    assert too_large


def test_only_prometheus_scrapes_of_metrics_are_counted(registry: CollectorRegistry) -> None:
    before = scrapes(respond(b"GET / HTTP/1.1\r\n\r\n", registry)[0])
    assert scrapes(respond(GET_METRICS, registry)[0]) == before  # curl, the runner: not counted
    assert scrapes(respond(b"HEAD /metrics HTTP/1.1\r\n\r\n", registry)[0]) == before
    # The header on another path or method does not count either.
    header = b"\r\nX-Prometheus-Scrape-Timeout-Seconds: 4\r\n\r\n"
    assert scrapes(respond(b"GET / HTTP/1.1" + header, registry)[0]) == before
    assert scrapes(respond(b"POST /metrics HTTP/1.1" + header, registry)[0]) == before
    assert scrapes(respond(PROMETHEUS_SCRAPE, registry)[0]) == before + 1
    lower = PROMETHEUS_SCRAPE.replace(b"X-Prometheus-Scrape", b"x-prometheus-scrape")
    assert scrapes(respond(lower, registry)[0]) == before + 2
    assert counted(registry) == before + 2


def test_a_scrape_header_in_the_body_is_not_counted(registry: CollectorRegistry) -> None:
    before = counted(registry)
    request = GET_METRICS + b"\r\nx-prometheus-scrape-timeout-seconds: 4\r\n\r\n"
    respond(request, registry)
    assert counted(registry) == before


def test_a_scrape_reports_the_count_including_itself(registry: CollectorRegistry) -> None:
    # Counted before collecting: the reply that carries count N already includes that scrape.
    first = scrapes(respond(PROMETHEUS_SCRAPE, registry)[0])
    second = scrapes(respond(PROMETHEUS_SCRAPE, registry)[0])
    assert second == first + 1
    assert scrapes(respond(GET_METRICS, registry)[0]) == second


def test_a_broken_collector_is_a_500_and_still_counted(
    registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    registry.register(BrokenCollector())  # type: ignore[arg-type]
    before = counted(registry)
    reply, too_large = respond(PROMETHEUS_SCRAPE, registry)
    status, headers, body = parse(reply)
    assert status == "HTTP/1.1 500 Internal Server Error"
    assert body == b"collection failed\n"
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert int(headers[SCRAPES_HEADER.lower()]) == before + 1
    assert not too_large
    assert "collecting metrics failed" in caplog.text
    assert "collector is broken" in caplog.text
    # The next request is served normally: nothing was left half-done.
    assert parse(respond(b"GET / HTTP/1.1\r\n\r\n", registry)[0])[0] == "HTTP/1.1 200 OK"


SLOW_CLIENTS = 300  # each test of the serving loop below runs on real sockets on 127.0.0.1


@pytest.fixture
def exporter(registry: CollectorRegistry) -> Iterator[Exporter]:
    """A running exporter; at the end, closed, and its thread gone within 1 s."""
    before = server_threads()
    exporter = start_exporter(registry)
    (thread,) = server_threads() - before
    yield exporter
    exporter.close()
    wait_until(lambda: thread not in server_threads(), 1, "the serving thread to end")


@pytest.fixture
def clients() -> Iterator[list[socket.socket]]:
    """Sockets a test opens; all closed at its end, whatever happens."""
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    wait_for(condition, timeout, interval=0.005, what=what)


def server_threads() -> set[str]:
    """Ids of this process's OS threads (the server's is a bare _thread: not in threading)."""
    return set(os.listdir("/proc/self/task"))


def open_sockets() -> int:
    """Sockets this process holds: the test's clients plus the server's listener and clients."""
    links = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            links.append(os.readlink(f"/proc/self/fd/{fd}"))
    return sum(link.startswith("socket:") for link in links)


def connect(port: int, clients: list[socket.socket], n: int, rcvbuf: int = 0) -> None:
    """Open `n` more connections that send nothing; wait until the server has accepted them."""
    before = open_sockets()
    for _ in range(n):
        clients.append(sock := socket.socket())
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(5)
        sock.connect(("127.0.0.1", port))
    wait_until(lambda: open_sockets() >= before + 2 * n, 5, f"the server accepting {n} clients")


def read_to_end(sock: socket.socket) -> bytes:
    return b"".join(iter(lambda: sock.recv(1 << 20), b""))


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closed `sock` (without waiting for it)."""
    try:
        return bool(select.select([sock], [], [], 0)[0]) and not sock.recv(1, socket.MSG_PEEK)
    except ConnectionResetError:
        return True


# These assert the server answers (or closes a client) within a second: on a busy machine its
# thread waits for a core, which is not what they test.
ANSWERED_IN_TIME = pytest.mark.serial(reason="asserts an answer or a close within a deadline")


def assert_scrape_answered_within_1s(port: int) -> None:
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(GET_METRICS)
        reply = read_to_end(sock)
    assert time.monotonic() - t0 < 1.0
    assert parse(reply)[0] == "HTTP/1.1 200 OK"
    assert b"membench_test_events_total 3.0\n" in reply


@ANSWERED_IN_TIME
def test_a_scrape_is_answered_while_300_clients_send_nothing(
    exporter: Exporter, clients: list[socket.socket]
) -> None:
    connect(exporter.port, clients, SLOW_CLIENTS)
    assert_scrape_answered_within_1s(exporter.port)
    assert not any(closed_by_server(sock) for sock in clients)  # they were all still waiting
    exporter.close()  # ends the thread (the fixture checks) and closes every client
    wait_until(lambda: all(closed_by_server(s) for s in clients), 1, "the clients closed")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", exporter.port), timeout=5).close()


@ANSWERED_IN_TIME
def test_a_scrape_is_answered_while_300_clients_trickle_their_request(
    exporter: Exporter, clients: list[socket.socket]
) -> None:
    connect(exporter.port, clients, SLOW_CLIENTS)
    stop = threading.Event()
    rounds = [0]

    def trickle() -> None:
        # A byte to every client in turn, never the end of the headers, until the test is done.
        for byte in b"GET /metrics HTTP/1.1\r\nX-Slow: " + b"a" * 1000:
            for sock in clients:
                sock.send(bytes([byte]))
            rounds[0] += 1
            if stop.wait(0.02):
                return

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        wait_until(lambda: rounds[0] >= 3, 5, "three bytes sent by every client")
        assert_scrape_answered_within_1s(exporter.port)
        assert thread.is_alive()  # no client was refused a byte: they all still trickle
    finally:
        stop.set()
        thread.join(5)


class HugeCollector:
    """One series with a label too long for the socket buffers of a client that does not read."""

    label_bytes = 6 << 20  # the loopback buffers of a client that reads nothing hold ~3 MB

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("membench_test_huge", "A huge series.", labels=["blob"])
        family.add_metric(["x" * self.label_bytes], 1.0)
        yield family


@ANSWERED_IN_TIME
def test_a_scrape_is_answered_while_clients_do_not_read_their_replies(
    exporter: Exporter,
    registry: CollectorRegistry,
    clients: list[socket.socket],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(server, "CLIENT_TIMEOUT_S", 30.0)  # the readers below finish late
    registry.register(HugeCollector())  # type: ignore[arg-type]
    connect(exporter.port, clients, 8, rcvbuf=4096)
    for sock in clients:
        sock.sendall(GET_METRICS)
    # The replies are sent (not all of them taken) once each client's socket has data to read.
    wait_until(lambda: all(select.select([s], [], [], 0)[0] for s in clients), 10, "8 replies")
    assert_scrape_answered_within_1s(exporter.port)
    for sock in clients:  # and each stalled reply was kept whole: the server finishes it now
        _, headers, body = parse(read_to_end(sock))
        assert len(body) == int(headers["content-length"]) > HugeCollector.label_bytes


@ANSWERED_IN_TIME
def test_open_clients_are_capped_and_the_oldest_give_way(
    registry: CollectorRegistry, clients: list[socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server, "_MAX_CONNECTIONS", 16)
    with contextlib.closing(start_exporter(registry)) as exporter:
        listening = open_sockets()
        clients += [socket.create_connection(("127.0.0.1", exporter.port), 5) for _ in range(48)]
        wait_until(lambda: sum(closed_by_server(s) for s in clients) == 32, 5, "32 clients closed")
        assert all(closed_by_server(s) for s in clients[:32])  # the oldest
        assert not any(closed_by_server(s) for s in clients[32:])
        assert open_sockets() - listening - len(clients) == 16
        assert_scrape_answered_within_1s(exporter.port)  # it pushed out one more old client
        assert open_sockets() - listening - len(clients) <= 16


@ANSWERED_IN_TIME
def test_a_client_is_closed_at_its_deadline_however_it_trickles(
    exporter: Exporter, clients: list[socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server, "CLIENT_TIMEOUT_S", 0.3)
    t0 = time.monotonic()
    clients.append(sock := socket.create_connection(("127.0.0.1", exporter.port), timeout=5))

    def still_open() -> bool:
        with contextlib.suppress(OSError):
            sock.send(b"a")
            return not closed_by_server(sock)
        return False

    wait_until(lambda: not still_open(), 5, "the server closing a trickling client")
    assert 0.3 <= time.monotonic() - t0 < 1.5


def test_a_forked_child_does_not_hold_the_clients_open(
    exporter: Exporter, clients: list[socket.socket]
) -> None:
    connect(exporter.port, clients, 1)
    release_r, release_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child holds what it inherited until the parent is done
        os.read(release_r, 1)
        os._exit(0)
    try:
        clients[0].sendall(GET_METRICS)
        # End of reply: the parent's close is the last one, the child has none left to hold.
        assert parse(read_to_end(clients[0]))[0] == "HTTP/1.1 200 OK"
    finally:
        os.write(release_w, b"x")
        os.waitpid(pid, 0)
        for fd in (release_r, release_w):
            os.close(fd)


def test_a_socket_closed_before_its_thread_runs_ends_the_thread_quietly() -> None:
    # Exporter.close() can run before the serving thread is first scheduled.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.close()
    server.serve_forever(sock, CollectorRegistry())  # returns; no ValueError from poll
