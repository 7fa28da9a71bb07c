"""What `membench run` is configured with, and the records of what each run measured."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from membench.results.model import BenchmarkScenario, Figure, RunResult, Summary
from membench.run.worker import WorkerOptions
from membench.workers.params import BatchParams
from membench.workers.scenarios import Scenario


def format_seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


# With --targets-dir, how long a worker is kept after a run for Prometheus to scrape it: a new
# target waits for file_sd discovery (refresh 5 s) and the scrape interval (5 s in our config).
PROMETHEUS_SCRAPE_WAIT_S = 30.0


@dataclass
class RunConfig:
    scenarios: list[Scenario]
    subtasks: int
    size_mb: float
    hold_s: float
    workers: int
    concurrency: int
    runs: int
    payload: str
    payload_sha256: str | None = None  # of a MODULE:FUNCTION payload's module file
    reuse_worker: bool = False
    sample_interval: float = 0.05
    warmup: int = 0  # extra runs per scenario before the measured ones, not in the summary
    options: WorkerOptions = field(default_factory=WorkerOptions)
    malloc_trim: bool = False  # after each run, release free memory and measure again
    targets_dir: Path | None = None  # file_sd directory a Prometheus watches; else private

    def params(self, scenario: Scenario) -> BatchParams:
        return BatchParams.validate(
            {
                "subtasks": self.subtasks,
                "size_mb": self.size_mb,
                "hold_s": self.hold_s,
                "workers": self.workers,
                "strategy": scenario.strategy,
                "payload": self.payload,
            }
        )

    def ideal_seconds(self, scenario: Scenario) -> float:
        return self.params(scenario).ideal_seconds()

    def deadline_seconds(self, scenario: Scenario) -> float:
        return self.params(scenario).deadline_seconds()


@dataclass
class ScenarioResult:
    scenario: Scenario
    approach: str
    runs: list[RunResult] = field(default_factory=list)
    # Processes that escaped the scenario's worker (a new session or process group) and were
    # found running after it stopped: killed, and a fault of the run (membench.descendants).
    escaped_processes: list[str] = field(default_factory=list)

    def measured_runs(self) -> list[RunResult]:
        return [r for r in self.runs if not r.warmup]

    def ok_runs(self) -> list[RunResult]:
        """Successful measured runs: what the summary and the table count."""
        return [r for r in self.measured_runs() if r.status == "ok"]

    def summary(self) -> Summary:
        """Median, min, max and standard deviation of each figure over successful measured runs
        (the figures a run records; the --app ones stay None)."""
        figures: dict[str, Figure] = {}
        for key in SUMMARY_KEYS:
            values = [getattr(r, key) for r in self.ok_runs() if getattr(r, key) is not None]
            if values:
                figures[key] = Figure.of(values)
        return Summary(**figures)

    def entry(self) -> BenchmarkScenario:
        """This scenario as results.json holds it."""
        return BenchmarkScenario(
            scenario=self.scenario.name,
            approach=self.approach,
            pool=self.scenario.pool,
            strategy=self.scenario.strategy,
            summary=self.summary(),
            runs=self.runs,
            escaped_processes=self.escaped_processes,
        )


# The summary's figures that a run of the seed's scenarios records.
SUMMARY_KEYS = tuple(
    name for name in Summary.__struct_fields__ if name in RunResult.__struct_fields__
)
