"""The local soak's accounting as pure logic (membench/soak/accounting.py): the loadgen log read
run by run, firings accounted with nothing missing, the runs a fault hit and its recovery."""

from __future__ import annotations

from datetime import datetime

import pytest

from membench.loadgen.scheduler import ScenarioStats, format_summary
from membench.soak.accounting import accounting, fault_effects, parse_log, parse_summary
from membench.soak.faults import Fault

T0 = datetime(2026, 12, 1, 23, 0, 0).timestamp()


def _line(at: float, message: str) -> str:
    stamp = datetime.fromtimestamp(T0 + at)
    millis = stamp.microsecond // 1000
    return f"{stamp:%Y-%m-%d %H:%M:%S},{millis:03d} INFO membench.loadgen: {message}"


LOG = "\n".join(
    [
        _line(0.0, "firing prefork_sequential every 6 s from x.toml"),
        _line(1.6, "prefork_sequential run 1: success in 1.60 s: task 1.59 s"),
        _line(7.8, "prefork_sequential run 2: failure in 0.80 s: WorkerLostError: signal 9"),
        _line(
            12.0, "prefork_sequential: skipped 1 firing(s), run 3 in flight (1 skipped in total)"
        ),
        _line(13.0, "celery noise that is not a run line"),
        _line(33.0, "prefork_sequential run 3: timeout in 20.00 s (deadline 20.0 s): no result"),
        _line(37.6, "prefork_sequential run 4: success in 1.60 s: task 1.59 s"),
    ]
)
STATS = {"prefork_sequential": ScenarioStats(fired=4, success=2, failure=1, timeout=1, skipped=1)}


def test_every_run_line_is_read_with_its_start_end_and_outcome() -> None:
    runs, skips = parse_log(LOG)
    assert [(r["run"], r["outcome"]) for r in runs] == [
        (1, "success"),
        (2, "failure"),
        (3, "timeout"),
        (4, "success"),
    ]
    assert runs[2]["start"] == pytest.approx(T0 + 13.0) and runs[2]["end"] == pytest.approx(T0 + 33)
    assert runs[1]["detail"] == "WorkerLostError: signal 9"
    assert skips == [{"scenario": "prefork_sequential", "at": pytest.approx(T0 + 12), "n": 1}]


def test_the_loadgen_summary_is_read_back_from_its_own_format() -> None:
    counts = parse_summary("some log line\n" + format_summary(STATS) + "\n")
    assert counts == {
        "prefork_sequential": {"fired": 4, "success": 2, "failure": 1, "timeout": 1, "skipped": 1}
    }


def test_firings_are_success_failure_timeout_and_skipped_with_nothing_missing() -> None:
    runs, skips = parse_log(LOG)
    account = accounting(runs, skips, parse_summary(format_summary(STATS)))["prefork_sequential"]
    assert account.firings == 5 == 2 + 1 + 1 + 1
    assert account.log_matches_loadgen and account.runs_without_outcome == []
    assert account.unaccounted == 0


def test_a_run_without_an_outcome_line_or_a_count_mismatch_is_reported() -> None:
    runs, skips = parse_log(LOG)
    runs = [r for r in runs if r["run"] != 3]  # a run the log lost
    account = accounting(runs, skips, parse_summary(format_summary(STATS)))["prefork_sequential"]
    assert account.runs_without_outcome == [3] and not account.log_matches_loadgen
    assert account.unaccounted == 1


def test_a_fault_lists_the_runs_it_hit_and_recovers_at_the_first_later_success() -> None:
    runs, skips = parse_log(LOG)
    fault = Fault("kill_prefork_child", "prefork_sequential", "", T0 + 7.5, T0 + 7.5, [])
    effects = fault_effects(fault, runs, skips, T0 + 100)
    assert [r["run"] for r in effects.runs_hit] == [2, 3, 4]
    assert effects.outcomes == {"failure": 1, "timeout": 1, "success": 1, "skipped": 1}
    assert effects.recovered and effects.recovery_s == pytest.approx(30.1)


def test_a_fault_never_recovered_from_says_so() -> None:
    runs, skips = parse_log(LOG)
    fault = Fault("kill_prefork_child", "prefork_sequential", "", T0 + 36.5, T0 + 36.5, [])
    effects = fault_effects(fault, runs, skips, T0 + 100)
    assert not effects.recovered and effects.recovery_s is None
