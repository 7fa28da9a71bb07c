"""`membench compare A.json B.json` and `membench plot results.json`: judge and check saved
results (membench.results reads them).

Pure file work (no broker, no worker, no celery); bad input is one line naming the file, exit 2.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from membench.units import MIB

# membench.results (and msgspec, of the bench extra) is imported where a file is read: the
# `membench` command builds its commands from this module in a base install too.
if TYPE_CHECKING:
    from membench.results.model import AppRun, Results, RunResult, Scenario, Summary
    from membench.results.model import Figure as SummaryFigure

DEFAULT_THRESHOLD_PCT = 10.0
EXIT_OK, EXIT_REGRESSION = 0, 1
# What compare judges, as (summary key, row label, unit divisor, decimals) for each approach;
# times get 3 decimals because sub-second tasks differ in the third.
FIGURES = (
    ("peak_rss_bytes", "Peak Memory (MB)", MIB, 2),
    ("duration_s", "Execution Time (s)", 1.0, 3),
)
REGRESSION, IMPROVEMENT = "REGRESSION", "improvement"
# Parameters whose difference is reported elsewhere (the scenarios only one side ran).
IGNORED_PARAMETERS = frozenset({"scenarios"})


def plotted_runs(document: Results) -> list[tuple[Scenario, RunResult | AppRun]]:
    """Per scenario, its median-peak successful measured run with a timeline, if any."""
    chosen: list[tuple[Scenario, RunResult | AppRun]] = []
    for scenario in document.scenarios:
        runs: list[RunResult | AppRun] = [
            r
            for r in scenario.runs
            if r.status == "ok" and not r.warmup and r.timeline.t_s and r.peak_rss_bytes
        ]
        if runs:
            runs.sort(key=lambda r: r.peak_rss_bytes or 0)
            chosen.append((scenario, runs[len(runs) // 2]))
    return chosen


def check_plottable(document: Results, path: Path) -> None:
    """The plot needs one successful measured run with a timeline; the types are the model's."""
    from membench.results.document import BadResults

    for scenario, run in plotted_runs(document):
        timeline = run.timeline
        if len({len(timeline.t_s), len(timeline.rss_bytes), len(timeline.pss_bytes)}) != 1:
            raise BadResults(
                f"{path}: {scenario.scenario} run {run.run}: timeline needs t_s, rss_bytes and "
                "pss_bytes of equal length"
            )
    if not plotted_runs(document):
        raise BadResults(f"{path}: no successful measured run with a timeline to plot")


# ---- judging a change ------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """One side's summary of one figure, in display units."""

    median: float
    low: float
    high: float
    n: int

    @classmethod
    def from_summary(cls, summary: Summary, key: str, unit: float) -> Figure | None:
        figure: SummaryFigure | None = getattr(summary, key)
        if figure is None:
            return None
        return cls(figure.median / unit, figure.min / unit, figure.max / unit, figure.n)


@dataclass(frozen=True)
class Change:
    label: str
    a: Figure | None
    b: Figure | None
    threshold: float
    digits: int = 2

    @property
    def delta(self) -> float | None:
        return None if self.a is None or self.b is None else self.b.median - self.a.median

    @property
    def percent(self) -> float | None:
        if self.a is None or self.delta is None:
            return None
        if self.a.median == 0:
            return 0.0 if self.delta == 0 else math.copysign(math.inf, self.delta)
        # Rounded so that 1.0 -> 1.1 s is a 10% change, not 10.000000000000009% > 10%.
        return round(self.delta / self.a.median * 100, 6)

    @property
    def verdict(self) -> str:
        """Significant only outside A's min-max AND beyond the threshold (the printed rule)."""
        if self.a is None or self.b is None or self.percent is None or self.delta is None:
            return "no data"
        if self.a.low <= self.b.median <= self.a.high:
            return "within A's spread"
        if abs(self.percent) <= self.threshold:
            return f"<= {self.threshold:g}%"
        return REGRESSION if self.delta > 0 else IMPROVEMENT


@dataclass(frozen=True)
class Comparison:
    scenario: str
    approach: str
    changes: tuple[Change, ...]


def compare_documents(
    a: Results, b: Results, threshold: float
) -> tuple[list[Comparison], list[str], list[str]]:
    """Comparisons for the scenarios both documents ran (A's order), and those only one ran."""
    b_by_name = {s.scenario: s for s in b.scenarios}
    a_names = [s.scenario for s in a.scenarios]
    comparisons = []
    for entry_a in a.scenarios:
        entry_b = b_by_name.get(entry_a.scenario)
        if entry_b is None:
            continue
        changes = tuple(
            Change(
                label,
                Figure.from_summary(entry_a.summary, key, unit),
                Figure.from_summary(entry_b.summary, key, unit),
                threshold,
                digits,
            )
            for key, label, unit, digits in FIGURES
        )
        # Different parameters give different labels ("8x5.0MB"): then only the name is true.
        same = entry_a.approach == entry_b.approach
        comparisons.append(
            Comparison(entry_a.scenario, entry_a.approach if same else entry_a.scenario, changes)
        )
    only_a = [n for n in a_names if n not in b_by_name]
    only_b = [n for n in b_by_name if n not in a_names]
    return comparisons, only_a, only_b


def differing_keys(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """`key A -> B` for every key whose value differs (a key one side lacks counts as null)."""
    out = []
    for key in sorted(set(a) | set(b)):
        if key in IGNORED_PARAMETERS:
            continue
        value_a, value_b = a.get(key), b.get(key)
        if value_a != value_b:
            out.append(f"{key} {json.dumps(value_a)} -> {json.dumps(value_b)}")
    return out


def _failed_runs(path: Path, document: Results) -> list[str]:
    notes = []
    for entry in document.scenarios:
        runs = [r for r in entry.runs if not r.warmup]
        failed = sum(1 for r in runs if r.status != "ok")
        if failed:
            notes.append(
                f"{path}: {entry.scenario}: {failed} of {len(runs)} measured run(s) failed "
                "(the summary counts only the successful ones)"
            )
    return notes


def warnings_for(
    path_a: Path,
    a: Results,
    path_b: Path,
    b: Results,
    only_a: list[str],
    only_b: list[str],
) -> list[str]:
    """Everything that makes the two documents less comparable than they look."""
    from membench.results.document import plain

    out = []
    if type(a) is not type(b):
        out.append("one run benchmarked the seed's scenarios, the other a user's task (--app)")
    params = differing_keys(plain(a.parameters), plain(b.parameters))
    if params:
        out.append("the runs had different parameters: " + "; ".join(params))
    machine = differing_keys(plain(a.machine), plain(b.machine))
    if machine:
        out.append("the runs were on different machines or versions: " + "; ".join(machine))
    for path, document in ((path_a, a), (path_b, b)):
        if not document.complete:
            out.append(f"{path}: incomplete (the run was interrupted)")
        out += _failed_runs(path, document)
    if only_a:
        out.append(f"only in A ({path_a}), not compared: {', '.join(only_a)}")
    if only_b:
        out.append(f"only in B ({path_b}), not compared: {', '.join(only_b)}")
    return out


# ---- the printed report ----------------------------------------------------------------------


def _signed(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:+.{digits}f}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f}%"


def _value(figure: Figure | None, digits: int) -> str:
    return "-" if figure is None else f"{figure.median:.{digits}f}"


def _spread(figure: Figure | None, digits: int) -> str:
    return "-" if figure is None else f"{figure.low:.{digits}f}-{figure.high:.{digits}f}"


def format_comparison(
    comparisons: list[Comparison], path_a: Path, path_b: Path, threshold: float
) -> str:
    header = (
        f"{'Approach / figure':<22}{'A':>9}{'B':>12}{'Change':>9}{'%':>9}"
        f"{'A min-max':>16}{'B min-max':>16}  Verdict"
    )
    rule = "=" * len(header)
    lines = [rule, f"COMPARISON  A: {path_a}  ->  B: {path_b}", rule, header, "-" * len(header)]
    for comparison in comparisons:
        lines.append(comparison.approach)
        for change in comparison.changes:
            lines.append(
                f"  {change.label:<20}{_value(change.a, change.digits):>9} ->"
                f"{_value(change.b, change.digits):>9}"
                f"{_signed(change.delta, change.digits):>9}{_percent(change.percent):>9}"
                f"{_spread(change.a, change.digits):>16}{_spread(change.b, change.digits):>16}"
                f"  {change.verdict}"
            )
    lines.append(rule)
    fewest = min(
        (c.a.n for comp in comparisons for c in comp.changes if c.a is not None), default=3
    )
    lines.append(
        "\nMedians over each side's successful measured runs (warmup runs excluded); MB = 2^20 "
        "bytes.\nPeak Memory: median sampled peak of the worker tree's summed RSS "
        "(summary.peak_rss_bytes).\nExecution Time: median task wall time (summary.duration_s). "
        "Change and % are B - A.\n"
        f"Significant: B's median lies outside A's min-max AND |change| > {threshold:g}%.\n"
        f"{REGRESSION}: a significant rise of peak memory or time (exit 1). {IMPROVEMENT}: a "
        "significant fall.\nOtherwise the verdict says why the change is not significant."
    )
    if fewest < 3:
        # With one or two runs A's min-max is (nearly) a point: the rule degrades to the threshold.
        lines.append(
            f"A has only {fewest:g} run(s) for some approach: its min-max hardly measures the "
            "noise, so mostly the threshold\ndecides. `membench run --runs 5` on both sides "
            "makes the verdict trustworthy."
        )
    return "\n".join(lines)


def verdict_line(comparisons: list[Comparison], threshold: float) -> str:
    regressions = [
        f"{comp.scenario} {change.label.split(' (')[0].lower()} {_percent(change.percent)}"
        for comp in comparisons
        for change in comp.changes
        if change.verdict == REGRESSION
    ]
    if not regressions:
        return f"\nNo significant regression beyond {threshold:g}%."
    return f"\n{len(regressions)} significant regression(s) beyond {threshold:g}%: " + ", ".join(
        regressions
    )
