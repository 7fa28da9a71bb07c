"""exporter/server.py's `respond`: the HTTP of every exporter, on raw bytes, without a socket."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter
from prometheus_client.core import Metric

from membench.exporter import server
from membench.exporter.server import SCRAPES_HEADER, respond

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
    assert headers["content-type"] == CONTENT_TYPE_LATEST
    assert headers["content-length"] == str(len(body))
    assert headers["connection"] == "close"
    assert b"membench_test_events_total 3.0\n" in body


def test_headers_come_in_a_fixed_order(registry: CollectorRegistry) -> None:
    reply, _ = respond(b"GET / HTTP/1.1\r\n\r\n", registry)
    head = reply.partition(b"\r\n\r\n")[0].split(b"\r\n")
    names = [line.partition(b":")[0] for line in head[1:]]
    assert names == [b"Content-Type", b"Content-Length", SCRAPES_HEADER.encode(), b"Connection"]


def test_query_string_is_ignored(registry: CollectorRegistry) -> None:
    reply, _ = respond(b"GET /metrics?name[]=x HTTP/1.1\r\n\r\n", registry)
    assert parse(reply)[0] == "HTTP/1.1 200 OK"
    assert b"membench_test_events_total" in parse(reply)[2]


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
    request = b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * server._MAX_REQUEST_BYTES
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
    request = b"GET / HTTP/1.1\r\n\r\n" + b"a" * (2 * server._MAX_REQUEST_BYTES)
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
    assert server._prometheus_scrapes == before + 2


def test_a_scrape_header_in_the_body_is_not_counted(registry: CollectorRegistry) -> None:
    before = server._prometheus_scrapes
    request = GET_METRICS + b"\r\nx-prometheus-scrape-timeout-seconds: 4\r\n\r\n"
    respond(request, registry)
    assert server._prometheus_scrapes == before


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
    before = server._prometheus_scrapes
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
