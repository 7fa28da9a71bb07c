"""The two soaks end to end: figures, verdict, report, soak.json and plot; each returns the exit
code (verdict.py's, or 130 interrupted, 1 stopped by an error)."""

from __future__ import annotations

from pathlib import Path

from membench.query.client import Prometheus, PrometheusError
from membench.query.timerange import Window
from membench.soak.analysis import analyse
from membench.soak.local import Plan, run, say
from membench.soak.report import format_result
from membench.soak.result import SoakResult, machine, write
from membench.soak.verdict import EXIT_FAIL, EXIT_INTERRUPTED, Thresholds, decide


def _command_line() -> list[str]:
    from membench.run.report import command_line

    return command_line()


def _finish(result: SoakResult, directory: Path) -> None:
    print(format_result(result), flush=True)
    written = write(result, directory)
    say(f"wrote {', '.join(str(p) for p in written)}")


def run_remote(
    client: Prometheus, window: Window, warmup_s: float, thresholds: Thresholds, directory: Path
) -> int:
    """`membench soak --prometheus URL`: the verdict over the workers that Prometheus scraped."""
    try:
        analysis = analyse(client, window, thresholds.limit_bytes_per_s, warmup_s)
    except PrometheusError as exc:
        say(f"error: {exc}")
        return EXIT_FAIL
    verdict = decide(analysis.processes, analysis.lost_runs, analysis.oom_kills, thresholds)
    result = SoakResult(
        "prometheus", _command_line(), True, None, thresholds, verdict, analysis, None, machine()
    )
    _finish(result, directory)
    return verdict.exit_code(thresholds)


def run_local(plan: Plan, thresholds: Thresholds) -> int:
    """`membench soak`: the local stack soaked, its figures, accounting and verdict."""
    info = machine()
    local, analysis, error = run(plan, thresholds.limit_bytes_per_s)
    failures = local.failures()
    if analysis is None:
        failures.append("no figures: the stack's Prometheus could not be read")
    verdict = decide(
        analysis.processes if analysis else [],
        local.unaccounted,
        analysis.oom_kills if analysis else 0,
        thresholds,
        failures,
    )
    result = SoakResult(
        "local", _command_line(), error is None, error, thresholds, verdict, analysis, local, info
    )
    _finish(result, plan.output)
    if error is not None:
        return EXIT_INTERRUPTED if error.startswith("interrupted") else EXIT_FAIL
    return verdict.exit_code(thresholds)
