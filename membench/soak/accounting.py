"""The local soak's run-by-run account from the loadgen's log: every run with its outcome and
times, the skips, firings = success + failure + timeout + skipped with nothing missing, and for
each fault the runs it hit and when the stack recovered."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypedDict

from membench.loadgen.scheduler import SUMMARY_COLUMNS
from membench.soak.faults import Fault

_STAMP = r"(?P<stamp>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO membench\.loadgen: "
# loadgen/scheduler.py's two lines (its log format is membench/cli/loadgen.py's basicConfig).
RUN_LINE = re.compile(
    _STAMP + r"(?P<scenario>\w+) run (?P<run>\d+): (?P<outcome>success|failure|timeout) "
    r"in (?P<duration>[\d.]+) s(?: \(deadline [\d.]+ s\))?: (?P<detail>.*)$"
)
SKIP_LINE = re.compile(
    _STAMP + r"(?P<scenario>\w+): skipped (?P<n>\d+) firing\(s\), run (?P<run>\d+)"
)


class RunHit(TypedDict):
    """A run as the soak's report lists it under the fault that hit it."""

    scenario: str
    run: int
    outcome: str  # success, failure or timeout
    duration_s: float
    detail: str  # the log line's tail: the result, or why there is none


class LoggedRun(RunHit):
    """A run line of the loadgen's log, with its times (unix)."""

    start: float
    end: float


class LoggedSkip(TypedDict):
    """A skip line: `n` firings of `scenario` skipped at `at` (unix)."""

    scenario: str
    at: float
    n: int


def _unix(stamp: str) -> float:
    """asctime (local time, milliseconds) as unix time."""
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def parse_log(text: str) -> tuple[list[LoggedRun], list[LoggedSkip]]:
    """(runs, skips): each run with scenario, number, outcome, start, end, detail."""
    runs: list[LoggedRun] = []
    skips: list[LoggedSkip] = []
    for line in text.splitlines():
        if match := RUN_LINE.match(line):
            end, duration = _unix(match["stamp"]), float(match["duration"])
            runs.append(
                {
                    "scenario": match["scenario"],
                    "run": int(match["run"]),
                    "outcome": match["outcome"],
                    "start": end - duration,  # the line is logged when the run ends
                    "end": end,
                    "duration_s": duration,
                    "detail": match["detail"][:200],
                }
            )
        elif match := SKIP_LINE.match(line):
            skips.append(
                {"scenario": match["scenario"], "at": _unix(match["stamp"]), "n": int(match["n"])}
            )
    return runs, skips


def parse_summary(text: str) -> dict[str, dict[str, int]]:
    """The loadgen's exit table (format_summary): counts per scenario, taken after its stop."""
    table: dict[str, dict[str, int]] = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) == 6 and all(w.isdigit() for w in words[1:]):
            table[words[0]] = dict(zip(SUMMARY_COLUMNS, map(int, words[1:]), strict=True))
    return table


@dataclass
class ScenarioAccount:
    """One scenario's firings, counted from the log's lines and from the loadgen's counters."""

    firings: int
    log: dict[str, int]  # success, failure, timeout, skipped, runs
    loadgen: dict[str, int]  # its own counters at its stop (empty if it printed none)
    runs_without_outcome: list[int]
    runs_with_two_outcomes: list[int]
    log_matches_loadgen: bool

    @property
    def unaccounted(self) -> int:
        """Firings not counted exactly once: missing, doubled, or the two counts disagree."""
        counted = sum(v for k, v in self.log.items() if k != "runs")
        gap = abs(self.firings - counted)
        return max(len(self.runs_without_outcome) + len(self.runs_with_two_outcomes), gap)


def accounting(
    runs: list[LoggedRun], skips: list[LoggedSkip], summary: dict[str, dict[str, int]]
) -> dict[str, ScenarioAccount]:
    """Per scenario: firings = success + failure + timeout + skipped, from the log and from the
    loadgen's own counters, and which run numbers (1..fired) have no outcome line."""
    out: dict[str, ScenarioAccount] = {}
    for scenario in sorted({r["scenario"] for r in runs} | set(summary)):
        mine = [r for r in runs if r["scenario"] == scenario]
        counts = {o: sum(1 for r in mine if r["outcome"] == o) for o in SUMMARY_COLUMNS[1:4]}
        skipped = sum(s["n"] for s in skips if s["scenario"] == scenario)
        numbers = [r["run"] for r in mine]
        counted = summary.get(scenario, {})
        fired = counted.get("fired", len(mine))
        out[scenario] = ScenarioAccount(
            firings=fired + counted.get("skipped", skipped),
            log={**counts, "skipped": skipped, "runs": len(mine)},
            loadgen=counted,
            runs_without_outcome=sorted(set(range(1, fired + 1)) - set(numbers)),
            runs_with_two_outcomes=sorted({n for n in numbers if numbers.count(n) > 1}),
            log_matches_loadgen=bool(counted)
            and all(counted[k] == v for k, v in {**counts, "skipped": skipped}.items()),
        )
    return out


@dataclass
class FaultEffects:
    """What one fault did: the runs it hit, how each was counted, and when the stack recovered."""

    scenarios: list[str]
    recovered: bool
    recovery_s: float | None
    recovery_after_fault_end_s: float | None
    recovery_by_scenario_s: dict[str, float | None]
    runs_hit: list[RunHit] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)


def fault_effects(
    fault: Fault, runs: list[LoggedRun], skips: list[LoggedSkip], end: float
) -> FaultEffects:
    """The runs the fault hit (overlapping it until the stack recovered) and the recovery: the
    first success, per scenario it touches, of a run that started after the fault began and ended
    after it was over (for restart_prometheus: every worker target scraped up again)."""
    scenarios = [fault.scenario] if fault.scenario else sorted({r["scenario"] for r in runs})
    recovered: dict[str, float | None] = {}
    by_end = sorted(runs, key=lambda r: r["end"])
    for scenario in scenarios:
        first = next(
            (
                r
                for r in by_end
                if r["scenario"] == scenario
                and r["outcome"] == "success"
                and r["start"] >= fault.at - 0.05  # log stamps are to the millisecond
                and r["end"] > fault.ended_at
            ),
            None,
        )
        recovered[scenario] = first["end"] if first else None
    if fault.kind == "restart_prometheus":
        up = fault.targets_up_s
        until = fault.at + up if up is not None else None
    else:
        ends = [t for t in recovered.values() if t is not None]
        until = max(ends) if ends and len(ends) == len(recovered) else None
    window_end = until if until is not None else end
    hit = [
        RunHit(
            scenario=r["scenario"],
            run=r["run"],
            outcome=r["outcome"],
            duration_s=r["duration_s"],
            detail=r["detail"],
        )
        for r in runs
        if r["scenario"] in scenarios and r["start"] < window_end and r["end"] > fault.at
    ]
    outcomes: dict[str, int] = {}
    for r in hit:
        outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
    skipped = sum(
        s["n"] for s in skips if s["scenario"] in scenarios and fault.at <= s["at"] <= window_end
    )
    return FaultEffects(
        scenarios=scenarios,
        recovered=until is not None,
        recovery_s=None if until is None else round(until - fault.at, 2),
        recovery_after_fault_end_s=None if until is None else round(until - fault.ended_at, 2),
        recovery_by_scenario_s={
            s: None if t is None else round(t - fault.at, 2) for s, t in recovered.items()
        },
        runs_hit=hit,
        outcomes={**outcomes, "skipped": skipped},
    )


def account(
    faults: list[Fault], log_text: str, loadgen_summary: str, end: float
) -> tuple[list[FaultEffects], dict[str, ScenarioAccount]]:
    """Each fault's effects and the accounting per scenario, from the loadgen's log and summary."""
    runs, skips = parse_log(log_text)
    effects = [fault_effects(f, runs, skips, end) for f in faults]
    return effects, accounting(runs, skips, parse_summary(loadgen_summary))
