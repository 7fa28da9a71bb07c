"""The types between membench's parts: the benchmark task's report, a run, a scenario, the two
kinds of results.json (the seed's scenarios and the user's --app task), a --matrix summary and
the runner's progress events.

msgspec Structs rather than dataclasses: one declaration gives the typed decode that validates a
file (the error names the JSON path), the JSON Schema shipped beside it, and a tagged union for
the two kinds of document, with a 60 ms import and no dependency of its own. Fields are
ordered as results.json has always written them. Sizes are bytes, times seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import msgspec

from membench.stats import describe

SCHEMA_VERSION = 2


class Figure(msgspec.Struct):
    """One figure over a scenario's successful measured runs."""

    median: float
    min: float
    max: float
    stdev: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Figure:
        """The figure of a non-empty sequence (membench.stats.describe)."""
        described = describe(values)
        return cls(
            described["median"],
            described["min"],
            described["max"],
            described["stdev"],
            len(values),
        )


class Summary(msgspec.Struct):
    """A scenario's figures; None where no successful run recorded it."""

    peak_rss_bytes: Figure | None = None
    peak_pss_bytes: Figure | None = None
    baseline_rss_bytes: Figure | None = None
    baseline_pss_bytes: Figure | None = None
    task_peak_rss_bytes: Figure | None = None
    tree_hwm_sum_bytes: Figure | None = None
    retained_rss_bytes: Figure | None = None
    retained_pss_bytes: Figure | None = None
    floor_bytes: Figure | None = None
    excess_rss_bytes: Figure | None = None
    excess_pss_bytes: Figure | None = None
    concurrent_temporaries_bytes: Figure | None = None
    trimmed_rss_bytes: Figure | None = None
    trimmed_pss_bytes: Figure | None = None
    duration_s: Figure | None = None
    round_trip_s: Figure | None = None
    worker_ready_s: Figure | None = None
    duration_p90_s: Figure | None = None  # --app only
    throughput_per_s: Figure | None = None  # --app only


class Timeline(msgspec.Struct):
    """The worker tree's sampled memory; t_s from the task's start (--app: the first send)."""

    t_s: list[float] = msgspec.field(default_factory=list)
    rss_bytes: list[int] = msgspec.field(default_factory=list)
    pss_bytes: list[int] = msgspec.field(default_factory=list)


class SamplerStats(msgspec.Struct):
    """How punctual the tree sampler was over a run."""

    interval_s: float
    ticks: int
    late_ticks: int
    missed_ticks: int
    on_time_ratio: float


class TaskParams(msgspec.Struct):
    """The benchmark task's parameters (membench.workers.params.BatchParams)."""

    subtasks: int
    size_mb: float
    hold_s: float
    workers: int
    strategy: str
    payload: str


class TaskReport(msgspec.Struct):
    """What the benchmark task returns through the result backend."""

    pid: int
    started_at: float  # epoch seconds
    finished_at: float
    wall_s: float
    subtasks_done: int
    digest: str | None
    subtask_means: dict[str, float] | None
    numpy_loaded: bool
    start_rss_bytes: int
    end_rss_bytes: int
    peak_rss_bytes: int
    peak_method: str
    max_os_threads: int
    allocator: str
    params: TaskParams


class RunResult(msgspec.Struct):
    """One run of a scenario on its worker, as measured from outside and reported from inside."""

    scenario: str
    run: int  # 1-based, counted separately for warmup and measured runs
    status: Literal["ok", "failed"] = "ok"
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
    sampler: SamplerStats | None = None
    timeline: Timeline = msgspec.field(default_factory=Timeline)


class AppRun(msgspec.Struct):
    """One pool at one concurrency of an --app run: all its task runs on one fresh worker."""

    scenario: str
    pool: str
    concurrency: int
    run: int = 1
    warmup: bool = False
    status: Literal["ok", "failed", "refused"] = "ok"
    reason: str = ""
    worker_ready_s: float | None = None
    processes: int | None = None
    baseline_rss_bytes: int | None = None
    baseline_pss_bytes: int | None = None
    peak_rss_bytes: int | None = None  # the tree's sampled peak over the whole load
    peak_pss_bytes: int | None = None
    tree_hwm_sum_bytes: int | None = None
    retained_rss_bytes: int | None = None  # tree RSS once the last run ended
    tasks: int = 0
    sent: int = 0
    outcomes: dict[str, int] = msgspec.field(default_factory=dict)
    errors: dict[str, int] = msgspec.field(default_factory=dict)
    elapsed_s: float | None = None
    throughput_per_s: float | None = None
    duration_s: float | None = None  # median run duration (what `membench compare` compares)
    duration_p90_s: float | None = None
    task_peak_rss_bytes: int | None = None  # median exact per-run peak (VmHWM)
    task_peak_max_rss_bytes: int | None = None
    task_peak_runs: int = 0  # runs with an exact peak
    window_peak_rss_bytes: int | None = None  # median shared-window peak, where runs overlapped
    window_peak_max_rss_bytes: int | None = None
    task_retained_bytes: int | None = None  # median RSS an exact run left behind
    executing_pids: int = 0
    child_recycles: dict[str, float] | None = None  # the instrument's, by reason
    planned_need_bytes: int | None = None  # the estimate the memory check used
    stalled_s: float = 0.0
    sampler: SamplerStats | None = None
    timeline: Timeline = msgspec.field(default_factory=Timeline)
    escaped_processes: list[str] = msgspec.field(default_factory=list)


class Machine(msgspec.Struct):
    """Where the run ran: what explains a figure that differs from another machine's."""

    cores: int | None
    memory_bytes: int
    kernel: str
    machine: str
    libc: str
    python: str
    celery: str | None
    gevent: str | None
    billiard: str | None
    redis_py: str | None
    celery_membench: str | None


class BenchmarkParameters(msgspec.Struct):
    """The seed's flags (time_s is its --time) and membench's own."""

    subtasks: int
    size_mb: float
    time_s: float
    workers: int
    concurrency: int
    runs: int
    warmup: int
    payload: str
    payload_sha256: str | None
    scenarios: list[str]
    reuse_worker: bool
    malloc: str
    max_tasks_per_child: int | None
    max_memory_per_child_kib: int | None
    malloc_trim: bool
    inherited_allocator_environment: dict[str, str]
    sample_interval_s: float
    broker: str  # "embedded" or the URL, password redacted


class AppParameters(msgspec.Struct):
    """`membench run --app`: the user's task and how it was driven."""

    app: str
    task: str
    # The user's own JSON arguments, as given: any JSON value is theirs to pass.
    args: list[Any]
    kwargs: dict[str, Any]
    module_file: str | None
    module_sha256: str | None
    tasks: int
    pools: list[str]
    concurrency: list[int]
    task_timeout_s: float
    malloc: str
    max_tasks_per_child: int | None
    max_memory_per_child_kib: int | None
    inherited_allocator_environment: dict[str, str]
    sample_interval_s: float
    broker: str


class BenchmarkScenario(msgspec.Struct):
    scenario: str
    approach: str
    pool: str
    strategy: str
    summary: Summary
    runs: list[RunResult]
    escaped_processes: list[str] = msgspec.field(default_factory=list)


class ThroughputVsSolo(msgspec.Struct):
    cell: str
    serial: bool
    in_plain_words: str | None


class AppScenario(msgspec.Struct):
    scenario: str
    approach: str
    pool: str
    strategy: Literal["app"]
    concurrency: int
    summary: Summary
    runs: list[AppRun]
    escaped_processes: list[str]
    throughput_vs_solo: ThroughputVsSolo


class ApproachSizing(msgspec.Struct):
    """Sizing of one approach at the sizing concurrency (membench.run.sizing)."""

    scenario: str
    approach: str
    pool: str
    concurrency: int
    tasks_in_flight: int
    note: str | None = None  # why there is no estimate
    need_bytes: int | None = None
    fixed_bytes: int | None = None
    per_task_bytes: int | None = None
    task_rise_bytes: int | None = None
    child_pss_bytes: int | None = None
    child_peak_rss_bytes: int | None = None
    max_memory_per_child_kib: int | None = None
    runs: int | None = None


class Sizing(msgspec.Struct):
    concurrency: int
    basis: Literal["pss"]
    threshold_margin_percent: int
    approaches: list[ApproachSizing]


class AppSizingRow(msgspec.Struct):
    """Sizing of one --app row (membench.run.app.sizing)."""

    scenario: str
    pool: str
    concurrency: int
    note: str | None = None
    need_bytes: int | None = None
    container_limit_bytes: int | None = None
    child_peak_rss_bytes: int | None = None
    max_memory_per_child_kib: int | None = None


class AppSizing(msgspec.Struct):
    basis: Literal["pss"]
    rows: list[AppSizingRow]
    solo_rate_per_s: float | None


class BenchmarkResults(msgspec.Struct, tag_field="mode", tag="benchmark"):
    """results.json of `membench run`: the seed's scenarios (or a --payload)."""

    schema_version: int
    complete: bool  # false: interrupted, the runs so far
    command: list[str]  # as typed, every password redacted
    started_at: str  # ISO 8601, UTC
    finished_at: str
    parameters: BenchmarkParameters
    machine: Machine
    scenarios: list[BenchmarkScenario]
    sizing: Sizing


class AppResults(msgspec.Struct, tag_field="mode", tag="app"):
    """results.json of `membench run --app`: one scenario per pool and concurrency."""

    schema_version: int
    complete: bool
    command: list[str]
    started_at: str
    finished_at: str
    parameters: AppParameters
    machine: Machine
    scenarios: list[AppScenario]
    sizing: AppSizing


Results = BenchmarkResults | AppResults
Scenario = BenchmarkScenario | AppScenario


class CombinationScenario(msgspec.Struct):
    scenario: str
    approach: str
    summary: Summary


class Combination(msgspec.Struct):
    label: str  # "malloc=jemalloc payload=bytes"
    results: str  # its results.json, relative to matrix.json
    scenarios: list[CombinationScenario]


class MatrixSummary(msgspec.Struct):
    """matrix.json of `membench run --matrix`: each combination's summaries side by side."""

    complete: bool
    command: list[str]
    combinations: list[Combination]


# ---- the runner's progress events (membench.cli.progress shows them) ------------------------


class RunStarted(msgspec.Struct):
    scenario: str
    index: int  # of the scenario, 0-based
    run: int
    warmup: bool


class RunTick(msgspec.Struct):
    """About four times a second while a task runs."""

    scenario: str
    run: int
    warmup: bool
    elapsed_s: float
    expected_s: float | None
    rss_bytes: int


class RunEnded(msgspec.Struct):
    scenario: str
    result: RunResult


class ProcessesEscaped(msgspec.Struct):
    scenario: str
    escaped: list[str]


ProgressEvent = RunStarted | RunTick | RunEnded | ProcessesEscaped


# ---- what an --app worker's processes record per task run (membench.run.app.launcher) --------


class RunBegan(msgspec.Struct, tag_field="e", tag="start"):
    id: str  # the task id
    pid: int  # the process that runs it
    t: float  # epoch seconds


class RunFinished(msgspec.Struct, tag_field="e", tag="end"):
    id: str
    pid: int
    t: float
    outcome: str  # the instrument's: success, failure, retry, ...; "lost" for a dead child
    error: str = ""  # a failure's exception, last line
    duration_s: float | None = None
    peak_rss_bytes: int | None = None  # exact: the process ran this task alone
    window_peak_rss_bytes: int | None = None  # shared with runs that overlapped it
    retained_bytes: int | None = None


RunRecord = RunBegan | RunFinished
