"""What an --app run prints and writes: the table in the seed's style (sorted by peak memory),
what each pool did to the task in plain words, the sizing, and results.json (the same schema
`membench compare` and `membench plot` read)."""

from __future__ import annotations

from membench.results.model import (
    SCHEMA_VERSION,
    AppParameters,
    AppResults,
    AppRun,
    AppScenario,
    AppSizing,
    Figure,
    Summary,
    ThroughputVsSolo,
)
from membench.run.app.runner import AppPlan
from membench.run.app.sizing import serial_verdict, sizing_block
from membench.run.records import format_seconds
from membench.run.report import iso_time, machine_info
from membench.units import format_mb
from membench.workers.allocator import inherited_allocator_environment

# results.json summary figures of a row, so `membench compare` judges --app runs as others.
SUMMARY_KEYS = (
    "peak_rss_bytes",
    "peak_pss_bytes",
    "baseline_rss_bytes",
    "baseline_pss_bytes",
    "task_peak_rss_bytes",
    "retained_rss_bytes",
    "duration_s",
    "duration_p90_s",
    "throughput_per_s",
    "worker_ready_s",
)


def _approach(row: AppRun, task: str) -> str:
    return f"{row.pool} -c {row.concurrency} {task}"


def _sort_key(row: AppRun) -> tuple[int, float]:
    peak = row.peak_rss_bytes
    return (0, peak) if row.status != "refused" and peak is not None else (1, 0.0)


def _task_peak(row: AppRun) -> str:
    """Exact per-run peaks, median/max; else the shared windows' peaks, marked `*`."""
    if row.task_peak_rss_bytes is not None:
        return f"{format_mb(row.task_peak_rss_bytes)}/{format_mb(row.task_peak_max_rss_bytes)}"
    if row.window_peak_rss_bytes is not None:
        median, most = row.window_peak_rss_bytes, row.window_peak_max_rss_bytes
        return f"{format_mb(median)}/{format_mb(most)}*"
    return "-"


def _runs(row: AppRun) -> str:
    if not row.outcomes:
        return row.status
    ok = row.outcomes.get("success", 0)
    rest = " ".join(f"{v} {k}" for k, v in row.outcomes.items() if k != "success")
    return f"{ok} ok" + (f" {rest}" if rest else "")


def solo_rate(rows: list[AppRun]) -> float | None:
    solo = next((r for r in rows if r.pool == "solo" and r.status == "ok"), None)
    return solo.throughput_per_s if solo else None


def format_app_table(rows: list[AppRun], plan: AppPlan) -> str:
    spec = plan.spec
    ordered = sorted(rows, key=_sort_key)
    header = (
        f"{'Approach':<24}{'Peak RSS':>10}{'Peak PSS':>10}{'Task peak med/max':>19}"
        f"{'p50 (s)':>9}{'p90 (s)':>9}{'Tasks/s':>9}{'vs solo x N':>20}  Runs"
    )
    rule = "=" * len(header)
    call = f"{spec.task}(*{spec.args!r}, **{spec.kwargs!r})"
    lines = [rule, f"BENCHMARK RESULTS: {spec.app} {call}, {plan.tasks} tasks", rule, header]
    lines.append("-" * len(header))
    rate = solo_rate(rows)
    sentences: list[str] = []
    problems: list[str] = []
    for row in ordered:
        name = f"{row.pool} -c {row.concurrency}"
        if row.status == "refused":
            lines.append(f"{name:<24}{'refused':>10}")
            problems.append(f"  {name}: REFUSED: {row.reason}")
            continue
        cell, sentence = serial_verdict(row, rate)
        rate_cell = "-" if row.throughput_per_s is None else f"{row.throughput_per_s:.2f}"
        lines.append(
            f"{name:<24}{format_mb(row.peak_rss_bytes):>10}"
            f"{format_mb(row.peak_pss_bytes):>10}{_task_peak(row):>19}"
            f"{format_seconds(row.duration_s):>9}"
            f"{format_seconds(row.duration_p90_s):>9}{rate_cell:>9}{cell:>20}  {_runs(row)}"
        )
        if sentence:
            sentences.append(f"  {name}: {sentence}.")
        if row.status != "ok":
            problems.append(f"  {name}: FAILED: {row.reason}")
        problems += [f"  {name}: {n} x {error}" for error, n in row.errors.items()]
        problems += [f"  {name}: escaped and killed: {e}" for e in row.escaped_processes]
    lines.append(rule)
    if sentences:
        lines += ["", "What the pool did to this task:", *sentences]
    if problems:
        lines += ["", "Faults:", *problems]
    sizing_lines, _ = sizing_block(ordered)
    lines += sizing_lines
    lines.append(
        f"\nMB (2^20 bytes); one fresh worker per row, {plan.tasks} runs, N in flight at a time "
        "(N = -c; solo runs one).\nPeak RSS/PSS: sampled peak of the worker tree (parent + pool "
        "children) over all runs. Task peak: VmHWM of the process\nthat ran each run, median/max "
        "over runs with the process to itself (prefork, solo, a lone gevent/threads run);\n`*`: "
        "runs overlapped, the figure is the shared window's peak, not the run's own. p50/p90: run "
        "durations\nin the worker. Tasks/s: runs ended / (first send to last end). vs solo x N: "
        "tasks/s over solo's, of N possible."
    )
    return "\n".join(lines)


def app_results_document(
    plan: AppPlan,
    rows: list[AppRun],
    *,
    broker: str,
    command: list[str],
    started_at: float,
    complete: bool,
) -> AppResults:
    """results.json of an --app run: one scenario entry per pool and concurrency."""
    spec = plan.spec
    rate = solo_rate(rows)
    scenarios = []
    for row in rows:
        figures: dict[str, Figure] = {}
        for key in SUMMARY_KEYS:
            value = getattr(row, key)
            if row.status == "ok" and value is not None:
                figures[key] = Figure.of([value])
        cell, sentence = serial_verdict(row, rate)
        scenarios.append(
            AppScenario(
                scenario=row.scenario,
                approach=_approach(row, spec.task),
                pool=row.pool,
                strategy="app",
                concurrency=row.concurrency,
                summary=Summary(**figures),
                runs=[row],
                escaped_processes=row.escaped_processes,
                throughput_vs_solo=ThroughputVsSolo(
                    cell=cell, serial=cell.endswith(" serial"), in_plain_words=sentence or None
                ),
            )
        )
    _, sizing = sizing_block(rows)
    return AppResults(
        schema_version=SCHEMA_VERSION,
        complete=complete,
        command=command,
        started_at=iso_time(started_at),
        finished_at=iso_time(None),
        parameters=AppParameters(
            app=spec.app,
            task=spec.task,
            args=spec.args,
            kwargs=spec.kwargs,
            module_file=spec.module_file,
            module_sha256=spec.module_sha256,
            tasks=plan.tasks,
            pools=plan.pools,
            concurrency=plan.concurrencies,
            task_timeout_s=plan.task_timeout_s,
            malloc=plan.options.malloc,
            max_tasks_per_child=plan.options.max_tasks_per_child,
            max_memory_per_child_kib=plan.options.max_memory_per_child_kib,
            inherited_allocator_environment=inherited_allocator_environment(),
            sample_interval_s=plan.sample_interval,
            broker=broker,
        ),
        machine=machine_info(),
        scenarios=scenarios,
        sizing=AppSizing(basis="pss", rows=sizing, solo_rate_per_s=rate),
    )
