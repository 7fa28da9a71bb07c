"""A small client of Prometheus's HTTP API on urllib: instant and range queries, read-only.

Only /api/v1/query and /api/v1/query_range are used, so the same URL works for the local stack,
compose, a port-forwarded Kubernetes Prometheus or one behind a path prefix.
"""

from __future__ import annotations

import base64
import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any, Required, TypedDict

from membench.files import UnreadableFile, read_bounded
from membench.units import MIB
from membench.urls import UrlError, parse_url, redact

QUERY_TIMEOUT_S = 30.0
CHECK_TIMEOUT_S = 5.0
# The most of one answer read: a range query over days of many series is tens of MiB.
BODY_LIMIT = 256 * MIB


class PrometheusError(Exception):
    """Prometheus could not be reached or refused a query; the message is one line."""


# One query as it was sent: "api" (query or query_range) and its parameters, for --show-queries
# and the report's record of what it asked.
Query = dict[str, str]


class Series(TypedDict, total=False):
    """One element of a query's result as the HTTP API writes it: the series' labels and its
    [unix time, "value"] sample (a vector) or samples (a matrix: range queries, and instant
    queries of a range selector). Trusted as decoded: only Prometheus answers here."""

    metric: Required[dict[str, str]]
    value: tuple[float, str]
    values: list[tuple[float, str]]


PROMETHEUS_FORM = "http://[USER:PASSWORD@]HOST[:PORT][/PREFIX], e.g. http://127.0.0.1:9090"


def check_url(url: str) -> str:
    """The base URL of a Prometheus (http or https, a host, no query); ValueError otherwise, with
    a message that repeats no text of the URL (its userinfo may hold basic-auth credentials)."""
    parts = parse_url(url.strip(), ("http", "https"), PROMETHEUS_FORM)
    if parts.query or parts.fragment:
        raise UrlError("give the base URL, without ?query or #fragment")
    return parts._replace(path=parts.path.rstrip("/")).geturl()


def _one_line(text: str) -> str:
    return " ".join(text.split())


class Prometheus:
    """Queries one Prometheus; every query it runs is kept in `queries` (for the report)."""

    def __init__(self, url: str, on_query: Callable[[Query], None] | None = None):
        checked = check_url(url)
        parts = urllib.parse.urlsplit(checked)
        self.shown = redact(checked)
        self._headers = {"Accept": "application/json"}
        if parts.username is not None:
            # urllib sends no credentials from the URL itself: say them as HTTP basic auth.
            user = urllib.parse.unquote(parts.username)
            secret = urllib.parse.unquote(parts.password or "")
            token = base64.b64encode(f"{user}:{secret}".encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"
        self._base = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
        self._on_query = on_query
        self.queries: list[Query] = []

    def _get(self, path: str, params: dict[str, str], timeout: float) -> Any:
        url = f"{self._base}{path}?{urllib.parse.urlencode(params)}"
        request = urllib.request.Request(url, headers=self._headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as reply:
                raw = read_bounded(reply, BODY_LIMIT, timeout)
        except urllib.error.HTTPError as exc:
            # Prometheus explains a refused query in a JSON body (400 bad_data, 422, 503).
            try:
                raw = read_bounded(exc, BODY_LIMIT, timeout)
            except (OSError, UnreadableFile):
                raw = b""
            if not raw.lstrip().startswith(b"{"):
                raise PrometheusError(f"HTTP {exc.code} from {self.shown}{path}") from None
        except UnreadableFile as exc:
            raise PrometheusError(f"{self.shown} {exc}") from None
        except (OSError, ValueError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise PrometheusError(f"cannot reach {self.shown}: {reason}") from None
        try:
            body = json.loads(raw)
            status = body["status"]
        except (ValueError, KeyError, TypeError):
            raise PrometheusError(
                f"{self.shown} does not answer as Prometheus's HTTP API ({path})"
            ) from None
        if status != "success":
            kind = body.get("errorType", "error")
            raise PrometheusError(f"Prometheus refused: {kind}: {_one_line(body.get('error', ''))}")
        return body["data"]

    def check(self) -> None:
        """Raise PrometheusError unless the URL answers as Prometheus's query API."""
        self._get("/api/v1/query", {"query": "time()"}, CHECK_TIMEOUT_S)

    def _record(self, entry: Query) -> None:
        self.queries.append(entry)
        if self._on_query is not None:
            self._on_query(entry)

    def query(self, expr: str) -> list[Series]:
        """An instant query's result (the expressions carry their own `@` time)."""
        self._record({"api": "query", "query": expr})
        result: list[Series] = self._get("/api/v1/query", {"query": expr}, QUERY_TIMEOUT_S)[
            "result"
        ]
        return result

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[Series]:
        """A range query's matrix: one value per `step` seconds from `start` to `end`."""
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step}"}
        self._record({"api": "query_range", **params})
        result: list[Series] = self._get("/api/v1/query_range", params, QUERY_TIMEOUT_S)["result"]
        return result
