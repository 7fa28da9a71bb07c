"""Sizing (membench.run.sizing): the formula on hand-made run figures, and `membench run
--sizing` printing the block and recording it in results.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import membench

from membench.results.document import plain, results_from
from membench.results.model import BenchmarkResults, BenchmarkScenario, RunResult, Summary
from membench.run.sizing import (
    format_sizing,
    size_approach,
    sizing_entry,
    tasks_in_flight,
    threshold_kib,
)
from membench.units import MIB as MB

FIGURES = ("baseline_rss", "baseline_pss", "peak_pss", "task_peak_rss", "tree_hwm_sum")


def run(*megabytes: float, processes: int) -> dict[str, Any]:
    """A results.json run, ok and with exact peaks: FIGURES in MB (bytes in the document)."""
    figures = {f"{key}_bytes": round(mb * MB) for key, mb in zip(FIGURES, megabytes, strict=True)}
    return {
        "scenario": "x",
        "run": 1,
        "status": "ok",
        "warmup": False,
        "peak_method": "vmhwm",
        "processes": processes,
    } | figures


def scenario(name: str, approach: str, pool: str, runs: list[dict[str, Any]]) -> BenchmarkScenario:
    return BenchmarkScenario(
        name, approach, pool, "threads", Summary(), [RunResult(**r) for r in runs]
    )


def size(runs: list[dict[str, Any]], pool: str, concurrency: int) -> dict[str, Any]:
    """size_approach on results.json runs, as the JSON values it writes."""
    return plain(size_approach(scenario("x", "x", pool, runs), concurrency))


# A --concurrency 1 prefork tree: parent RSS 50, child RSS 50, tree PSS 60 (so the child's
# share is 30); the task took the child's RSS to 60 and the tree's PSS to 68.
PREFORK_C1 = run(100, 60, 68, 60, 110, processes=2)
# One process (gevent, threads, solo): PSS 56 -> 64.5, RSS HWM rise 8.2.
ONE_PROCESS = run(64, 56, 64.5, 72.2, 72.2, processes=1)


def test_prefork_need_is_the_parent_plus_n_children_each_with_its_task() -> None:
    sizing = size([PREFORK_C1], "prefork", 4)
    # rise = max(PSS rise 8, HWM rise 110 - 100 = 10) = 10; child PSS = 60 x 50/100 = 30;
    # fixed = 60 - 30 = 30; per task = 30 + 10; need = 30 + 4 x 40.
    assert sizing["task_rise_bytes"] == 10 * MB
    assert sizing["child_pss_bytes"] == 30 * MB
    assert sizing["fixed_bytes"] == 30 * MB
    assert sizing["per_task_bytes"] == 40 * MB
    assert sizing["need_bytes"] == 190 * MB
    assert sizing["tasks_in_flight"] == 4


def test_prefork_at_its_own_concurrency_restates_the_measured_baseline_plus_the_rise() -> None:
    assert size([PREFORK_C1], "prefork", 1)["need_bytes"] == (60 + 10) * MB


def test_prefork_measured_with_two_children_predicts_the_same_as_with_one() -> None:
    two_children = run(150, 90, 98, 60, 160, processes=3)
    assert size([two_children], "prefork", 4)["need_bytes"] == 190 * MB
    assert size([two_children], "prefork", 4)["fixed_bytes"] == 30 * MB


def test_threshold_is_the_child_peak_plus_the_margin_in_kib() -> None:
    sizing = size([PREFORK_C1], "prefork", 4)
    assert sizing["child_peak_rss_bytes"] == 60 * MB
    assert sizing["max_memory_per_child_kib"] == 60 * 1024 * 110 // 100 == threshold_kib(60 * MB)


def test_threshold_rounds_up_and_is_never_under_the_peak() -> None:
    assert threshold_kib(1, margin_percent=0) == 1
    assert threshold_kib(1024 * 1000 + 1, margin_percent=0) == 1001
    assert threshold_kib(1024 * 1000, margin_percent=10) == 1100


def test_a_parent_larger_than_the_childs_peak_sets_the_threshold() -> None:
    # Parent RSS 60, child 50 rising to 52: a forked child starts near its parent's RSS.
    small_task = run(110, 65, 67, 52, 112, processes=2)
    sizing = size([small_task], "prefork", 2)
    assert sizing["child_peak_rss_bytes"] == 60 * MB
    assert sizing["max_memory_per_child_kib"] == threshold_kib(60 * MB)


@pytest.mark.parametrize("pool", ["gevent", "threads"])
def test_one_process_pools_add_each_task_in_flight_to_the_idle_process(pool: str) -> None:
    sizing = size([ONE_PROCESS], pool, 4)
    assert sizing["task_rise_bytes"] == round(8.5 * MB)  # PSS rise 8.5 > HWM rise 8.2
    assert sizing["need_bytes"] == 56 * MB + 4 * round(8.5 * MB)
    assert sizing["max_memory_per_child_kib"] is None  # prefork only
    assert sizing["child_pss_bytes"] is None


def test_solo_runs_one_task_whatever_the_concurrency() -> None:
    assert tasks_in_flight("solo", 8) == 1
    assert size([ONE_PROCESS], "solo", 8)["need_bytes"] == round(64.5 * MB)


def test_the_kernels_peak_counts_where_sampling_missed_a_spike() -> None:
    spike = run(64, 56, 57, 80, 80, processes=1)
    assert size([spike], "gevent", 1)["task_rise_bytes"] == 16 * MB
    # Without the reset (peak_method "sampled"), the HWM is the lifetime's: PSS only.
    sampled = size([spike | {"peak_method": "sampled"}], "gevent", 1)
    assert sampled["task_rise_bytes"] == 1 * MB


def test_prefork_without_the_exact_peak_is_not_sized() -> None:
    sizing = size([PREFORK_C1 | {"peak_method": "sampled"}], "prefork", 4)
    assert sizing["need_bytes"] is None
    assert "VmHWM" in sizing["note"]


def test_failed_warmup_and_partial_runs_are_left_out() -> None:
    runs = [
        PREFORK_C1 | {"status": "failed"},
        PREFORK_C1 | {"warmup": True},
        PREFORK_C1 | {"peak_pss_bytes": None},
    ]
    sized = size(runs, "prefork", 4)
    assert {k: v for k, v in sized.items() if v is not None} == {
        "scenario": "x",
        "approach": "x",
        "pool": "prefork",
        "concurrency": 4,
        "tasks_in_flight": 4,
        "note": "no successful run",
    }
    assert size([*runs, PREFORK_C1], "prefork", 4)["runs"] == 1


def test_need_is_the_median_over_runs_and_the_threshold_the_largest_peak() -> None:
    bigger = PREFORK_C1 | {"task_peak_rss_bytes": 70 * MB, "tree_hwm_sum_bytes": 120 * MB}
    runs = [PREFORK_C1, PREFORK_C1, bigger]
    sizing = size(runs, "prefork", 4)
    assert sizing["need_bytes"] == 190 * MB
    assert sizing["child_peak_rss_bytes"] == 70 * MB
    assert sizing["runs"] == 3


def document_scenarios() -> list[BenchmarkScenario]:
    return [
        scenario("prefork_threads", "prefork A", "prefork", [PREFORK_C1]),
        scenario("gevent_greenlets", "gevent B", "gevent", [ONE_PROCESS]),
        scenario("prefork_sequential", "prefork C", "prefork", [PREFORK_C1 | {"status": "failed"}]),
    ]


def test_the_entry_and_the_block_name_every_approach() -> None:
    entry = sizing_entry(document_scenarios(), 4)
    assert entry.concurrency == 4
    assert entry.basis == "pss"
    assert [a.scenario for a in entry.approaches] == [
        "prefork_threads",
        "gevent_greenlets",
        "prefork_sequential",
    ]
    text = format_sizing(entry)
    assert "Sizing at --concurrency 4 (MB, PSS)" in text
    lines = {line.split("  ")[0]: line for line in text.splitlines() if line.startswith("pre")}
    assert lines["prefork A"].split()[2:6] == ["190.00", "30.00", "40.00", "10.00"]
    assert lines["prefork A"].endswith(f"{threshold_kib(60 * MB)} KiB")
    assert lines["prefork C"].split()[2:] == ["-"] * 5
    gevent = next(line for line in text.splitlines() if line.startswith("gevent B"))
    assert gevent.rstrip().endswith("-")


@pytest.mark.slow
def test_membench_run_prints_the_sizing_block_and_records_it(tmp_path: Path) -> None:
    result = membench(
        "run",
        *("--subtasks", "2", "--size", "1", "--time", "0.05", "--workers", "2", "--runs", "1"),
        *("--scenarios", "prefork_sequential,gevent_greenlets", "--sizing", "2"),
        *("--output", str(tmp_path)),
    )
    assert result.returncode == 0, result.stderr
    document = json.loads((tmp_path / "results.json").read_text())
    sizing = document["sizing"]
    assert sizing["concurrency"] == 2
    # Computed from the figures results.json records, and printed as recorded.
    typed = results_from(document)
    assert isinstance(typed, BenchmarkResults)
    assert sizing == plain(sizing_entry(typed.scenarios, 2))
    assert format_sizing(typed.sizing) in result.stdout
    by_pool = {a["pool"]: a for a in sizing["approaches"]}
    assert set(by_pool) == {"prefork", "gevent"}
    for approach, scenario in zip(sizing["approaches"], document["scenarios"], strict=True):
        assert approach["need_bytes"] > scenario["summary"]["baseline_pss_bytes"]["median"]
    assert by_pool["prefork"]["max_memory_per_child_kib"] > 0
    assert by_pool["gevent"]["max_memory_per_child_kib"] is None
