"""Schedule files as a user writes them: the example, defaults and overrides, and every bad one
refused in one line naming the file, table and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from membench.loadgen.schedule import EXAMPLE_SCHEDULE, ScheduleError, load_schedule
from membench.loadgen.scheduler import ScenarioStats, format_summary
from membench.workers.params import BatchParams
from membench.workers.scenarios import SCENARIOS, SEED_SCENARIOS

EXAMPLE = EXAMPLE_SCHEDULE


def write(tmp_path: Path, text: str, name: str = "schedule.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ---- schedule files ----------------------------------------------------------------------------


def test_example_schedule_fires_all_four_scenarios_small_and_slow() -> None:
    schedule = load_schedule(EXAMPLE)
    assert [p.scenario for p in schedule.plans] == list(SEED_SCENARIOS)
    for plan in schedule.plans:
        assert (plan.period_s, plan.jitter_s) == (60.0, 5.0)
        assert (plan.params.subtasks, plan.params.size_mb) == (10, 5.0)
        assert plan.params.strategy == SCENARIOS[plan.scenario].strategy
        assert plan.queue_name == f"membench.{plan.scenario}"  # what `membench worker` consumes
        assert plan.effective_deadline_s >= 60


def test_defaults_apply_and_scenarios_override(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[defaults]
subtasks = 4
size_mb = 2
time = 0.1
period_s = 30

[scenarios.prefork_sequential]
hold_s = 0.3
payload = "records"
jitter_s = 2.5
deadline_s = 9
queue = "q.custom"

[scenarios.gevent_threads]
""",
    )
    seq, threads = load_schedule(path).plans
    assert seq.params == BatchParams(4, 2.0, 0.3, 4, "sequential", "records")
    assert (seq.period_s, seq.jitter_s, seq.effective_deadline_s) == (30.0, 2.5, 9.0)
    assert seq.queue_name == "q.custom"
    # `time` is the CLI's name for hold_s; workers comes from the built-in default (run's 4).
    assert threads.params == BatchParams(4, 2.0, 0.1, 4, "threads", "bytes")
    assert threads.jitter_s == 0.0 and threads.queue_name == "membench.gevent_threads"


SCENARIO = "[scenarios.gevent_greenlets]\n"
BAD_SCHEDULES = [
    ("malformed", "[defaults\nperiod_s = 1\n", ["invalid TOML", "line 1"]),
    ("unknown-scenario", "[scenarios.nope]\nperiod_s = 1\n", ["[scenarios.nope]", "'nope'"]),
    (
        "unknown-key",
        SCENARIO + "period_s = 1\ncolour = 1\n",
        ["[scenarios.gevent_greenlets] colour"],
    ),
    ("unknown-default", "[defaults]\nperod_s = 1\n" + SCENARIO, ["[defaults] perod_s"]),
    ("strategy-key", SCENARIO + "period_s = 1\nstrategy = 'x'\n", ["strategy", "scenario decides"]),
    ("top-level-key", "period_s = 1\n" + SCENARIO, ["period_s: unknown top-level key"]),
    ("no-scenarios", "[defaults]\nperiod_s = 1\n", ["[scenarios]"]),
    ("not-a-table", "[scenarios]\ngevent_greenlets = 1\n", ["[scenarios.gevent_greenlets]"]),
    ("period-missing", SCENARIO + "subtasks = 1\n", ["gevent_greenlets] period_s: is required"]),
    ("period-zero", SCENARIO + "period_s = 0\n", ["[scenarios.gevent_greenlets] period_s", "> 0"]),
    (
        "period-negative-default",
        "[defaults]\nperiod_s = -5\n" + SCENARIO,
        ["[scenarios.gevent_greenlets] period_s (from [defaults])", "-5"],
    ),
    ("period-nan", SCENARIO + "period_s = nan\n", ["gevent_greenlets] period_s", "nan"]),
    ("period-inf", SCENARIO + "period_s = inf\n", ["gevent_greenlets] period_s", "inf"]),
    ("period-string", SCENARIO + "period_s = '60'\n", ["gevent_greenlets] period_s", "'60'"]),
    ("period-bool", SCENARIO + "period_s = true\n", ["gevent_greenlets] period_s", "True"]),
    ("jitter-equal", SCENARIO + "period_s = 5\njitter_s = 5\n", ["jitter_s", "< period_s (5)"]),
    ("jitter-negative", SCENARIO + "period_s = 5\njitter_s = -1\n", ["jitter_s", ">= 0"]),
    ("deadline-zero", SCENARIO + "period_s = 5\ndeadline_s = 0\n", ["deadline_s", "> 0"]),
    ("subtasks-zero", SCENARIO + "period_s = 1\nsubtasks = 0\n", ["gevent_greenlets] subtasks"]),
    (
        "size-default",
        "[defaults]\nsize_mb = -1\n" + SCENARIO + "period_s = 1\n",
        ["[scenarios.gevent_greenlets] size_mb (from [defaults])"],
    ),
    ("payload", SCENARIO + "period_s = 1\npayload = 'json'\n", ["gevent_greenlets] payload"]),
    ("time-and-hold", SCENARIO + "period_s = 1\ntime = 1\nhold_s = 1\n", ["] time"]),
    ("queue-in-defaults", "[defaults]\nqueue = 'q'\n" + SCENARIO, ["[defaults] queue"]),
    (
        "queue-shared",
        "[defaults]\nperiod_s = 1\n[scenarios.gevent_greenlets]\nqueue = 'q'\n"
        "[scenarios.gevent_threads]\nqueue = 'q'\n",
        ["[scenarios.gevent_threads] queue", "gevent_greenlets"],
    ),
    ("queue-empty", SCENARIO + "period_s = 1\nqueue = ''\n", ["gevent_greenlets] queue"]),
]


@pytest.mark.parametrize(
    ("text", "expected"), [c[1:] for c in BAD_SCHEDULES], ids=[c[0] for c in BAD_SCHEDULES]
)
def test_bad_schedule_is_one_line_naming_file_and_key(
    tmp_path: Path, text: str, expected: list[str]
) -> None:
    path = write(tmp_path, text, "bad-schedule.toml")
    with pytest.raises(ScheduleError) as caught:
        load_schedule(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    for part in expected:
        assert part in message


def test_unreadable_schedule(tmp_path: Path) -> None:
    with pytest.raises(ScheduleError, match=r"missing\.toml: cannot read"):
        load_schedule(tmp_path / "missing.toml")
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ScheduleError, match="not UTF-8"):
        load_schedule(binary)


def test_summary_table() -> None:
    table = format_summary(
        {"gevent_greenlets": ScenarioStats(fired=5, success=3, failure=1, timeout=1, skipped=2)}
    )
    header, row = table.splitlines()
    assert header.split() == ["scenario", "fired", "success", "failure", "timeout", "skipped"]
    assert row.split() == ["gevent_greenlets", "5", "3", "1", "1", "2"]
