"""Sizing from a run's figures: the memory (PSS) a worker needs at concurrency N, and a prefork
--max-memory-per-child (KiB) under which Celery would not recycle a child after every task."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass

from membench.results.model import ApproachSizing, BenchmarkScenario, RunResult, Sizing
from membench.units import KIB, format_mb

# Over the largest child peak any run saw: run-to-run spread, and a replacement child forked
# later from a parent that has grown meanwhile. docs/sizing.md. Percent: integer arithmetic.
THRESHOLD_MARGIN_PERCENT = 10


@dataclass(frozen=True, slots=True)
class RunFigures:
    """What one successful measured run recorded that sizing needs (results.json run, bytes)."""

    baseline_rss: int
    baseline_pss: int
    peak_pss: int
    task_peak_rss: int  # VmHWM of the process that ran the task, over the task
    tree_hwm_sum: int  # every process's VmHWM since the runner reset it, summed
    processes: int
    exact: bool  # peak_method "vmhwm": the HWM figures are the task's own, not the lifetime's

    @classmethod
    def of(cls, run: RunResult) -> RunFigures | None:
        """The figures of a successful measured run; None for failed, warmup or partial runs."""
        if run.status != "ok" or run.warmup:
            return None
        if (
            run.baseline_rss_bytes is None
            or run.baseline_pss_bytes is None
            or run.peak_pss_bytes is None
            or run.task_peak_rss_bytes is None
            or run.tree_hwm_sum_bytes is None
            or run.processes is None
        ):
            return None
        return cls(
            baseline_rss=run.baseline_rss_bytes,
            baseline_pss=run.baseline_pss_bytes,
            peak_pss=run.peak_pss_bytes,
            task_peak_rss=run.task_peak_rss_bytes,
            tree_hwm_sum=run.tree_hwm_sum_bytes,
            processes=run.processes,
            exact=run.peak_method == "vmhwm",
        )

    @property
    def rise(self) -> int:
        """What the task added to the tree: its PSS over the baseline (which counts pages a
        prefork child un-shares by writing them) or, exact only, the RSS the kernel's
        high-water marks saw (which catches spikes between samples), whichever is larger."""
        pss = self.peak_pss - self.baseline_pss
        hwm = self.tree_hwm_sum - self.baseline_rss if self.exact else 0
        return max(pss, hwm, 0)


@dataclass(frozen=True, slots=True)
class Estimate:
    """One run's terms: need(N) = fixed + tasks_in_flight(N) x per_task (bytes of PSS)."""

    fixed: int  # prefork: the parent, with the pages it shares with its children; else the
    # idle process
    per_task: int  # prefork: an idle child's PSS + the task's rise; else the task's rise
    rise: int
    child_pss: int | None = None  # prefork only
    child_peak_rss: int | None = None  # prefork: the child's ru_maxrss after a task


def estimate(run: RunFigures, pool: str) -> Estimate | None:
    """The sizing terms of one run on `pool`; None where they cannot be told apart (prefork
    needs the exact peaks to find the child's RSS in the tree's sums)."""
    rise = run.rise
    if pool != "prefork":
        return Estimate(fixed=run.baseline_pss, per_task=rise, rise=rise)
    children = run.processes - 1
    if not run.exact or children < 1 or run.baseline_rss <= 0:
        return None
    # Sums over the tree only: a child's RSS before the task is its exact task peak less the
    # tree's rise (every process's VmHWM was reset to its RSS before the task), and its share
    # of the tree's PSS is taken as its share of the tree's RSS.
    child_rss = run.task_peak_rss - (run.tree_hwm_sum - run.baseline_rss)
    child_pss = round(run.baseline_pss * child_rss / run.baseline_rss)
    parent_rss = run.baseline_rss - children * child_rss
    return Estimate(
        fixed=run.baseline_pss - children * child_pss,
        per_task=child_pss + rise,
        rise=rise,
        child_pss=child_pss,
        # A forked child's RSS starts near its parent's (the page tables are copied), so its
        # lifetime peak is at least that even before any task.
        child_peak_rss=max(run.task_peak_rss, parent_rss),
    )


def tasks_in_flight(pool: str, concurrency: int) -> int:
    """How many tasks a worker of `pool` runs at once at `concurrency`: solo runs one."""
    return 1 if pool == "solo" else concurrency


def threshold_kib(child_peak_rss: int, margin_percent: int = THRESHOLD_MARGIN_PERCENT) -> int:
    """--max-memory-per-child in KiB (Celery's unit) a child peaking at `child_peak_rss` stays
    under: Celery recycles a child whose ru_maxrss is *over* the value after a task."""
    return -(-child_peak_rss * (100 + margin_percent) // (100 * KIB))  # rounded up


def size_approach(scenario: BenchmarkScenario, concurrency: int) -> ApproachSizing:
    """Sizing at `concurrency` from an approach's runs: medians of each run's terms; the
    threshold from the largest child peak of any run."""
    pool = scenario.pool
    figures = [f for f in map(RunFigures.of, scenario.runs) if f is not None]
    estimates = [e for e in (estimate(f, pool) for f in figures) if e is not None]
    slots = tasks_in_flight(pool, concurrency)
    sized = ApproachSizing(
        scenario=scenario.scenario,
        approach=scenario.approach,
        pool=pool,
        concurrency=concurrency,
        tasks_in_flight=slots,
    )
    if not estimates:
        sized.note = (
            "no successful run with the exact task peak (VmHWM)" if figures else "no successful run"
        )
        return sized

    def median(values: list[int]) -> int:
        return round(statistics.median(values))

    peaks = [e.child_peak_rss for e in estimates if e.child_peak_rss is not None]
    children = [e.child_pss for e in estimates if e.child_pss is not None]
    sized.need_bytes = median([e.fixed + slots * e.per_task for e in estimates])
    sized.fixed_bytes = median([e.fixed for e in estimates])
    sized.per_task_bytes = median([e.per_task for e in estimates])
    sized.task_rise_bytes = median([e.rise for e in estimates])
    sized.child_pss_bytes = median(children) if children else None
    sized.child_peak_rss_bytes = max(peaks) if peaks else None
    sized.max_memory_per_child_kib = threshold_kib(max(peaks)) if peaks else None
    sized.runs = len(estimates)
    return sized


def sizing_entry(scenarios: Iterable[BenchmarkScenario], concurrency: int) -> Sizing:
    """results.json's `sizing`: per approach."""
    return Sizing(
        concurrency=concurrency,
        basis="pss",
        threshold_margin_percent=THRESHOLD_MARGIN_PERCENT,
        approaches=[size_approach(s, concurrency) for s in scenarios],
    )


def format_sizing(entry: Sizing) -> str:
    """The printed block: per approach, the memory needed at N and the recycling threshold."""
    n = entry.concurrency
    header = (
        f"{f'Sizing at --concurrency {n} (MB, PSS)':<38}{'Need':>10}{'Fixed':>10}"
        f"{'Per task':>10}{'Rise':>10}{'--max-memory-per-child':>24}"
    )
    lines = ["", header, "-" * len(header)]
    for a in entry.approaches:
        kib = a.max_memory_per_child_kib
        lines.append(
            f"{a.approach:<38}{format_mb(a.need_bytes):>10}{format_mb(a.fixed_bytes):>10}"
            f"{format_mb(a.per_task_bytes):>10}{format_mb(a.task_rise_bytes):>10}"
            f"{'-' if kib is None else f'{kib} KiB':>24}"
        )
    lines.append(
        "Need = Fixed + tasks in flight x Per task, shared pages counted once (PSS; a container's "
        "cgroup adds page cache).\nprefork: Fixed = the parent, Per task = an idle child + the "
        "task's rise; gevent/threads: one process,\nN tasks in flight each adding its rise; solo "
        "runs one. --max-memory-per-child (prefork, KiB): the child's\npeak RSS after a task "
        f"(Celery compares ru_maxrss), at least its parent's RSS, +{THRESHOLD_MARGIN_PERCENT}%. "
        "docs/sizing.md"
    )
    return "\n".join(lines)
