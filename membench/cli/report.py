"""`membench report --prometheus URL`: the seed's table and its explaining figures for the runs
Prometheus recorded in a time range, with report.json and one memory plot per approach.

Bad input, a bad URL or an unreachable Prometheus: one line naming the flag, exit 2, before any
query or file; a range with no runs: one line, exit 1.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from membench.cli.options import (
    EXIT_FAILED_RUNS,
    EXIT_OK,
    UsageError,
    prometheus_window,
    reachable_prometheus,
    writable_dir,
)

if TYPE_CHECKING:
    from membench.query.client import Query
    from membench.query.report import Report

EXIT_NO_RUNS = EXIT_FAILED_RUNS
NOTES = (
    "MB (2^20 bytes); the runs Prometheus first saw in the range. Approach: as in membench run's "
    "table.\n"
    "Peak Memory: highest worker-tree RSS sum Prometheus recorded (scenario:membench_tree_rss_bytes"
    ":sum), one value\n"
    "per rule evaluation: a spike between two scrapes is missed (membench run samples every "
    "50 ms).\n"
    "Execution Time: median wall time of the runs (membench_task_last_duration_seconds, one value "
    "per run).\n"
    "Peak PSS: the same without double-counting shared pages. VmHWM: exact kernel peak of the "
    "process that ran\n"
    "each run (membench_task_peak_rss_bytes), median and max. p50/p90: the duration histogram's "
    "(within buckets).\n"
    "Runs: steps of membench_task_runs_total, every outcome. Seen: runs whose gauges Prometheus "
    "scraped."
)


def _outcomes(outcomes: dict[str, int]) -> str:
    return ", ".join(f"{n} {o}" for o, n in sorted(outcomes.items(), key=lambda i: -i[1])) or "-"


def format_report(report: Report) -> str:
    """The seed's table (its layout, from membench run), then what Prometheus adds."""
    from membench.run.records import format_seconds
    from membench.run.report import seed_table
    from membench.units import format_mb

    found = report.approaches
    lines = seed_table([(a.label, a.peak_rss_bytes, a.execution_time_s) for a in found])
    header = (
        f"{'From Prometheus (MB; s)':<38}{'Peak PSS':>10}{'VmHWM':>10}{'VmHWM max':>11}"
        f"{'p50':>7}{'p90':>7}{'Runs':>6}{'Seen':>6}  Outcomes"
    )
    lines += ["", header, "-" * (len(header) + 10)]
    for a in found:
        peaks = a.task_peaks or {}
        lines.append(
            f"{a.label:<38}{format_mb(a.peak_pss_bytes):>10}{format_mb(peaks.get('median')):>10}"
            f"{format_mb(peaks.get('max')):>11}{format_seconds(a.quantiles_s.get('p50')):>7}"
            f"{format_seconds(a.quantiles_s.get('p90')):>7}{a.total_runs:>6}{len(a.runs):>6}"
            f"  {_outcomes(a.outcomes)}"
        )
    window = report.window
    lines += ["", f"Range: {window.describe()} ({window.seconds} s), from {report.prometheus}."]
    unseen = [a.label for a in found if len(a.runs) < a.outcomes.get("success", 0)]
    if unseen:
        lines.append(
            "Prometheus missed the gauges of runs that ended within a scrape interval of the next "
            f"({', '.join(unseen) if len(unseen) < len(found) else 'every approach'}):\n"
            "Execution Time and VmHWM are over the Seen runs; Runs, "
            "Outcomes and p50/p90 count every run."
        )
    return "\n".join([*lines, NOTES])


def _show(entry: Query) -> None:
    """--show-queries: each query as it runs, ready to paste (instant ones carry their @ time)."""
    if entry["api"] == "query_range":
        print(
            f"# query_range start={entry['start']} end={entry['end']} step={entry['step']}s",
            file=sys.stderr,
        )
    print(entry["query"], file=sys.stderr)


@click.command("report")
@click.option(
    "--prometheus",
    "url",
    metavar="URL",
    help="Prometheus base URL: compose http://127.0.0.1:9090; `membench stack up` prints "
    "its own; Kubernetes: a port-forward [required]",
)
@click.option(
    "--last",
    metavar="DURATION",
    help="the range ending at --end (default now): a Prometheus duration, 30m, 2h, 1d, 1h30m "
    "[default: 1h]",
)
@click.option(
    "--start", metavar="TIME", help="range start: RFC3339 (2024-05-01T12:00:00Z) or unix s"
)
@click.option("--end", metavar="TIME", help="range end: RFC3339 or unix seconds [default: now]")
@click.option(
    "--scenarios",
    help="comma list of scenarios (or all) [default: every scenario with runs in the range]",
)
@click.option(
    "--output",
    default=".",
    show_default=True,
    help="directory for report.json and memory_<scenario>.png",
)
@click.option(
    "--show-queries",
    is_flag=True,
    help="print every PromQL query to stderr as it runs, to paste into Prometheus or Grafana",
)
def command(
    url: str | None,
    last: str | None,
    start: str | None,
    end: str | None,
    scenarios: str | None,
    output: str,
    show_queries: bool,
) -> int:
    """The runs Prometheus recorded in a time range: the seed's table (peak memory, execution
    time per approach) and the figures that explain it; exit 1 if the range holds no run."""
    from membench.exporter import names as rule_names
    from membench.query.client import PrometheusError
    from membench.workers.scenarios import parse_scenarios

    if not url:
        # click's own "missing option" error has no message to put on our one line.
        raise UsageError("--prometheus: required, the Prometheus base URL")
    window = prometheus_window(url, last, start, end)
    try:
        names = [s.name for s in parse_scenarios(scenarios)] if scenarios else None
    except ValueError as exc:
        raise UsageError(f"--scenarios: {exc}") from None
    client = reachable_prometheus(url, _show if show_queries else None)
    directory = writable_dir("--output", Path(output))

    from membench.query.report import collect, write_report

    try:
        report = collect(client, window, names)
    except PrometheusError as exc:
        print(f"membench report: error: {exc}", file=sys.stderr)
        return EXIT_FAILED_RUNS
    if not report.approaches:
        which = ", ".join(names) if names else "any scenario"
        print(
            f"membench report: no runs of {which} in {window.describe()} at {client.shown}",
            file=sys.stderr,
        )
        return EXIT_NO_RUNS
    print(format_report(report))
    if not any(a.peak_rss_bytes is not None for a in report.approaches):
        print(
            f"membench report: warning: no samples of {rule_names.RULE_TREE_RSS_SUM}: are "
            "prometheus/rules/membench.rules.yml loaded?",
            file=sys.stderr,
        )
    written = write_report(report, directory)
    print(f"\nWrote {written[0]} and {len(written) - 1} plot(s) in {directory}")
    return EXIT_OK
