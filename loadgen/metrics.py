"""The loadgen's own Prometheus metrics: runs by outcome, durations, skips, last run."""

from __future__ import annotations

from collections.abc import Iterable

from membench.exporter import names

OUTCOMES = ("success", "failure", "timeout")


class LoadgenMetrics:
    """The loadgen's own registry; every scenario's series exist from the first scrape."""

    def __init__(self, scenarios: Iterable[str]) -> None:
        from prometheus_client import (
            CollectorRegistry,
            Counter,
            Gauge,
            Histogram,
            disable_created_metrics,
        )

        # `_created` series double the series count and no rule or panel reads them.
        disable_created_metrics()
        self.registry = CollectorRegistry(auto_describe=True)
        self.runs = Counter(
            names.LOADGEN_RUNS_TOTAL,
            "Scheduled runs by outcome (success, failure, timeout).",
            ["scenario", names.OUTCOME_LABEL],
            registry=self.registry,
        )
        self.duration = Histogram(
            names.LOADGEN_RUN_DURATION_SECONDS,
            "Send-to-result time of finished runs (success and failure; timeouts excluded).",
            ["scenario"],
            buckets=names.TASK_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.skipped = Counter(
            names.LOADGEN_SKIPPED_TOTAL,
            "Firings skipped because the scenario's previous run was still in flight.",
            ["scenario"],
            registry=self.registry,
        )
        self.last_run = Gauge(
            names.LOADGEN_LAST_RUN_TIMESTAMP_SECONDS,
            "Unix time the scenario's last run ended (any outcome).",
            ["scenario"],
            registry=self.registry,
        )
        for scenario in scenarios:
            # Pre-initialised so rate()/increase() and absent() work before the first event.
            for outcome in OUTCOMES:
                self.runs.labels(scenario=scenario, outcome=outcome)
            self.duration.labels(scenario=scenario)
            self.skipped.labels(scenario=scenario)
