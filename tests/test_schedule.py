"""loadgen/schedule.py: validating a schedule document, and reading one from a file."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from membench.loadgen.schedule import (
    BUILTIN_PARAMS,
    EXAMPLE_SCHEDULE,
    MAX_SECONDS,
    ScenarioPlan,
    Schedule,
    ScheduleError,
    load_schedule,
    parse_schedule,
)
from membench.workers.params import BatchParams
from membench.workers.scenarios import SCENARIOS

SOURCE = "sched.toml"


def parse(document: dict[str, Any]) -> Schedule:
    return parse_schedule(document, SOURCE)


def error(document: dict[str, Any]) -> str:
    with pytest.raises(ScheduleError) as caught:
        parse(document)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{SOURCE}: ")
    return message


def one(table: dict[str, Any], defaults: dict[str, Any] | None = None) -> ScenarioPlan:
    document: dict[str, Any] = {"scenarios": {"gevent_greenlets": table}}
    if defaults is not None:
        document["defaults"] = defaults
    (plan,) = parse(document).plans
    return plan


# ---- merging: built-in defaults < [defaults] < the scenario's table ----------------------------


def test_an_empty_scenario_table_gets_the_built_in_parameters() -> None:
    plan = one({"period_s": 10})
    assert plan.params == BatchParams.validate({**BUILTIN_PARAMS, "strategy": "greenlets"})
    assert (plan.period_s, plan.jitter_s, plan.deadline_s, plan.queue) == (10.0, 0.0, None, "")


def test_defaults_apply_and_the_scenario_table_wins() -> None:
    defaults = {"subtasks": 3, "size_mb": 2, "workers": 6, "period_s": 30, "jitter_s": 1}
    plan = one({"size_mb": 7.5, "jitter_s": 0, "deadline_s": 12}, defaults)
    assert plan.params == BatchParams(3, 7.5, 0.5, 6, "greenlets", "bytes")
    assert (plan.period_s, plan.jitter_s, plan.deadline_s) == (30.0, 0.0, 12.0)
    assert plan.effective_deadline_s == 12.0


def test_the_scenario_decides_the_strategy() -> None:
    schedule = parse({"defaults": {"period_s": 5}, "scenarios": {name: {} for name in SCENARIOS}})
    assert [p.scenario for p in schedule.plans] == list(SCENARIOS)  # the file's order
    for plan in schedule.plans:
        assert plan.params.strategy == SCENARIOS[plan.scenario].strategy
    assert schedule.source == SOURCE


def test_defaults_apply_to_every_scenario() -> None:
    schedule = parse(
        {
            "defaults": {"subtasks": 2, "period_s": 4},
            "scenarios": {"prefork_threads": {"subtasks": 5}, "gevent_threads": {}},
        }
    )
    assert [p.params.subtasks for p in schedule.plans] == [5, 2]
    assert [p.period_s for p in schedule.plans] == [4.0, 4.0]


@pytest.mark.parametrize("where", ["defaults", "scenario"])
def test_time_is_an_alias_of_hold_s(where: str) -> None:
    if where == "defaults":
        plan = one({}, {"time": 0.25, "period_s": 1})
    else:
        plan = one({"time": 0.25, "period_s": 1})
    assert plan.params.hold_s == 0.25


def test_the_scenarios_time_overrides_the_defaults_hold_s_and_back() -> None:
    assert one({"time": 0.1}, {"hold_s": 0.9, "period_s": 1}).params.hold_s == 0.1
    assert one({"hold_s": 0.2}, {"time": 0.9, "period_s": 1}).params.hold_s == 0.2


def test_time_and_hold_s_in_one_table_are_refused() -> None:
    message = error({"scenarios": {"gevent_greenlets": {"time": 1, "hold_s": 1, "period_s": 1}}})
    assert "[scenarios.gevent_greenlets] time" in message and "same key" in message


def test_generous_deadline_is_the_parameters_own() -> None:
    plan = one({"period_s": 1, "subtasks": 2, "hold_s": 0.1})
    assert plan.deadline_s is None
    assert plan.effective_deadline_s == plan.params.deadline_seconds() >= 60


def test_queue_defaults_to_the_workers_queue_and_may_be_set() -> None:
    assert one({"period_s": 1}).queue_name == "membench.gevent_greenlets"
    assert one({"period_s": 1, "queue": "q.mine"}).queue_name == "q.mine"


def test_zero_jitter_is_allowed_and_large_seconds_are_bounded() -> None:
    assert one({"period_s": MAX_SECONDS, "jitter_s": 0}).period_s == MAX_SECONDS
    message = error({"scenarios": {"gevent_greenlets": {"period_s": MAX_SECONDS + 1}}})
    assert "period_s" in message and f"<= {MAX_SECONDS:.0f}" in message


# ---- errors name the file, the table and the key ---------------------------------------------


def test_a_bad_parameter_names_the_table_it_came_from() -> None:
    message = error(
        {"defaults": {"subtasks": 0, "period_s": 1}, "scenarios": {"gevent_threads": {}}}
    )
    assert message.startswith(f"{SOURCE}: [scenarios.gevent_threads] subtasks (from [defaults]): ")
    message = error({"scenarios": {"gevent_threads": {"subtasks": 0, "period_s": 1}}})
    assert message.startswith(f"{SOURCE}: [scenarios.gevent_threads] subtasks: ")


def test_a_bad_time_is_named_as_the_user_spelled_it() -> None:
    message = error({"defaults": {"time": -1, "period_s": 1}, "scenarios": {"gevent_threads": {}}})
    assert "[scenarios.gevent_threads] time (from [defaults])" in message


def test_period_is_required() -> None:
    message = error({"scenarios": {"gevent_greenlets": {"subtasks": 1}}})
    assert "[scenarios.gevent_greenlets] period_s: is required" in message


@pytest.mark.parametrize(
    ("value", "shown"),
    [(0, "> 0"), (-5, "-5"), (float("nan"), "nan"), (float("inf"), "inf"), ("60", "'60'")],
)
def test_bad_period_values(value: Any, shown: str) -> None:
    message = error({"scenarios": {"gevent_greenlets": {"period_s": value}}})
    assert "[scenarios.gevent_greenlets] period_s: " in message and shown in message


def test_a_boolean_is_not_a_number_of_seconds() -> None:
    message = error({"scenarios": {"gevent_greenlets": {"period_s": True}}})
    assert "period_s" in message and "True" in message


@pytest.mark.parametrize("jitter", [5, 5.0, 6])
def test_jitter_at_or_above_the_period_is_refused(jitter: float) -> None:
    message = error({"scenarios": {"gevent_greenlets": {"period_s": 5, "jitter_s": jitter}}})
    assert "[scenarios.gevent_greenlets] jitter_s: must be < period_s (5)" in message


def test_jitter_from_defaults_names_defaults() -> None:
    message = error(
        {"defaults": {"jitter_s": 9}, "scenarios": {"gevent_greenlets": {"period_s": 2}}}
    )
    assert "[scenarios.gevent_greenlets] jitter_s (from [defaults])" in message


def test_jitter_just_below_the_period_is_allowed() -> None:
    assert one({"period_s": 5, "jitter_s": 4.999}).jitter_s == 4.999


def test_zero_deadline_is_refused() -> None:
    message = error({"scenarios": {"gevent_greenlets": {"period_s": 5, "deadline_s": 0}}})
    assert "[scenarios.gevent_greenlets] deadline_s: " in message and "> 0" in message


def test_two_scenarios_on_one_queue_are_refused() -> None:
    message = error(
        {
            "defaults": {"period_s": 1},
            "scenarios": {"gevent_greenlets": {"queue": "q"}, "gevent_threads": {"queue": "q"}},
        }
    )
    assert (
        "[scenarios.gevent_threads] queue: 'q' is already the queue of gevent_greenlets" in message
    )


def test_a_queue_equal_to_another_scenarios_default_queue_is_refused() -> None:
    message = error(
        {
            "defaults": {"period_s": 1},
            "scenarios": {
                "gevent_greenlets": {},
                "gevent_threads": {"queue": "membench.gevent_greenlets"},
            },
        }
    )
    assert "[scenarios.gevent_threads] queue" in message and "gevent_greenlets" in message


@pytest.mark.parametrize("queue", ["", "  ", "a queue", 7])
def test_bad_queue_names(queue: Any) -> None:
    message = error({"scenarios": {"gevent_greenlets": {"period_s": 1, "queue": queue}}})
    assert "[scenarios.gevent_greenlets] queue: must be a non-empty queue name" in message


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"defaults": {"perod_s": 1}, "scenarios": {"gevent_greenlets": {}}}, "[defaults] perod_s"),
        (
            {"scenarios": {"gevent_greenlets": {"period_s": 1, "colour": 1}}},
            "[scenarios.gevent_greenlets] colour: unknown key",
        ),
        ({"defaults": {"queue": "q"}, "scenarios": {"gevent_greenlets": {}}}, "per scenario"),
        (
            {"scenarios": {"gevent_greenlets": {"period_s": 1, "strategy": "threads"}}},
            "the scenario decides it",
        ),
        (
            {"scenarios": {"gevent_greenlets": {"period_s": 1, "pool": "solo"}}},
            "the scenario decides it",
        ),
        ({"period_s": 1, "scenarios": {"gevent_greenlets": {}}}, "period_s: unknown top-level"),
    ],
    ids=["default", "scenario", "queue-in-defaults", "strategy", "pool", "top-level"],
)
def test_unknown_keys_are_named(document: dict[str, Any], expected: str) -> None:
    assert expected in error(document)


def test_unknown_key_lists_the_allowed_ones() -> None:
    message = error({"scenarios": {"gevent_greenlets": {"period_s": 1, "colour": 1}}})
    assert "allowed: subtasks, size_mb, hold_s, workers, payload, time" in message
    assert "queue" in message.partition("allowed:")[2]


def test_unknown_scenario_lists_the_known_ones() -> None:
    message = error({"scenarios": {"nope": {"period_s": 1}}})
    assert "[scenarios.nope]: unknown scenario 'nope'" in message
    assert all(name in message for name in SCENARIOS)


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({}, "[scenarios]: no scenario"),
        ({"scenarios": {}}, "[scenarios]: no scenario"),
        ({"defaults": {"period_s": 1}}, "[scenarios]: no scenario"),
        ({"scenarios": {"gevent_greenlets": 1}}, "[scenarios.gevent_greenlets]: must be a table"),
        ({"defaults": [], "scenarios": {"gevent_greenlets": {}}}, "[defaults]: must be a table"),
        ({"scenarios": "gevent_greenlets"}, "[scenarios]: must be a table"),
    ],
)
def test_missing_or_misshapen_tables(document: dict[str, Any], expected: str) -> None:
    assert expected in error(document)


def test_the_default_source_is_named_when_none_is_given() -> None:
    with pytest.raises(ScheduleError, match=r"^<schedule>: \[scenarios\]"):
        parse_schedule({})


# ---- load_schedule: the file ------------------------------------------------------------------


def test_the_example_schedule_loads() -> None:
    schedule = load_schedule(EXAMPLE_SCHEDULE)
    assert schedule.source == str(EXAMPLE_SCHEDULE)
    assert len(schedule.plans) == 4
    assert all(plan.period_s == 60.0 for plan in schedule.plans)


def test_a_file_goes_through_the_same_validation(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text("[defaults]\nperiod_s = 3\ntime = 0.2\n[scenarios.prefork_threads]\n")
    (plan,) = load_schedule(path).plans
    assert (plan.scenario, plan.period_s, plan.params.hold_s) == ("prefork_threads", 3.0, 0.2)
    path.write_text("[scenarios.prefork_threads]\nperiod_s = 3\njitter_s = 3\n")
    with pytest.raises(
        ScheduleError, match=rf"^{re.escape(str(path))}: \[scenarios.prefork_threads\] jitter_s"
    ):
        load_schedule(str(path))


def test_malformed_toml_names_the_file_and_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[defaults]\nperiod_s = 1\n[scenarios.gevent_greenlets\n")
    with pytest.raises(ScheduleError) as caught:
        load_schedule(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: invalid TOML: ")
    assert "line 3" in message and "\n" not in message


def test_non_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes("[defaults]\n# caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ScheduleError, match=rf"^{re.escape(str(path))}: not UTF-8 text: "):
        load_schedule(path)


def test_a_missing_file_cannot_be_read_and_a_directory_is_no_schedule(tmp_path: Path) -> None:
    with pytest.raises(ScheduleError, match=r"missing\.toml: cannot read: No such file"):
        load_schedule(tmp_path / "missing.toml")
    with pytest.raises(
        ScheduleError, match=rf"^{re.escape(str(tmp_path))}: is a directory, not a regular file"
    ):
        load_schedule(tmp_path)
