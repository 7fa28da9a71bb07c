"""`membench run --app`: the user's task on a fresh worker per pool and concurrency, solo first
(the serial rate every other row is judged against), each tree sampled from outside."""

from __future__ import annotations

import contextlib
import secrets
import shutil
import signal
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from membench.descendants import Adopter
from membench.procfs import read_meminfo
from membench.results.model import AppRun
from membench.run.app.load import Load, drive
from membench.run.app.spec import AppSpec
from membench.run.app.worker import AppWorker, app_scenario
from membench.run.sampler import (
    TreeSampler,
    read_tree_memory,
    reset_tree_peaks,
    tree_hwm_sum,
    tree_timeline,
)
from membench.run.worker import WorkerFailed, WorkerOptions
from membench.stats import percentile
from membench.tempdirs import owned_tempdir
from membench.units import MIB

# Above this share of MemAvailable a planned row is refused after the solo run (--force runs it).
MEMORY_SHARE = 0.8


@dataclass
class AppPlan:
    spec: AppSpec
    pools: list[str]
    concurrencies: list[int]
    tasks: int
    task_timeout_s: float
    options: WorkerOptions = field(default_factory=WorkerOptions)
    force: bool = False
    sample_interval: float = 0.05

    def rows(self) -> list[tuple[str, int]]:
        """(pool, concurrency), solo -c 1 first: solo runs one task at a time whatever -c says."""
        rows = [("solo", 1)]
        for pool in self.pools:
            if pool != "solo":
                rows += [(pool, c) for c in self.concurrencies]
        return rows


def fill_row(row: AppRun, load: Load) -> None:
    """A row's figures from its load's runs; failed when runs failed or the worker died."""
    row.sent = load.sent
    row.outcomes = {k: v for k, v in load.outcomes.items() if v}
    row.errors = dict(load.errors.most_common())
    row.elapsed_s = load.elapsed_s()
    row.throughput_per_s = load.throughput()
    row.executing_pids = len(load.pids)
    if load.durations:
        row.duration_s = statistics.median(load.durations)
        row.duration_p90_s = percentile(load.durations, 90)
    if load.peaks:
        row.task_peak_rss_bytes = round(statistics.median(load.peaks))
        row.task_peak_max_rss_bytes = max(load.peaks)
        row.task_peak_runs = len(load.peaks)
    if load.window_peaks:
        row.window_peak_rss_bytes = round(statistics.median(load.window_peaks))
        row.window_peak_max_rss_bytes = max(load.window_peaks)
    if load.retained:
        row.task_retained_bytes = round(statistics.median(load.retained))
    bad = {k: v for k, v in row.outcomes.items() if k != "success"}
    if load.worker_died:
        row.status, row.reason = "failed", load.worker_died
    elif bad:
        row.status = "failed"
        row.reason = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in bad.items())


def planned_need(solo: AppRun, pool: str, concurrency: int) -> int | None:
    """An upper estimate of a row's memory from the solo row: the idle process plus its rise per
    task in flight (gevent, threads); prefork a whole solo process per child on top of it. The
    rise is the sampled PSS rise or, larger when a spike fell between samples, the exact one."""
    if solo.status != "ok" or solo.baseline_pss_bytes is None or solo.peak_pss_bytes is None:
        return None
    base = solo.baseline_pss_bytes
    rise = max(solo.peak_pss_bytes - base, 0)
    if solo.task_peak_max_rss_bytes is not None and solo.baseline_rss_bytes is not None:
        rise = max(rise, solo.task_peak_max_rss_bytes - solo.baseline_rss_bytes)
    peak = base + rise
    if pool == "solo":
        return peak
    if pool == "prefork":
        return base + concurrency * (base + rise)
    return base + concurrency * rise


ProgressFn = Callable[[str], None]


class AppRunner:
    """Runs the plan's rows on fresh workers of the user's app against one broker."""

    def __init__(
        self, plan: AppPlan, broker_url: str, progress: ProgressFn, adopter: Adopter | None
    ) -> None:
        from membench.broker import client_app

        self.plan = plan
        self.progress = progress
        self.adopter = adopter
        self.broker_url = broker_url
        self.client = client_app(broker_url)
        self.workdir = owned_tempdir("membench-apprun-")

    def run(self, rows: list[AppRun]) -> list[AppRun]:
        """Fill `rows` as it goes, so an interrupted run still has what was measured."""
        try:
            solo: AppRun | None = None
            plan = self.plan.rows()
            for number, (pool, concurrency) in enumerate(plan, 1):
                row = AppRun(app_scenario(pool, concurrency).name, pool, concurrency)
                row.tasks = self.plan.tasks
                rows.append(row)
                self.progress(f"[{number}/{len(plan)}] {pool} -c {concurrency}: starting")
                if solo is not None and self._refused(solo, row):
                    self.progress(f"[{number}/{len(plan)}] {row.scenario}: refused: {row.reason}")
                    continue
                self._one_row(row)
                solo = solo or row
                verdict = row.reason or f"{row.throughput_per_s or 0:.2f} tasks/s"
                self.progress(f"[{number}/{len(plan)}] {row.scenario}: {row.status}: {verdict}")
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return rows

    def _refused(self, solo: AppRun, row: AppRun) -> bool:
        need = planned_need(solo, row.pool, row.concurrency)
        row.planned_need_bytes = need
        available = read_meminfo()["MemAvailable"]
        if need is None or need <= MEMORY_SHARE * available or self.plan.force:
            return False
        row.status = "refused"
        row.reason = (
            f"would need ~{need / MIB:.0f} MB (from the solo run), over 80% of the "
            f"{available / MIB:.0f} MB available (--force runs it)"
        )
        return True

    def _one_row(self, row: AppRun) -> None:
        plan = self.plan
        worker = AppWorker(
            plan.spec.app,
            row.pool,
            row.concurrency,
            self.broker_url,
            self.workdir,
            secrets.token_hex(4),
            plan.options,
        )
        sampler: TreeSampler | None = None
        hung = False
        try:
            worker.start()
            sampler = TreeSampler(worker.pid, plan.sample_interval).start()
            try:
                worker.wait_ready(self.client)
            except WorkerFailed as exc:
                row.status, row.reason = "failed", str(exc)
                return
            row.worker_ready_s = worker.ready_s
            pids = worker.tree()
            row.processes = len(pids)
            reset_tree_peaks(pids)
            baseline = read_tree_memory(worker.pid)
            row.baseline_rss_bytes, row.baseline_pss_bytes = baseline.rss, baseline.pss
            load = drive(
                self.client,
                worker,
                plan.spec,
                plan.tasks,
                row.concurrency,
                plan.task_timeout_s,
                tick=lambda load: self.progress(
                    f"{row.scenario}: {load.finished}/{plan.tasks} done, {load.sent} sent"
                ),
            )
            hung = bool(load.outcomes["timed_out"])
            fill_row(row, load)
            ended = time.time()
            if worker.alive():
                retained = read_tree_memory(worker.pid)
                row.retained_rss_bytes = retained.rss
                row.tree_hwm_sum_bytes = tree_hwm_sum(worker.tree())
                if row.pool == "prefork":
                    row.child_recycles = worker.child_recycles()
            window = sampler.between(baseline.t, ended)
            row.peak_rss_bytes = max([s.rss for s in window] + [baseline.rss])
            row.peak_pss_bytes = max([s.pss for s in window] + [baseline.pss])
            row.stalled_s = round(sampler.stalled_seconds(baseline.t, ended), 3)
            row.sampler = sampler.stats()
            origin = load.first_sent_at or baseline.t
            row.timeline = tree_timeline([s for s in window if s.t >= baseline.t], origin)
        except BaseException:
            hung = True  # interrupted: a warm stop would wait for the runs in flight
            raise
        finally:
            if sampler is not None:
                sampler.stop()
            self._stop(worker, row, hung)

    def _stop(self, worker: AppWorker, row: AppRun, hung: bool) -> None:
        """A worker with a hung run is killed (a warm stop would wait for it); else stopped."""
        if worker.proc is None:
            return
        if hung or not worker.alive():
            worker.stop(timeout=5.0, sig=signal.SIGKILL)
        else:
            worker.stop()
        if self.adopter is not None:
            escaped = self.adopter.end_strays(stopped={worker.pid})
            row.escaped_processes = [e.describe() for e in escaped]
        with contextlib.suppress(OSError):
            shutil.rmtree(worker.records_dir)
