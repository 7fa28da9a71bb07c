"""What a benchmark leaves behind: the printed table, results.json and memory_comparison.png."""

from __future__ import annotations

import os
import platform
import statistics
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from membench.jsonfile import replaced_atomically
from membench.procfs import read_meminfo
from membench.results.model import (
    SCHEMA_VERSION,
    BenchmarkParameters,
    BenchmarkResults,
    Combination,
    Figure,
    Machine,
    Results,
    Summary,
)
from membench.run.compare import plotted_runs
from membench.run.records import RunConfig, ScenarioResult, format_seconds
from membench.run.sizing import sizing_entry
from membench.units import MIB, format_mb
from membench.workers.allocator import inherited_allocator_environment

RESULTS_FILE = "results.json"
MATRIX_FILE = "matrix.json"
PLOT_FILE = "memory_comparison.png"


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> Machine:
    libc, libc_version = platform.libc_ver()
    return Machine(
        cores=os.cpu_count(),
        memory_bytes=read_meminfo()["MemTotal"],
        kernel=platform.release(),
        machine=platform.machine(),
        libc=f"{libc} {libc_version}".strip(),
        python=platform.python_version(),
        celery=_version("celery"),
        gevent=_version("gevent"),
        billiard=_version("billiard"),
        redis_py=_version("redis"),
        celery_membench=_version("celery-membench"),
    )


def _sort_key(result: ScenarioResult) -> tuple[int, float]:
    peak = result.summary().peak_rss_bytes
    return (0, peak.median) if peak else (1, 0.0)


def _median(summary: Summary, key: str) -> float | None:
    figure: Figure | None = getattr(summary, key)
    return figure.median if figure else None


def _range_mb(figure: Figure | None) -> str:
    return f"{format_mb(figure.min)}-{format_mb(figure.max)}" if figure else "-"


def seed_table(rows: list[tuple[str, float | None, float | None]]) -> list[str]:
    """The seed's table in its layout: (approach, peak memory in bytes, execution time in s)."""
    rule = "=" * 80
    lines = [rule, "BENCHMARK RESULTS", rule]
    lines += [f"{'Approach':<38}{'Peak Memory (MB)':>18}{'Execution Time (s)':>20}", "-" * 80]
    lines += [
        f"{name:<38}{format_mb(peak):>18}{format_seconds(time):>20}" for name, peak, time in rows
    ]
    return [*lines, rule]


def format_table(results: list[ScenarioResult], runs: int, warmup: int = 0) -> str:
    """The seed's table, same columns and layout, then the figures a careful reader needs.

    Medians over successful measured runs (warmup runs excluded), sorted by peak memory.
    """
    ordered = sorted(results, key=_sort_key)
    lines = seed_table(
        [
            (r.approach, _median(r.summary(), "peak_rss_bytes"), _median(r.summary(), "duration_s"))
            for r in ordered
        ]
    )
    breakdown = (
        ("Baseline", "baseline_rss_bytes"),
        ("Floor", "floor_bytes"),
        ("Excess", "excess_rss_bytes"),
        ("Peak PSS", "peak_pss_bytes"),
        ("Exc. PSS", "excess_pss_bytes"),
        ("VmHWM", "task_peak_rss_bytes"),
        ("HWM sum", "tree_hwm_sum_bytes"),
        ("Retained", "retained_rss_bytes"),
        ("Trimmed", "trimmed_rss_bytes"),
    )
    header = f"{'Memory (MB, medians)':<38}" + "".join(f"{name:>10}" for name, _ in breakdown)
    lines += ["", header, "-" * len(header)]
    for result in ordered:
        summary = result.summary()
        cells = "".join(f"{format_mb(_median(summary, key)):>10}" for _, key in breakdown)
        lines.append(f"{result.approach:<38}{cells}")
    spread_header = (
        f"{'Spread over runs':<38}{'Peak min-max':>16}{'sd':>7}{'Time min-max':>14}{'sd':>7}  Runs"
    )
    lines += ["", spread_header, "-" * len(spread_header)]
    failures = []
    for result in ordered:
        summary = result.summary()
        peak, duration = summary.peak_rss_bytes, summary.duration_s
        time_range = f"{duration.min:.2f}-{duration.max:.2f}" if duration else "-"
        lines.append(
            f"{result.approach:<38}{_range_mb(peak):>16}"
            f"{format_mb(peak.stdev if peak else None):>7}{time_range:>14}"
            f"{format_seconds(duration.stdev if duration else None):>7}"
            f"  {len(result.ok_runs())}/{len(result.measured_runs())} ok"
        )
        failures += [
            f"  {result.approach} {'warmup' if r.warmup else 'run'} {r.run}: FAILED: {r.reason}"
            for r in result.runs
            if r.status != "ok"
        ]
    lines += failures
    warmed = f", after {warmup} warmup run(s) per scenario (not counted)" if warmup else ""
    lines.append(
        f"\nMB (2^20 bytes); medians over {runs} run(s){warmed}, each on a fresh worker unless "
        "--reuse-worker.\nPeak Memory: sampled peak of the worker tree's summed RSS (parent + "
        "pool children), as the seed measured.\nBaseline: tree RSS before the task. Floor: live "
        "data the approach must hold at once (min(workers, subtasks) x size; 1 x size when "
        "sequential).\nExcess: peak - baseline - floor, what the allocator and interpreter add. "
        "PSS: the same without double-counting pages\nprefork's parent and child share. VmHWM: "
        "exact kernel peak of the process that ran the task; HWM sum: summed over the tree.\n"
        "Retained: tree RSS once the result is back. Trimmed: retained after gc + malloc_trim "
        "(--malloc-trim)."
    )
    return "\n".join(lines + payload_notes(ordered))


def _median_of(result: ScenarioResult, key: str) -> float | None:
    values = [v for r in result.ok_runs() if (v := getattr(r, key)) is not None]
    return statistics.median(values) if values else None


def payload_notes(ordered: list[ScenarioResult]) -> list[str]:
    """What the footer adds for payloads that change its terms: numpy's concurrent temporaries,
    cpu-*'s CPU holds, user code's unknown floor."""
    runs = [r for result in ordered for r in result.ok_runs()]
    lines: list[str] = []
    if any(r.concurrent_temporaries_bytes is not None for r in runs):
        header = f"{'Concurrent temporaries (numpy)':<38}{'MB':>10}{'x size':>9}{'OS threads':>12}"
        lines += ["", header, "-" * len(header)]
        for result in ordered:
            temporaries, at_once = _median_of(result, "concurrent_temporaries_bytes"), None
            if temporaries is not None:
                at_once = f"{_median_of(result, 'temporaries_at_once'):.1f}"
            threads = _median_of(result, "max_os_threads")
            lines.append(
                f"{result.approach:<38}{format_mb(temporaries):>10}{at_once or '-':>9}"
                f"{'-' if threads is None else f'{threads:.0f}':>12}"
            )
        lines.append(
            "Peak (the tree's summed VmHWM) - baseline - floor, allocator excess included: np.std "
            "allocates x - mean, one data-sized\ntemporary per subtask; x size: how many at once. "
            "OS threads may each hold one at once (numpy frees the GIL); greenlets one at a time."
        )
    spent_s = [
        r.subtask_means["cpu_s"] for r in runs if r.subtask_means and "cpu_s" in r.subtask_means
    ]
    if spent_s:
        spent = statistics.median(spent_s)
        lines.append(
            f"\n--time is CPU seconds per subtask (cpu-*: median {spent:.2f} s spent per subtask): "
            "OS threads run numpy in parallel,\nPython one at a time (the GIL); greenlets never "
            "yield while computing: one subtask at a time, so their floor is 1 x size."
        )
    if runs and all(r.floor_bytes is None for r in runs):
        lines.append(
            "\nFloor and Excess '-': user code (--payload MODULE:FUNCTION) holds what it holds; "
            "its floor is unknown (results.json: null)."
        )
    return lines


def results_document(
    config: RunConfig,
    results: list[ScenarioResult],
    *,
    broker: str,
    command: list[str],
    started_at: float,
    complete: bool,
    sizing: int | None = None,
) -> BenchmarkResults:
    """`sizing`: the concurrency to size workers for (membench.run.sizing; default the run's)."""
    scenarios = [r.entry() for r in results]
    return BenchmarkResults(
        schema_version=SCHEMA_VERSION,
        complete=complete,
        command=command,
        started_at=iso_time(started_at),
        finished_at=iso_time(None),
        parameters=BenchmarkParameters(
            subtasks=config.subtasks,
            size_mb=config.size_mb,
            time_s=config.hold_s,
            workers=config.workers,
            concurrency=config.concurrency,
            runs=config.runs,
            warmup=config.warmup,
            payload=config.payload,
            payload_sha256=config.payload_sha256,
            scenarios=[s.name for s in config.scenarios],
            reuse_worker=config.reuse_worker,
            malloc=config.options.malloc,
            max_tasks_per_child=config.options.max_tasks_per_child,
            max_memory_per_child_kib=config.options.max_memory_per_child_kib,
            malloc_trim=config.malloc_trim,
            inherited_allocator_environment=inherited_allocator_environment(),
            sample_interval_s=config.sample_interval,
            broker=broker,
        ),
        machine=machine_info(),
        scenarios=scenarios,
        sizing=sizing_entry(scenarios, sizing or config.concurrency),
    )


def iso_time(epoch: float | None) -> str:
    """ISO 8601 in UTC of `epoch`, or of now."""
    moment = datetime.now(UTC) if epoch is None else datetime.fromtimestamp(epoch, UTC)
    return moment.isoformat()


def format_matrix_summary(combinations: list[Combination]) -> str:
    """One line per combination and approach: the figures that tell combinations apart."""
    header = (
        f"{'Combination':<34}{'Approach':<38}{'Peak':>9}{'Excess':>9}{'Retained':>10}"
        f"{'Trimmed':>9}{'Time (s)':>10}"
    )
    lines = ["MATRIX SUMMARY (MB, medians)", header, "-" * len(header)]
    for combination in combinations:
        for scenario in combination.scenarios:
            summary = scenario.summary
            lines.append(
                f"{combination.label:<34}{scenario.approach:<38}"
                f"{format_mb(_median(summary, 'peak_rss_bytes')):>9}"
                f"{format_mb(_median(summary, 'excess_rss_bytes')):>9}"
                f"{format_mb(_median(summary, 'retained_rss_bytes')):>10}"
                f"{format_mb(_median(summary, 'trimmed_rss_bytes')):>9}"
                f"{format_seconds(_median(summary, 'duration_s')):>10}"
            )
    return "\n".join(lines)


def plot_results(document: Results, path: Path) -> None:
    """Memory over time since task start, one line per approach (its median-peak measured run)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_rss, ax_pss) = plt.subplots(2, 1, figsize=(11, 8), sharex=True)
    durations = []
    for scenario, run in plotted_runs(document):
        t = run.timeline.t_s
        durations.append(max(t[-1], 1e-3))
        label = f"{scenario.approach} (peak {(run.peak_rss_bytes or 0) / MIB:.0f} MB)"
        ax_rss.plot(t, [v / MIB for v in run.timeline.rss_bytes], label=label)
        ax_pss.plot(t, [v / MIB for v in run.timeline.pss_bytes], label=scenario.approach)
    if isinstance(document, BenchmarkResults):
        params = document.parameters
        fig.suptitle(
            f"Celery worker memory: {params.subtasks} subtasks x {params.size_mb} MB, "
            f"{params.workers} workers, hold {params.time_s} s, payload {params.payload}"
        )
        ax_pss.set_xlabel("Time since task start (s)")
    else:  # membench run --app: the user's task, N in flight
        app = document.parameters
        fig.suptitle(f"Celery worker memory: {app.app} {app.task}, {app.tasks} runs")
        ax_pss.set_xlabel("Time since the first task was sent (s)")
    ax_rss.set_ylabel("Worker tree RSS (MB)")
    ax_pss.set_ylabel("Worker tree PSS (MB)")
    if durations and max(durations) > 10 * min(durations):
        # A sequential run can last 40x a concurrent one: on a linear axis the concurrent
        # approaches would be a vertical line at 0. Linear up to 1 s, logarithmic beyond.
        ax_pss.set_xscale("symlog", linthresh=1.0)
        ax_pss.set_xlabel("Time since task start (s; linear to 1 s, logarithmic beyond)")
    for ax in (ax_rss, ax_pss):
        ax.axvline(0, color="grey", linewidth=0.8, linestyle=":")
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # no line at all when every run failed
            ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    # Through a temporary file, as results.json: a full disk leaves the old plot or none, never
    # half a PNG.
    try:
        with replaced_atomically(path) as tmp:
            fig.savefig(tmp, dpi=120, format="png")
    finally:
        plt.close(fig)


def command_line() -> list[str]:
    """The command as typed with every password redacted, whatever word holds it: --broker URL,
    --broker=URL or any other (results.json gets shared)."""
    from membench.broker import redact

    return ["membench", *(redact(arg) for arg in sys.argv[1:])]
