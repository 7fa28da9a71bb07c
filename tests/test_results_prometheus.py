"""The figures in results.json are the figures Prometheus recorded for the same runs: a real
Prometheus scrapes the workers of a real `membench run` through --targets-dir."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import (
    membench,
    prometheus_config,
    prometheus_query,
    require_binary,
    start_prometheus,
)

from membench.exporter import names
from membench.processes import free_port, stop

pytestmark = pytest.mark.slow
SCENARIOS = ("prefork_threads", "gevent_greenlets")


def _recorded(port: int, metric: str, scenario: str) -> set[float]:
    """Every distinct value Prometheus scraped for `metric` of `scenario` (raw samples)."""
    series = prometheus_query(port, f'{metric}{{scenario="{scenario}"}}[1h]')
    return {float(v) for s in series for _, v in s["values"]}


# What Celery adds to a run between task_prerun and task_postrun (storing the result in Redis,
# the signal dispatch), in seconds, and what it may add to the process's peak, in bytes.
DURATION_OVERHEAD = 0.1
PEAK_OVERHEAD = 1 << 20


def _within(recorded: set[float], reported: float, overhead: float) -> bool:
    return any(0 <= value - reported <= overhead for value in recorded)


@pytest.mark.serial(
    reason="bounds Celery's own time around each run (its result stored) at 0.1 s: on a busy "
    "machine that wait for a core is longer"
)
def test_results_json_equals_what_prometheus_recorded(tmp_path: Path) -> None:
    binary = require_binary("prometheus")
    # With --targets-dir each run waits for Prometheus to scrape the worker before the next run
    # (or the worker's stop) replaces the run's gauges: the last run of a scenario, right before
    # its worker is stopped, was the one missed without that wait.
    copy = prometheus_config(tmp_path, interval="250ms")
    port = free_port()
    proc = start_prometheus(
        binary, copy / "prometheus.yml", tmp_path / "data", port, tmp_path / "prometheus.log"
    )
    try:
        out = tmp_path / "out"
        result = membench(
            "run",
            *("--subtasks", "2", "--size", "4", "--time", "0.5", "--workers", "2"),
            *("--warmup", "1", "--runs", "3", "--reuse-worker"),
            *("--scenarios", ",".join(SCENARIOS)),
            *("--targets-dir", str(copy / "targets"), "--output", str(out)),
        )
        assert result.returncode == 0, result.stderr[-3000:]
        document = json.loads((out / "results.json").read_text())
        for scenario in document["scenarios"]:
            name, runs = scenario["scenario"], scenario["runs"]
            runs = [r for r in runs if not r["warmup"]]
            assert [r["status"] for r in runs] == ["ok"] * 3
            assert all(r["scraped_by_prometheus"] for r in scenario["runs"])
            peaks = _recorded(port, names.TASK_PEAK_RSS_BYTES, name)
            durations = _recorded(port, names.TASK_LAST_DURATION_SECONDS, name)
            assert len(durations) >= 3, (name, durations)
            for run in runs:
                # The instrument measures Celery's window of the run (task_prerun to
                # task_postrun: the task's own wall, then its result stored), the task its own
                # work: the exported figure is the task's plus that overhead, never less.
                assert _within(peaks, run["task_peak_rss_bytes"], PEAK_OVERHEAD), (name, run)
                assert _within(durations, run["duration_s"], DURATION_OVERHEAD), (name, run)
        # The workers are gone and unregistered: nothing left for Prometheus to scrape.
        assert not list((copy / "targets" / "workers").glob("*.json"))
    finally:
        stop(proc)
