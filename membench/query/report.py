"""Collect a report from Prometheus (each query once) and write report.json and the plots."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from membench.jsonfile import write_json_atomic
from membench.query.client import Prometheus
from membench.query.promql import (
    instant_queries,
    selector,
    timeline_queries,
    timeline_step,
)
from membench.query.rows import Approach, approaches, points_by_scenario
from membench.query.timerange import Window, rfc3339
from membench.workers.scenarios import SCENARIOS

REPORT_FILE = "report.json"
SCHEMA_VERSION = 1


def plot_file(scenario: str) -> str:
    return f"memory_{scenario}.png"


@dataclass
class Report:
    prometheus: str  # the URL, password redacted
    window: Window
    scenarios: list[str] | None  # as asked for; None: every scenario Prometheus has
    approaches: list[Approach]
    queries: list[dict[str, Any]] = field(default_factory=list)
    generated_at: float = field(default_factory=time.time)


def collect(client: Prometheus, window: Window, scenarios: list[str] | None) -> Report:
    """Every figure of the report; the timelines only when the window holds a run."""
    match = selector(scenarios)
    results = {key: client.query(expr) for key, expr in instant_queries(match, window).items()}
    found = approaches(results, window.start)
    if found:
        step = timeline_step(window)
        for kind, expr in timeline_queries(match).items():
            points = points_by_scenario(client.query_range(expr, window.start, window.end, step))
            for approach in found:
                approach.timeline[f"{kind}_bytes"] = points.get(approach.scenario, [])
    return Report(client.shown, window, scenarios, found, client.queries)


def _approach_document(approach: Approach) -> dict[str, Any]:
    known = SCENARIOS.get(approach.scenario)
    return {
        "scenario": approach.scenario,
        "approach": approach.label,
        "pool": known.pool if known else None,
        "strategy": known.strategy if known else None,
        "peak_rss_bytes": approach.peak_rss_bytes,
        "peak_pss_bytes": approach.peak_pss_bytes,
        "execution_time_s": approach.execution_time_s,
        "task_peak_rss_bytes": approach.task_peaks,
        "duration_quantiles_s": approach.quantiles_s,
        "runs_total": approach.total_runs,
        "runs_by_outcome": approach.outcomes,
        "runs_seen": len(approach.runs),
        "runs": [
            {
                "seen_at": rfc3339(run.seen_at),
                "duration_s": run.duration_s,
                "task_peak_rss_bytes": run.task_peak_rss_bytes,
                "instance": run.instance,
                "role": run.role,
            }
            for run in approach.runs
        ],
        "plot": plot_file(approach.scenario),
        "timeline": approach.timeline,
    }


def report_document(report: Report) -> dict[str, Any]:
    window = report.window
    return {
        "schema_version": SCHEMA_VERSION,
        "source": "prometheus",
        "prometheus": report.prometheus,
        "generated_at": rfc3339(report.generated_at),
        "range": {
            "start": rfc3339(window.start),
            "end": rfc3339(window.end),
            "seconds": window.seconds,
        },
        "scenarios_requested": report.scenarios,
        "scenarios": [_approach_document(a) for a in report.approaches],
        "queries": report.queries,
    }


def write_report(report: Report, directory: Path) -> list[Path]:
    """report.json and one memory-over-time PNG per approach; the paths written."""
    from membench.query.plot import plot_approach

    written = [directory / REPORT_FILE]
    write_json_atomic(written[0], report_document(report))
    for approach in report.approaches:
        path = directory / plot_file(approach.scenario)
        plot_approach(approach, report.window, path)
        written.append(path)
    return written
