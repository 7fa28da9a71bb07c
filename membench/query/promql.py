"""Every PromQL query `membench report` runs, built from the names in exporter/names.py.

Instant queries carry their evaluation time (`@ END`), so each one pasted into Prometheus or
Grafana Explore gives the very numbers of the report; docs/promql.md explains each.
"""

from __future__ import annotations

from collections.abc import Sequence

from membench.exporter import names
from membench.query.timerange import Window

# Prometheus's default lookback delta: raw samples are read from this far before the window,
# so a gauge value already there at its start is known as old, not taken for a new run.
LOOKBACK_S = 300
QUANTILES = (0.5, 0.9)


def selector(scenarios: Sequence[str] | None) -> str:
    """`{scenario=~"a|b"}`, or nothing for every scenario (names are [a-z_]: no escaping)."""
    return '{scenario=~"' + "|".join(scenarios) + '"}' if scenarios else ""


def benchmark_task(match: str) -> str:
    """`match` narrowed to the benchmark's own task: the runner's helper tasks run in the same
    workers and have per-task series of their own."""
    task = f'{names.TASK_LABEL}="{names.BENCHMARK_TASK}"'
    return "{" + ", ".join(filter(None, (match.strip("{}"), task))) + "}"


def peak(rule: str, match: str, window: Window) -> str:
    """The highest value a recording rule took in the window, per scenario."""
    return f"max_over_time({rule}{match}[{window.promql_range}] @ {window.at})"


def raw_samples(metric: str, match: str, window: Window) -> str:
    """Every sample Prometheus scraped of `metric`, from LOOKBACK_S before the window to its end."""
    return f"{metric}{match}[{window.seconds + LOOKBACK_S}s] @ {window.at}"


def duration_quantile(q: float, match: str, window: Window) -> str:
    """The task-duration histogram's q-quantile over the window (interpolated within buckets)."""
    series = f"{names.TASK_DURATION_SECONDS}_bucket{benchmark_task(match)}"
    buckets = f"{series}[{window.promql_range}] @ {window.at}"
    return f"histogram_quantile({q}, sum by (scenario, pool, strategy, le) (increase({buckets})))"


def instant_queries(match: str, window: Window) -> dict[str, str]:
    """What the tables come from, by the figure each gives."""
    task = benchmark_task(match)
    queries = {
        "peak_rss": peak(names.RULE_TREE_RSS_SUM, match, window),
        "peak_pss": peak(names.RULE_TREE_PSS_SUM, match, window),
        "durations": raw_samples(names.TASK_LAST_DURATION_SECONDS, task, window),
        "task_peaks": raw_samples(names.TASK_PEAK_RSS_BYTES, task, window),
        "runs": raw_samples(names.TASK_RUNS_TOTAL, task, window),
    }
    for q in QUANTILES:
        queries[quantile_key(q)] = duration_quantile(q, match, window)
    return queries


def quantile_key(q: float) -> str:
    """`p50` for 0.5: the name of a quantile's query, column and JSON field."""
    return f"p{round(q * 100)}"


def timeline_queries(match: str) -> dict[str, str]:
    """Tree RSS and PSS over time (range queries), for the plots."""
    return {"rss": f"{names.RULE_TREE_RSS_SUM}{match}", "pss": f"{names.RULE_TREE_PSS_SUM}{match}"}


def timeline_step(window: Window, points: int = 1000) -> int:
    """Whole seconds between plotted points: at most `points` (Prometheus allows 11,000)."""
    return max(1, -(-window.seconds // points))
