"""`membench run`: scenarios on fresh workers, each tree sampled from outside; per-run figures."""

from __future__ import annotations

import contextlib
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from celery.exceptions import TimeoutError as ResultTimeout

from membench.procfs import read_status_memory, reset_peak_rss
from membench.run.sampler import TreeMemory, TreeSampler, read_tree_memory
from membench.run.worker import WorkerFailed, WorkerOptions, WorkerProcess
from membench.stats import describe
from membench.workers.params import BatchParams
from membench.workers.scenarios import Scenario

MB = 1024 * 1024
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
    sampler: dict[str, Any] = field(default_factory=dict)
    timeline: dict[str, list[float]] = field(default_factory=dict)


@dataclass
class ScenarioResult:
    scenario: Scenario
    approach: str
    runs: list[RunResult] = field(default_factory=list)

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


ProgressFn = Callable[[str, dict[str, Any]], None]


def _reset_tree_peaks(pids: list[int]) -> None:
    for pid in pids:
        reset_peak_rss(pid)


def _tree_hwm_sum(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += read_status_memory(pid)[1]
    return total


def _timeline(samples: list[TreeMemory], origin: float) -> dict[str, list[float]]:
    return {
        "t_s": [round(s.t - origin, 4) for s in samples],
        "rss_bytes": [s.rss for s in samples],
        "pss_bytes": [s.pss for s in samples],
    }


class Runner:
    """Runs every scenario `runs` times against one broker and collects RunResults."""

    def __init__(self, config: RunConfig, broker_url: str, progress: ProgressFn) -> None:
        self.config = config
        self.broker_url = broker_url
        self.progress = progress
        self._workdir = tempfile.TemporaryDirectory(prefix="membench-run-")
        self.workdir = Path(self._workdir.name)
        self._worker: WorkerProcess | None = None
        self._sampler: TreeSampler | None = None
        self._in_flight: Any = None  # the AsyncResult of the task last sent
        from membench.broker import client_app

        self.app = client_app(broker_url)

    def run(self, results: list[ScenarioResult]) -> list[ScenarioResult]:
        """Fill `results` as it goes, so an interrupted run still has what was measured."""
        try:
            for index, scenario in enumerate(self.config.scenarios):
                params = self.config.params(scenario)
                result = ScenarioResult(
                    scenario, scenario.approach(params.subtasks, params.size_mb)
                )
                results.append(result)
                # Warmup runs go first and the same way as measured ones (on the same worker
                # with --reuse-worker), so the measured runs start from a warmed machine.
                plan = [(run, True) for run in range(1, self.config.warmup + 1)]
                plan += [(run, False) for run in range(1, self.config.runs + 1)]
                for run, warmup in plan:
                    self.progress(
                        "run-start",
                        {"scenario": scenario.name, "index": index, "run": run, "warmup": warmup},
                    )
                    outcome = self._one_run(scenario, params, run, warmup)
                    result.runs.append(outcome)
                    self.progress("run-end", {"scenario": scenario.name, "result": outcome})
                    if not self.config.reuse_worker or outcome.status != "ok":
                        self._stop_worker()
                self._stop_worker()
        except BaseException:
            self._abandon_in_flight()
            raise
        finally:
            self._stop_worker()
            self._workdir.cleanup()
        return results

    def _start_worker(self, scenario: Scenario) -> WorkerProcess:
        worker = WorkerProcess(
            scenario,
            self.config.concurrency,
            self.broker_url,
            self.workdir,
            secrets.token_hex(4),
            options=self.config.options,
            targets_dir=self.config.targets_dir,
        )
        self._worker = worker
        worker.start()
        self._sampler = TreeSampler(worker.pid, self.config.sample_interval).start()
        worker.wait_ready(self.app)
        return worker

    def _release_free_memory(self, worker: WorkerProcess, result: RunResult) -> None:
        """Ask the worker to return free memory to the kernel, then measure what it still holds.
        The release task goes to the run's queue: with -c 1 it runs where the batch ran."""
        release = self.app.send_task("membench.release_free_memory", queue=worker.queue)
        self._in_flight = release
        try:
            reply = release.get(timeout=30)
        except Exception as exc:  # any failure is reported in the run
            result.status, result.reason = "failed", f"release of free memory failed: {exc!r}"
            return
        finally:
            self._in_flight = None
        trimmed = read_tree_memory(worker.pid)
        result.trimmed_rss_bytes, result.trimmed_pss_bytes = trimmed.rss, trimmed.pss
        result.trim_method = reply["method"]
        if reply["pid"] != result.executing_pid:
            result.trim_method += (
                f" (in pid {reply['pid']}, the task ran in {result.executing_pid})"
            )

    def _abandon_in_flight(self) -> None:
        """Interrupted: kill the worker now (a warm stop waits for its task) and stop listening for
        the task's result while the broker is up (Celery would otherwise retry ~20 s at exit)."""
        if self._worker is not None:
            self._worker.abandon()
        if self._in_flight is not None:
            with contextlib.suppress(Exception):
                self.app.backend.remove_pending_result(self._in_flight)
            self._in_flight = None

    def _stop_worker(self) -> None:
        if self._sampler is not None:
            self._sampler.stop()
            self._sampler = None
        if self._worker is not None:
            self._worker.stop()
            self._worker = None

    def _one_run(
        self, scenario: Scenario, params: BatchParams, run: int, warmup: bool = False
    ) -> RunResult:
        result = RunResult(scenario=scenario.name, run=run, warmup=warmup)
        try:
            worker = self._worker or self._start_worker(scenario)
        except WorkerFailed as exc:
            result.status, result.reason = "failed", str(exc)
            return result
        result.worker_ready_s = worker.ready_s
        sampler = self._sampler
        assert sampler is not None
        pids = worker.tree()
        result.processes = len(pids)
        _reset_tree_peaks(pids)
        baseline = read_tree_memory(worker.pid)
        result.baseline_rss_bytes, result.baseline_pss_bytes = baseline.rss, baseline.pss
        sent_at = time.time()
        async_result = self.app.send_task(
            "membench.process_batch", kwargs=params.as_kwargs(), queue=worker.queue
        )
        self._in_flight = async_result
        deadline = time.monotonic() + self.config.deadline_seconds(scenario)
        report: dict[str, Any] | None = None
        while report is None:
            if not worker.alive():
                result.status = "failed"
                result.reason = f"{worker.exit_reason()} during the run: {worker.log_tail(3)}"
                break
            if time.monotonic() > deadline:
                result.status = "failed"
                result.reason = f"no result within {self.config.deadline_seconds(scenario):.0f} s"
                break
            try:
                value = async_result.get(timeout=0.25, propagate=False)
            except ResultTimeout:
                latest = sampler.latest()
                self.progress(
                    "tick",
                    {
                        "scenario": scenario.name,
                        "run": run,
                        "warmup": warmup,
                        "elapsed": time.time() - sent_at,
                        "expected": self.config.ideal_seconds(scenario),
                        "rss": latest.rss if latest else 0,
                    },
                )
                continue
            if async_result.failed():
                result.status = "failed"
                result.reason = f"{type(value).__name__}: {value}"
                break
            report = value
        received_at = time.time()
        result.round_trip_s = received_at - sent_at
        if report is None:
            async_result.forget()
            preroll = max(sent_at - 1.0, worker.ready_at or sent_at)
            result.timeline = _timeline(sampler.between(preroll, received_at), sent_at)
            return result
        retained = read_tree_memory(worker.pid)
        result.retained_rss_bytes, result.retained_pss_bytes = retained.rss, retained.pss
        result.tree_hwm_sum_bytes = _tree_hwm_sum(pids)
        started, finished = report["started_at"], report["finished_at"]
        window = sampler.between(started, finished)
        result.peak_rss_bytes = max([s.rss for s in window] + [baseline.rss, retained.rss])
        result.peak_pss_bytes = max([s.pss for s in window] + [baseline.pss, retained.pss])
        result.duration_s = report["wall_s"]
        result.task_peak_rss_bytes = report["peak_rss_bytes"]
        result.peak_method = report["peak_method"]
        result.subtasks_done = report["subtasks_done"]
        result.digest = report["digest"]
        result.max_os_threads = report["max_os_threads"]
        result.executing_pid = report["pid"]
        result.allocator = report["allocator"]
        result.floor_bytes = params.held_at_once() * params.size_bytes
        result.excess_rss_bytes = result.peak_rss_bytes - baseline.rss - result.floor_bytes
        result.excess_pss_bytes = result.peak_pss_bytes - baseline.pss - result.floor_bytes
        result.sampler = sampler.stats()
        # Up to a second of idle worker before the task (never its start-up ramp), led by the
        # baseline read just before sending, so the timeline starts from the idle worker.
        preroll = max(started - 1.0, worker.ready_at or started)
        samples = [s for s in sampler.between(preroll, received_at) if s.t > baseline.t]
        result.timeline = _timeline([baseline, *samples], started)
        if self.config.malloc_trim:
            self._release_free_memory(worker, result)
        if result.subtasks_done != params.subtasks:
            result.status = "failed"
            result.reason = f"{result.subtasks_done} of {params.subtasks} subtasks done"
        if self.config.targets_dir is not None:
            # The next run, or stopping the worker, replaces this run's gauges.
            result.scraped_by_prometheus = worker.wait_scraped(PROMETHEUS_SCRAPE_WAIT_S)
        return result
