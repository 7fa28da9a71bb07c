"""Read the generated dashboards' PromQL back out, with Grafana's variables substituted.

Stdlib only (`membench.grafana.panels`, or by path), so tests that run the queries against a
real Prometheus need no grafana-foundation-sdk.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

DASHBOARDS_DIR = Path(__file__).resolve().parent / "dashboards"

# Concrete stand-ins for Grafana's variables: `.*` is what the dashboards' "All" sends
# (allValue), and the intervals are what Grafana would pick for a 1 h range on a 5 s scrape.
DEFAULT_VARIABLES: dict[str, str] = {
    "cluster": ".*",
    "namespace": ".*",
    "job": ".*",
    "flower_job": ".*",
    "scenario": ".*",
    "instance": ".*",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
    "__rate_interval": "1m",
    "__interval": "15s",
    "__interval_ms": "15000",
}

# $name, ${name} and ${name:format}; longest name wins (\w+ is greedy), so $__range_s is not
# read as $__range followed by "_s".
_VARIABLE = re.compile(r"\$\{(\w+)(?::[\w-]+)?\}|\$(\w+)")
STRING_LITERAL = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_BRACKETS = re.compile(r"\[[^\]]*\]")
_IDENTIFIER = re.compile(r"(?<![\w:.])[A-Za-z_:][\w:]*")


def load_dashboards(directory: Path = DASHBOARDS_DIR) -> list[dict[str, Any]]:
    """Every dashboard JSON in `directory`, sorted by file name."""
    return [
        json.loads(path.read_text(encoding="utf-8")) for path in sorted(directory.glob("*.json"))
    ]


def iter_panels(dashboard_json: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """All non-row panels, including those nested in collapsed rows."""
    for panel in dashboard_json.get("panels") or []:
        if panel.get("type") == "row":
            yield from panel.get("panels") or []
        else:
            yield panel


def substitute(expr: str, variables: Mapping[str, str]) -> str:
    """Replace Grafana variables with concrete values; unknown variables raise KeyError."""
    values = {**DEFAULT_VARIABLES, **variables}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(f"no value for Grafana variable ${name} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(replace, expr)


def panel_queries(
    dashboard_json: Mapping[str, Any], variables: dict[str, str]
) -> list[tuple[str, str, str]]:
    """(dashboard uid, panel title, concrete PromQL) for every target of every panel.

    `variables` maps names without `$` (job, scenario, instance, __range, ...) to
    values; missing ones fall back to DEFAULT_VARIABLES.
    """
    uid = str(dashboard_json.get("uid", ""))
    queries = []
    for panel in iter_panels(dashboard_json):
        for target in panel.get("targets") or []:
            expr = target.get("expr")
            if expr:
                queries.append((uid, str(panel.get("title", "")), substitute(expr, variables)))
    return queries


def identifiers(expr: str) -> set[str]:
    """Metric and rule names (plus function/label words) in `expr`, outside strings and ranges.

    Callers filter what they care about (e.g. names starting with membench_ or containing ':');
    strings and [...] are dropped so `"membench_.*"` or a subquery's `[1h:5m]` never count.
    """
    stripped = _BRACKETS.sub(" ", STRING_LITERAL.sub(" ", expr))
    return set(_IDENTIFIER.findall(stripped))
