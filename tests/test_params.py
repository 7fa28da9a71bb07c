"""Task parameter validation: the one gate for CLI flags, schedule files and queue messages."""

from __future__ import annotations

from typing import Any

import pytest

from membench.units import MIB
from membench.workers.params import BatchParams, InvalidParameter
from membench.workers.scenarios import SCENARIOS, parse_scenarios

GOOD = {"subtasks": 10, "size_mb": 20.0, "hold_s": 0.5, "workers": 4, "strategy": "threads"}


def test_valid_parameters_round_trip() -> None:
    params = BatchParams.validate(GOOD)
    assert BatchParams.validate(params.as_kwargs()) == params
    assert params.payload == "bytes"
    assert params.size_bytes == 20 * MIB


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"subtasks": 0}, "subtasks"),
        ({"subtasks": -3}, "subtasks"),
        ({"subtasks": 2.5}, "subtasks"),
        ({"subtasks": "ten"}, "subtasks"),
        ({"subtasks": True}, "subtasks"),
        ({"size_mb": 0}, "size_mb"),
        ({"size_mb": -1.0}, "size_mb"),
        ({"size_mb": float("nan")}, "size_mb"),
        ({"size_mb": float("inf")}, "size_mb"),
        ({"size_mb": 1e12}, "size_mb"),
        ({"hold_s": -0.1}, "hold_s"),
        ({"hold_s": "soon"}, "hold_s"),
        ({"workers": 0}, "workers"),
        ({"workers": None}, "workers"),
        ({"strategy": "processes"}, "strategy"),
        ({"payload": "pickle"}, "payload"),
        ({"extra": 1}, "extra"),
    ],
)
def test_bad_parameters_name_their_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidParameter) as info:
        BatchParams.validate({**GOOD, **change})
    assert info.value.field == field


def test_missing_parameter_is_named() -> None:
    raw = dict(GOOD)
    del raw["workers"]
    with pytest.raises(InvalidParameter, match="workers"):
        BatchParams.validate(raw)


def test_data_held_at_once_is_the_floor_of_each_strategy() -> None:
    assert BatchParams.validate({**GOOD, "subtasks": 200, "workers": 40}).held_at_once() == 40
    assert BatchParams.validate({**GOOD, "subtasks": 3, "workers": 40}).held_at_once() == 3
    sequential = BatchParams.validate({**GOOD, "strategy": "sequential"})
    assert sequential.held_at_once() == 1


def test_scenarios_parse_in_order_without_duplicates() -> None:
    chosen = parse_scenarios("gevent_threads, prefork_threads,gevent_threads")
    assert [s.name for s in chosen] == ["gevent_threads", "prefork_threads"]
    with pytest.raises(ValueError, match="unknown scenario 'nope'"):
        parse_scenarios("prefork_threads,nope")


def test_approach_labels_match_the_seed() -> None:
    assert SCENARIOS["prefork_threads"].approach(200, 3) == "prefork (multithreading) 200x3.0MB"
    assert SCENARIOS["gevent_greenlets"].approach(200, 3) == "gevent (gevent pool) 200x3.0MB"
