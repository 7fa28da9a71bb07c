"""`membench compare A.json B.json` and `membench plot results.json`: work on saved results.

Pure file work (no broker, no worker); bad input is one line naming the file, exit code 2.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from membench.files import MIB, UnreadableFile, read_regular_file

# membench.run.report (and through it celery) is imported inside load_results: the `membench`
# command imports this module to build its commands, and `membench worker` must start fast.

MB = 1024 * 1024
DEFAULT_THRESHOLD_PCT = 10.0
EXIT_OK, EXIT_REGRESSION = 0, 1
# What compare judges, as (summary key, row label, unit divisor, decimals) for each approach;
# times get 3 decimals because sub-second tasks differ in the third.
FIGURES = (
    ("peak_rss_bytes", "Peak Memory (MB)", MB, 2),
    ("duration_s", "Execution Time (s)", 1.0, 3),
)
REGRESSION, IMPROVEMENT = "REGRESSION", "improvement"
# Parameters whose difference is reported elsewhere (the scenarios only one side ran).
IGNORED_PARAMETERS = frozenset({"scenarios"})
# Keys added after schema 1 was published, with the value an older document means by omitting.
PARAMETER_DEFAULTS: dict[str, Any] = {"warmup": 0}


class BadResults(Exception):
    """A file that is not a usable results.json; the message names the file."""


# ---- reading results.json ------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    # bool is an int subclass; true/false in a figure means a broken document, not 1/0.
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# The most of a results.json read: a large --matrix run writes a few MiB.
RESULTS_LIMIT = 64 * MIB


def load_results(path: Path) -> dict[str, Any]:
    """The parsed document, if it is a results.json this version of membench reads."""
    from membench.run.report import SCHEMA_VERSION

    try:
        text = read_regular_file(path, RESULTS_LIMIT).decode()
    except FileNotFoundError:
        raise BadResults(f"{path}: no such file") from None
    except UnreadableFile as exc:
        raise BadResults(f"{path}: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise BadResults(f"{path}: cannot read: {reason}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadResults(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    except RecursionError:
        raise BadResults(f"{path}: not a results.json (nested too deeply to read)") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise BadResults(f"{path}: not a results.json ({exc})") from None
    if not isinstance(document, dict) or "schema_version" not in document:
        raise BadResults(f"{path}: not a membench results.json (no schema_version)")
    version = document["schema_version"]
    if version != SCHEMA_VERSION:
        raise BadResults(
            f"{path}: schema_version {version!r}, this membench reads {SCHEMA_VERSION}"
        )
    scenarios = document.get("scenarios")
    if not isinstance(scenarios, list):
        raise BadResults(f"{path}: 'scenarios' is missing or not a list")
    for key in ("parameters", "machine"):
        if not isinstance(document.get(key, {}), dict):
            raise BadResults(f"{path}: '{key}' is not an object")
    seen: set[str] = set()
    for i, entry in enumerate(scenarios):
        where = f"{path}: scenarios[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("scenario"), str):
            raise BadResults(f"{where} has no 'scenario' name")
        if entry["scenario"] in seen:
            raise BadResults(f"{where}: scenario {entry['scenario']!r} appears twice")
        seen.add(entry["scenario"])
        if not isinstance(entry.get("approach"), str):
            raise BadResults(f"{where} has no 'approach' label")
        if not isinstance(entry.get("summary"), dict):
            raise BadResults(f"{where} has no 'summary' object")
        if not isinstance(entry.get("runs", []), list):
            raise BadResults(f"{where}: 'runs' is not a list")
        for key, *_ in FIGURES:
            figure = entry["summary"].get(key)
            if figure is None:
                continue  # every run of that scenario failed: no figure, still a valid file
            if not isinstance(figure, dict) or not all(
                _is_number(figure.get(k)) for k in ("median", "min", "max", "n")
            ):
                raise BadResults(f"{where}: summary.{key} needs numeric median, min, max and n")
    return document


def check_plottable(document: dict[str, Any], path: Path) -> None:
    """What plot_results reads, checked up front so a broken file is one line, not a traceback."""
    parameters = document.get("parameters", {})
    wanted = ("subtasks", "size_mb", "workers", "time_s", "payload")
    if parameters.get("mode") == "app":  # membench run --app
        wanted = ("app", "task", "tasks")
    missing = [k for k in wanted if k not in parameters]
    if missing:
        raise BadResults(f"{path}: parameters lack {', '.join(missing)}")
    plottable = 0
    for i, entry in enumerate(document["scenarios"]):
        for j, run in enumerate(entry.get("runs", [])):
            where = f"{path}: scenarios[{i}].runs[{j}]"
            if not isinstance(run, dict) or not isinstance(run.get("timeline", {}), dict):
                raise BadResults(f"{where} is not a run object with a 'timeline' object")
            if "status" not in run or "timeline" not in run:
                raise BadResults(f"{where} lacks 'status' or 'timeline'")
            timeline = run["timeline"]
            if run["status"] != "ok" or run.get("warmup") or not timeline.get("t_s"):
                continue
            series = [timeline.get(k) for k in ("t_s", "rss_bytes", "pss_bytes")]
            if (
                not all(isinstance(s, list) and all(_is_number(v) for v in s) for s in series)
                or len({len(s) for s in series}) != 1
            ):
                raise BadResults(
                    f"{where}: timeline needs numeric t_s, rss_bytes, pss_bytes of equal length"
                )
            if not _is_number(run.get("peak_rss_bytes")):
                raise BadResults(f"{where}: peak_rss_bytes is not a number")
            plottable += 1
    if not plottable:
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
    def from_summary(cls, summary: dict[str, Any], key: str, unit: float) -> Figure | None:
        figure = summary.get(key)
        if figure is None:
            return None
        return cls(figure["median"] / unit, figure["min"] / unit, figure["max"] / unit, figure["n"])


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
    a: dict[str, Any], b: dict[str, Any], threshold: float
) -> tuple[list[Comparison], list[str], list[str]]:
    """Comparisons for the scenarios both documents ran (A's order), and those only one ran."""
    b_by_name = {s["scenario"]: s for s in b["scenarios"]}
    a_names = [s["scenario"] for s in a["scenarios"]]
    comparisons = []
    for entry_a in a["scenarios"]:
        entry_b = b_by_name.get(entry_a["scenario"])
        if entry_b is None:
            continue
        changes = tuple(
            Change(
                label,
                Figure.from_summary(entry_a["summary"], key, unit),
                Figure.from_summary(entry_b["summary"], key, unit),
                threshold,
                digits,
            )
            for key, label, unit, digits in FIGURES
        )
        # Different parameters give different labels ("8x5.0MB"): then only the name is true.
        same = entry_a["approach"] == entry_b["approach"]
        comparisons.append(
            Comparison(
                entry_a["scenario"], entry_a["approach"] if same else entry_a["scenario"], changes
            )
        )
    only_a = [n for n in a_names if n not in b_by_name]
    only_b = [n for n in b_by_name if n not in a_names]
    return comparisons, only_a, only_b


def differing_keys(a: dict[str, Any], b: dict[str, Any], defaults: dict[str, Any]) -> list[str]:
    """`key A -> B` for every key whose value differs (a missing key counts as its default)."""
    out = []
    for key in sorted(set(a) | set(b)):
        if key in IGNORED_PARAMETERS:
            continue
        value_a, value_b = a.get(key, defaults.get(key)), b.get(key, defaults.get(key))
        if value_a != value_b:
            out.append(f"{key} {json.dumps(value_a)} -> {json.dumps(value_b)}")
    return out


def _failed_runs(path: Path, document: dict[str, Any]) -> list[str]:
    notes = []
    for entry in document["scenarios"]:
        runs = [r for r in entry.get("runs", []) if isinstance(r, dict) and not r.get("warmup")]
        failed = sum(1 for r in runs if r.get("status") != "ok")
        if failed:
            notes.append(
                f"{path}: {entry['scenario']}: {failed} of {len(runs)} measured run(s) failed "
                "(the summary counts only the successful ones)"
            )
    return notes


def warnings_for(
    path_a: Path,
    a: dict[str, Any],
    path_b: Path,
    b: dict[str, Any],
    only_a: list[str],
    only_b: list[str],
) -> list[str]:
    """Everything that makes the two documents less comparable than they look."""
    out = []
    params = differing_keys(a.get("parameters", {}), b.get("parameters", {}), PARAMETER_DEFAULTS)
    if params:
        out.append("the runs had different parameters: " + "; ".join(params))
    machine = differing_keys(a.get("machine", {}), b.get("machine", {}), {})
    if machine:
        out.append("the runs were on different machines or versions: " + "; ".join(machine))
    for path, document in ((path_a, a), (path_b, b)):
        if document.get("complete") is False:
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
