"""The soak's printed report: the verdict and why, the accounting of every firing (local soak),
growth per worker process with its interval, per approach, the steps, per task, churn, OOM kills,
the series count and the faults."""

from __future__ import annotations

import math

from membench.query.timerange import rfc3339
from membench.soak.analysis import Analysis
from membench.soak.growth import Growth
from membench.soak.local import LocalRun
from membench.soak.result import SoakResult


def _f(value: float | None, spec: str) -> str:
    width = int(spec.split(".")[0].lstrip("+") or 0)
    return f"{value:{spec}}" if value is not None else f"{'-':>{width}}"


def duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _growth_row(name: str, g: Growth, width: int) -> str:
    half = None
    if g.mb_per_hour is not None and g.high_mb_per_hour is not None:
        half = g.high_mb_per_hour - g.mb_per_hour
    return (
        f"{name:<{width}}{_f(g.mb_per_hour, '9.2f')}{_f(half, '9.2f')}"
        f"{_f(g.low_mb_per_hour, '9.2f')}{_f(g.high_mb_per_hour, '9.2f')}{g.points:>8}"
        f"{g.segments:>5}{_f(g.noise_mb, '9.3f')}{duration(g.seconds_to_resolve):>8}"
        f"  {g.status}"
    )


def _accounting(local: LocalRun) -> list[str]:
    lines = [
        "ACCOUNTING: firings = success + failure + timeout + skipped (from the loadgen's log, and",
        "its own counters at its stop, which must agree); missing / twice = run numbers with no",
        "outcome line / with two",
        "",
        f"{'scenario':<20}{'firings':>8}{'success':>9}{'failure':>9}{'timeout':>9}{'skipped':>9}"
        f"{'missing':>9}{'twice':>7}{'log = loadgen':>15}",
    ]
    for scenario, a in local.accounting.items():
        log = a.log
        lines.append(
            f"{scenario:<20}{a.firings:>8}{log['success']:>9}{log['failure']:>9}"
            f"{log['timeout']:>9}{log['skipped']:>9}{len(a.runs_without_outcome):>9}"
            f"{len(a.runs_with_two_outcomes):>7}{'yes' if a.log_matches_loadgen else 'NO':>15}"
        )
    return lines


def _approaches(analysis: Analysis, width: int) -> list[str]:
    """Per scenario label: the tree's growth, the sum of its processes' (errors in quadrature)."""
    by: dict[str, list[Growth]] = {}
    for p in analysis.processes:
        if p.labels.get("scenario"):
            by.setdefault(p.labels["scenario"], []).append(p.growth)
    lines = []
    for scenario, growths in sorted(by.items()):
        slopes = [g.mb_per_hour for g in growths]
        halves = [
            None
            if g.high_mb_per_hour is None or g.mb_per_hour is None
            else g.high_mb_per_hour - g.mb_per_hour
            for g in growths
        ]
        total = None if None in slopes else sum(s or 0.0 for s in slopes)
        half = None if None in halves else math.sqrt(sum((h or 0.0) ** 2 for h in halves))
        lines.append(f"{scenario + ' (tree)':<{width}}{_f(total, '9.2f')}{_f(half, '9.2f')}")
    return lines


def _faults(local: LocalRun) -> list[str]:
    lines = [
        "FAULTS (recovery: first successful run that began after the fault and ended after it was",
        "over; restart_prometheus: every worker target scraped up again)",
        "",
        f"{'t (s)':>7}  {'fault':<19}{'pids':<15}{'mid-task':>9}{'recovery s':>11}  runs hit",
    ]
    for fault, effect in zip(local.faults, local.fault_effects, strict=False):
        counted = ", ".join(f"{n} {o}" for o, n in effect.outcomes.items() if n) or "none"
        recovery = _f(effect.recovery_s, "11.2f") if effect.recovered else "      never"
        mid = "-" if fault.mid_task is None else ("yes" if fault.mid_task else "no")
        pids = ",".join(map(str, fault.pids))[:14]
        error = f"; ERROR {fault.error}" if fault.error else ""
        lines.append(
            f"{fault.at - local.started:7.0f}  {fault.kind:<19}{pids:<15}{mid:>9}{recovery}  "
            f"{counted}{error}"
        )
        for run in effect.runs_hit:
            if run["outcome"] != "success":
                lines.append(
                    f"{'':9}{run['scenario']} run {run['run']}: {run['outcome']} "
                    f"({run['duration_s']:.2f} s): {run['detail'][:70]}"
                )
    return lines


def _tasks(analysis: Analysis, width: int) -> list[str]:
    header = f"{'task':<{width}}{'MB/h':>9}{'+-95%':>9}{'KiB/run':>9}  runs by outcome"
    lines = [
        "PER TASK: memory each task keeps (membench_task_retained_bytes, RSS after - before its",
        "exact runs, summed per worker; a slope within segments cut at replacements)",
        "",
        header,
    ]
    for t in analysis.tasks:
        g = t.retained
        half = None
        if g is not None and g.high_mb_per_hour is not None and g.mb_per_hour is not None:
            half = g.high_mb_per_hour - g.mb_per_hour
        runs = ", ".join(f"{n} {o}" for o, n in t.runs.items() if n) or "-"
        lines.append(
            f"{t.task:<{width}}{_f(g.mb_per_hour if g else None, '9.2f')}{_f(half, '9.2f')}"
            f"{_f(t.retained_per_run_kib, '9.1f')}  {runs}"
        )
    return lines


def format_result(result: SoakResult) -> str:
    thresholds, verdict, analysis = result.thresholds, result.verdict, result.analysis
    limit = thresholds.max_growth_mb_per_hour
    lines = [
        f"SOAK VERDICT: {verdict.status.upper()} (--max-growth {limit:g} MB/h per worker "
        f"process, --max-lost {thresholds.max_lost})",
        *(f"  {reason}" for reason in verdict.reasons),
    ]
    if verdict.status == "inconclusive":
        need = duration(verdict.seconds_to_resolve)
        lines.append(
            f"  too short to call: at the noise measured, resolving "
            f"{thresholds.max_growth_mb_per_hour:g} MB/h needs about {need} of samples after "
            "warm-up (exit 1 unless --allow-inconclusive)"
        )
    if not result.complete:
        lines.append(f"  incomplete: {result.error}; the figures cover what was measured")
    if result.local is not None and result.local.accounting:
        lines += ["", *_accounting(result.local)]
    if analysis is None:
        return "\n".join(lines)
    width = max([30, *(len(p.name) + 2 for p in analysis.processes)])
    task_width = max([30, *(len(t.task) + 2 for t in analysis.tasks)])
    lines += [
        "",
        "GROWTH PER WORKER PROCESS: least-squares slope of its idle RSS (scrapes with no task",
        "running), pooled over segments cut at replacements and faults, warm-up left out; the",
        "interval from the residual noise (autocorrelation-corrected); need = soak length that",
        "resolves --max-growth at that noise",
        "",
        f"{'process':<{width}}{'MB/h':>9}{'+-95%':>9}{'low':>9}{'high':>9}{'samples':>8}"
        f"{'segs':>5}{'noise MB':>9}{'need':>8}  status",
        *(_growth_row(p.name, p.growth, width) for p in analysis.processes),
        *_approaches(analysis, width),
    ]
    steps = [(p.name, s) for p in analysis.processes for s in p.steps]
    if steps:
        lines += ["", "STEPS (level jumps between segments, MB: reported as steps, not as slopes)"]
        lines += [
            f"  t={s.at - analysis.start:7.0f}s  {name:<{width}}{_f(s.mb, '+8.2f')}  {s.cause}"
            for name, s in steps
        ]
    if analysis.tasks:
        lines += ["", *_tasks(analysis, task_width)]
    recycles = ", ".join(f"{n} {r}" for r, n in analysis.recycles.items()) or "none"
    series = analysis.series
    lines += [
        "",
        f"CHURN: {analysis.replacements} process(es) replaced; prefork child recycles: {recycles}; "
        f"OOM kills: {analysis.oom_kills}; runs lost: {analysis.lost_runs}",
        f'SERIES count({{__name__=~"membench_.*"}}): start {_f(series.start, ".0f")}, end '
        f"{_f(series.end, '.0f')}, min {_f(series.low, '.0f')}, max {_f(series.high, '.0f')}",
    ]
    if result.local is not None and result.local.faults:
        lines += ["", *_faults(result.local)]
    lines += [
        "",
        f"Window: {rfc3339(analysis.start)} to {rfc3339(analysis.end)} "
        f"({duration(analysis.end - analysis.start)}), from {analysis.prometheus}. "
        "MB = 2^20 bytes.",
    ]
    return "\n".join(lines)
