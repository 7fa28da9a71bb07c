"""What `membench run` is configured with, and the records of what each run measured."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from membench.run.worker import WorkerOptions
from membench.stats import describe
from membench.workers.params import BatchParams
from membench.workers.scenarios import Scenario

MB = 1024 * 1024


def format_mb(value: float | None) -> str:
    """A byte figure as the tables print it: MB (2^20) to 2 places, `-` when unknown."""
    return "-" if value is None else f"{value / MB:.2f}"


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
class RunResult:
    scenario: str
    run: int  # 1-based, counted separately for warmup and measured runs
    status: str = "ok"  # ok | failed
    warmup: bool = False  # a warmup run: recorded, never in the summary
    reason: str = ""
    worker_ready_s: float | None = None
    duration_s: float | None = None  # task wall time, measured inside the task
    round_trip_s: float | None = None  # send to result received, measured by the runner
    baseline_rss_bytes: int | None = None
    baseline_pss_bytes: int | None = None
    peak_rss_bytes: int | None = None  # sampled tree RSS sum, the seed's figure
    peak_pss_bytes: int | None = None
    task_peak_rss_bytes: int | None = None  # exact peak of the executing process (VmHWM)
    peak_method: str | None = None
    tree_hwm_sum_bytes: int | None = None  # sum over the tree of each process's VmHWM
    retained_rss_bytes: int | None = None  # tree RSS once the result is back
    retained_pss_bytes: int | None = None
    floor_bytes: int | None = None  # live data the scenario must hold at once
    excess_rss_bytes: int | None = None  # peak - baseline - floor: allocator + interpreter cost
    excess_pss_bytes: int | None = None
    concurrent_temporaries_bytes: int | None = None  # numpy: see membench.run.payloads
    temporaries_at_once: float | None = None  # the same in subtask sizes
    payload_import_rss_bytes: int | None = None  # tree RSS numpy or user code added, loaded
    subtask_means: dict[str, float] | None = None  # numpy: mean, std_dev; cpu-*: cpu_s, passes
    trimmed_rss_bytes: int | None = None  # retained after gc + malloc_trim (--malloc-trim)
    trimmed_pss_bytes: int | None = None
    trim_method: str | None = None
    allocator: str | None = None  # what the executing process really used (from its mappings)
    subtasks_done: int | None = None
    digest: str | None = None
    max_os_threads: int | None = None
    executing_pid: int | None = None
    processes: int | None = None
    # With --targets-dir: whether Prometheus scraped the worker after the run (None: not asked).
    scraped_by_prometheus: bool | None = None
    # Seconds the sampler saw a process of the tree stopped (SIGSTOP, a tracer) during the run:
    # its duration and memory then say nothing about the approach. Flagged, never silent.
    stalled_s: float = 0.0
    sampler: dict[str, Any] = field(default_factory=dict)
    timeline: dict[str, list[float]] = field(default_factory=dict)


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

    def summary(self) -> dict[str, dict[str, float] | None]:
        """Median, min, max and standard deviation of each figure over successful measured runs."""
        keys = (
            "peak_rss_bytes",
            "peak_pss_bytes",
            "baseline_rss_bytes",
            "baseline_pss_bytes",
            "task_peak_rss_bytes",
            "tree_hwm_sum_bytes",
            "retained_rss_bytes",
            "retained_pss_bytes",
            "floor_bytes",
            "excess_rss_bytes",
            "excess_pss_bytes",
            "concurrent_temporaries_bytes",
            "trimmed_rss_bytes",
            "trimmed_pss_bytes",
            "duration_s",
            "round_trip_s",
            "worker_ready_s",
        )
        out: dict[str, dict[str, float] | None] = {}
        for key in keys:
            values = [getattr(r, key) for r in self.ok_runs() if getattr(r, key) is not None]
            out[key] = describe(values) if values else None
        return out
