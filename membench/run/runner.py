"""`membench run`: scenarios on fresh workers, each tree sampled from outside; per-run figures."""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import shutil
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec
from celery.exceptions import TimeoutError as ResultTimeout

from membench.broker import broker_errors
from membench.descendants import Adopter
from membench.exporter import names
from membench.procfs import list_children
from membench.results.model import (
    ProcessesEscaped,
    ProgressEvent,
    RunEnded,
    RunResult,
    RunStarted,
    RunTick,
    TaskReport,
)
from membench.run.payloads import derive_figures, preload_payload
from membench.run.records import PROMETHEUS_SCRAPE_WAIT_S, RunConfig, ScenarioResult
from membench.run.sampler import (
    TreeSampler,
    read_tree_memory,
    reset_tree_peaks,
    tree_hwm_sum,
    tree_timeline,
)
from membench.run.worker import WorkerFailed, WorkerProcess
from membench.tempdirs import owned_tempdir
from membench.workers.params import BatchParams
from membench.workers.scenarios import Scenario

if TYPE_CHECKING:
    from celery import Celery

    from membench.workers.app import MembenchTask

ProgressFn = Callable[[ProgressEvent], None]


class BrokerLost(Exception):
    """The broker (or result backend) went away during a run and could not be replaced."""


def _line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())


class Runner:
    """Runs every scenario `runs` times against one broker and collects RunResults.

    `replace_broker`, if given, is called when the broker died during a run: it returns the URL
    of a new one (the embedded redis-server, restarted) and the next scenario goes on there.
    """

    def __init__(
        self,
        config: RunConfig,
        broker_url: str,
        progress: ProgressFn,
        replace_broker: Callable[[], str | None] | None = None,
        adopter: Adopter | None = None,
    ) -> None:
        self.config = config
        # Catches what escapes a worker (membench run adopts its orphans); None: not looked for.
        self.adopter = adopter
        self._current: ScenarioResult | None = None
        self.broker_url = broker_url
        self.progress = progress
        self.replace_broker = replace_broker
        self._broker_lost: str | None = None  # why the last run failed, if the broker went
        # Worker logs and ready files; a killed runner's is removed by the next runner.
        self.workdir = owned_tempdir("membench-run-")
        self._worker: WorkerProcess | None = None
        self._stopping: WorkerProcess | None = None  # the previous run's, while it stops
        self._sampler: TreeSampler | None = None
        self._in_flight: Any = None  # the AsyncResult of the task last sent
        self._payload_import: int | None = None  # measured when the current worker started

    @functools.cached_property
    def app(self) -> Celery[MembenchTask]:
        """The client app, made on first use: after the first worker is spawned, so that making
        it (importing the worker's app, ~0.1 s) overlaps that worker's start-up."""
        from membench.broker import client_app

        return client_app(self.broker_url)

    @property
    def worker(self) -> WorkerProcess | None:
        """The worker running the current scenario, if one is up."""
        return self._worker

    def run(self, results: list[ScenarioResult]) -> list[ScenarioResult]:
        """Fill `results` as it goes, so an interrupted run still has what was measured."""
        scenarios = self.config.scenarios
        try:
            for index, scenario in enumerate(scenarios):
                params = self.config.params(scenario)
                result = ScenarioResult(
                    scenario, scenario.approach(params.subtasks, params.size_mb)
                )
                results.append(result)
                self._current = result
                # Warmup runs go first and the same way as measured ones (on the same worker
                # with --reuse-worker), so the measured runs start from a warmed machine.
                plan = [(run, True) for run in range(1, self.config.warmup + 1)]
                plan += [(run, False) for run in range(1, self.config.runs + 1)]
                following = scenarios[index + 1] if index + 1 < len(scenarios) else None
                for number, (run, warmup) in enumerate(plan, 1):
                    self.progress(RunStarted(scenario.name, index, run, warmup))
                    outcome = self._one_run(scenario, params, run, warmup)
                    result.runs.append(outcome)
                    self.progress(RunEnded(scenario.name, outcome))
                    if self._broker_lost is not None:
                        self._survive_broker_loss()
                        break  # this scenario's worker lost its broker: on with the next
                    last = number == len(plan)
                    if last or not self.config.reuse_worker or outcome.status != "ok":
                        self._stop_worker(following if last else scenario)
        except BaseException:
            self._abandon_in_flight()
            raise
        finally:
            self._stop_worker()
            shutil.rmtree(self.workdir, ignore_errors=True)
        return results

    def _survive_broker_loss(self) -> None:
        """Kill the worker now (a warm stop would wait on the dead broker), then go on against a
        replacement broker, or raise BrokerLost when there is none."""
        reason, self._broker_lost = self._broker_lost, None
        if self._sampler is not None:
            self._sampler.stop()
            self._sampler = None
        if self._worker is not None:
            self._worker.stop(timeout=5.0, sig=signal.SIGKILL)
            self._end_strays(self._worker.pid)
            self._worker = None
        self._in_flight = None
        replacement = self.replace_broker() if self.replace_broker is not None else None
        if replacement is not None and self.adopter is not None:
            self.adopter.keep(list_children(os.getpid()))  # the new redis-server
        if replacement is None:
            raise BrokerLost(reason)
        from membench.broker import reconnect_client

        self.broker_url = replacement
        self.app = reconnect_client(self.app, self.broker_url)

    def _spawn_worker(self, scenario: Scenario) -> WorkerProcess:
        """Start a worker process for `scenario`, and its sampler; not yet waited for."""
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
        if self.adopter is not None:
            self.adopter.keep([worker.pid])  # our child on purpose, never a stray
        self._sampler = TreeSampler(worker.pid, self.config.sample_interval).start()
        return worker

    def _start_worker(self, scenario: Scenario) -> WorkerProcess:
        """The worker spawned for this run (by the previous run's stop) or a new one, ready."""
        worker = self._worker or self._spawn_worker(scenario)
        worker.wait_ready(self.app)
        self._payload_import = preload_payload(self.app, worker, self.config.payload)
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
        for worker in (self._stopping, self._worker):
            if worker is not None:
                worker.abandon()
        self._stopping = None
        if self._in_flight is not None:
            with contextlib.suppress(Exception):
                # Celery's async backends have it; celery-types' Backend stub does not.
                self.app.backend.remove_pending_result(self._in_flight)  # type: ignore[attr-defined]
            self._in_flight = None

    def _stop_worker(self, successor: Scenario | None = None) -> None:
        """Stop the current worker; with a `successor`, first spawn the next run's worker for
        that scenario, so that its start-up overlaps this stop.

        The stopped worker has already been measured to the last figure, and every process of
        its tree is gone when this returns, before the successor is ready and its baseline is
        read: PSS divides shared pages among the processes mapping them, so a tree still alive
        beside a measured one would lower that one's PSS.
        """
        if self._sampler is not None:
            self._sampler.stop()
            self._sampler = None
        self._stopping, self._worker = self._worker, None
        stopping = self._stopping
        if successor is not None:
            self._spawn_worker(successor)
        if stopping is not None:
            stopping.stop()
            self._end_strays(stopping.pid)
            self._stopping = None

    def _end_strays(self, worker_group: int) -> None:
        """Kill what escaped the worker just stopped (its process group `worker_group`) and say
        so: its memory was never in the tree measured, and nothing may outlive the run."""
        adopter = self.adopter
        escaped = adopter.end_strays(stopped={worker_group}) if adopter is not None else []
        if escaped and self._current is not None:
            described = [e.describe() for e in escaped]
            self._current.escaped_processes.extend(described)
            self.progress(ProcessesEscaped(self._current.scenario.name, described))

    def _one_run(
        self, scenario: Scenario, params: BatchParams, run: int, warmup: bool = False
    ) -> RunResult:
        result = RunResult(scenario=scenario.name, run=run, warmup=warmup)
        try:
            worker = self._worker
            if worker is None or worker.ready_at is None:  # none, or spawned and not yet ready
                worker = self._start_worker(scenario)
        except WorkerFailed as exc:
            result.status, result.reason = "failed", str(exc)
            return result
        result.worker_ready_s = worker.ready_s
        result.payload_import_rss_bytes, self._payload_import = self._payload_import, None
        sampler = self._sampler
        assert sampler is not None
        pids = worker.tree()
        result.processes = len(pids)
        reset_tree_peaks(pids)
        baseline = read_tree_memory(worker.pid)
        result.baseline_rss_bytes, result.baseline_pss_bytes = baseline.rss, baseline.pss
        sent_at = time.time()
        try:
            async_result = self.app.send_task(
                names.BENCHMARK_TASK, kwargs=params.as_kwargs(), queue=worker.queue
            )
        except broker_errors() as exc:
            self._broker_lost = result.reason = f"broker lost: cannot send the task: {_line(exc)}"
            result.status = "failed"
            return result
        self._in_flight = async_result
        deadline = time.monotonic() + self.config.deadline_seconds(scenario)
        report: TaskReport | None = None
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
                    RunTick(
                        scenario=scenario.name,
                        run=run,
                        warmup=warmup,
                        elapsed_s=time.time() - sent_at,
                        expected_s=self.config.ideal_seconds(scenario),
                        rss_bytes=latest.rss if latest else 0,
                    )
                )
                continue
            except broker_errors() as exc:
                result.status = "failed"
                self._broker_lost = result.reason = f"broker lost during the run: {_line(exc)}"
                break
            if async_result.failed():
                result.status = "failed"
                result.reason = f"{type(value).__name__}: {value}"
                break
            try:
                report = msgspec.convert(value, TaskReport)
            except msgspec.ValidationError as exc:
                result.status = "failed"
                result.reason = f"the task's report is not the benchmark task's: {exc}"
                break
        received_at = time.time()
        result.round_trip_s = received_at - sent_at
        result.stalled_s = round(sampler.stalled_seconds(sent_at, received_at), 3)
        if report is None:
            with contextlib.suppress(Exception):  # a lost backend cannot forget either
                async_result.forget()
            preroll = max(sent_at - 1.0, worker.ready_at or sent_at)
            result.timeline = tree_timeline(sampler.between(preroll, received_at), sent_at)
            return result
        retained = read_tree_memory(worker.pid)
        result.retained_rss_bytes, result.retained_pss_bytes = retained.rss, retained.pss
        result.tree_hwm_sum_bytes = tree_hwm_sum(pids)
        started, finished = report.started_at, report.finished_at
        window = sampler.between(started, finished)
        result.peak_rss_bytes = max([s.rss for s in window] + [baseline.rss, retained.rss])
        result.peak_pss_bytes = max([s.pss for s in window] + [baseline.pss, retained.pss])
        result.duration_s = report.wall_s
        result.task_peak_rss_bytes = report.peak_rss_bytes
        result.peak_method = report.peak_method
        result.subtasks_done = report.subtasks_done
        result.digest = report.digest
        result.max_os_threads = report.max_os_threads
        result.executing_pid = report.pid
        result.allocator = report.allocator
        derive_figures(result, params, scenario.pool, baseline, report)  # floor, excess, ...
        result.sampler = sampler.stats()
        # Up to a second of idle worker before the task (never its start-up ramp), led by the
        # baseline read just before sending, so the timeline starts from the idle worker.
        preroll = max(started - 1.0, worker.ready_at or started)
        samples = [s for s in sampler.between(preroll, received_at) if s.t > baseline.t]
        result.timeline = tree_timeline([baseline, *samples], started)
        if self.config.malloc_trim:
            self._release_free_memory(worker, result)
        if result.subtasks_done != params.subtasks:
            result.status = "failed"
            result.reason = f"{result.subtasks_done} of {params.subtasks} subtasks done"
        if self.config.targets_dir is not None:
            # The next run, or stopping the worker, replaces this run's gauges.
            result.scraped_by_prometheus = worker.wait_scraped(PROMETHEUS_SCRAPE_WAIT_S)
        return result
