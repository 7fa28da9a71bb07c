"""The worker's shared task table and what the main process renders from it, without a worker:
rows summed per task name, counters that outlive a child, gauges that do not, the bound on task
names, recycle reasons, a real fork writing into the parent's table, and the series formula."""

from __future__ import annotations

import os

import pytest
from helpers import samples
from prometheus_client import CollectorRegistry, generate_latest

from membench.exporter import names
from membench.exporter.budget import task_series, worker_series
from membench.exporter.options import check_arguments
from membench.exporter.taskcollector import TaskStatsCollector
from membench.exporter.tasktable import (
    EXIT_MAX_MEMORY,
    EXIT_MAX_TASKS,
    EXIT_SHUTDOWN,
    TaskTable,
)

TASKS = ["app.a", "app.b"]


def table(rows: int = 3) -> TaskTable:
    made = TaskTable(TASKS, rows)
    for row in range(rows):
        made.take_row(row, 100 + row, 1000.0 + row)
    return made


def render(made: TaskTable) -> dict[str, list[tuple[dict[str, str], float]]]:
    registry = CollectorRegistry()
    registry.register(TaskStatsCollector(made, {"pool": "prefork"}))
    return samples(generate_latest(registry).decode())


def test_runs_are_summed_over_the_rows_of_the_worker() -> None:
    made = table()
    a = made.task_index("app.a")
    for row in (1, 2, 2):
        made.started(row, a)
        made.finished(row, a, "success", 0.3, peak=100.0, retained=10.0)
    made.started(1, a)
    made.finished(1, a, "failure", 7.0, peak=200.0, retained=-4.0)
    made.count(0, a, "lost")
    (stats,) = list(made.stats())
    assert stats.task == "app.a"
    assert stats.runs == {
        "success": 3,
        "failure": 1,
        "retry": 0,
        "rejected": 0,
        "revoked": 0,
        "lost": 1,
    }
    assert stats.in_progress == 0
    assert stats.retained == 26.0 and stats.peak_rss == 200.0 and stats.last_duration == 7.0
    assert stats.window_peak_rss is None
    bounds = dict(
        zip([*names.TASK_DURATION_BUCKETS, float("inf")], stats.bucket_counts, strict=True)
    )
    assert bounds[0.25] == 0 and bounds[0.5] == 3 and bounds[5.0] == 3 and bounds[10.0] == 4
    assert stats.bucket_counts[-1] == 4 and stats.duration_sum == pytest.approx(7.9)


def test_a_task_that_never_ran_has_no_series_and_other_names_share_one_value() -> None:
    made = table()
    assert list(made.stats()) == []
    for name in ("app.c", "app.d", "celery.chord_unlock"):
        index = made.task_index(name)
        made.started(0, index)
        made.finished(0, index, "success", 0.01)
    rendered = render(made)
    tasks = {labels[names.TASK_LABEL] for labels, _ in rendered[names.TASK_RUNS_TOTAL]}
    assert tasks == {names.OTHER_TASK}
    assert len(rendered[names.TASK_RUNS_TOTAL]) == len(names.TASK_OUTCOMES)


def test_a_shared_window_peak_is_never_the_tasks_own() -> None:
    made = table()
    b = made.task_index("app.b")
    made.started(0, b)
    made.finished(0, b, "success", 1.0, window_peak=500.0)
    rendered = render(made)
    assert [v for _, v in rendered[names.TASK_WINDOW_PEAK_RSS_BYTES]] == [500.0]
    assert names.TASK_PEAK_RSS_BYTES not in rendered
    assert names.TASK_RETAINED_BYTES not in rendered  # not attributable


def test_a_replaced_child_keeps_the_counters_and_drops_its_gauges() -> None:
    made = table()
    a = made.task_index("app.a")
    made.started(1, a)
    made.finished(1, a, "success", 0.1, peak=1.0, retained=50.0)
    made.started(1, a)  # then the child dies mid-task: nobody finishes the run
    assert next(made.stats()).in_progress == 1
    assert made.take_row(1, 999, 2000.0) == "died"
    (stats,) = list(made.stats())
    assert stats.runs["success"] == 1 and stats.in_progress == 0
    assert stats.retained == 0  # the memory it retained went with it
    assert made.recycles() == {"max-tasks-per-child": 0, "max-memory-per-child": 0, "died": 1}
    assert [(p.row, p.pid) for p in made.processes()] == [(0, 100), (1, 999), (2, 102)]


@pytest.mark.parametrize(
    ("exit_reason", "counted"),
    [
        (EXIT_MAX_TASKS, "max-tasks-per-child"),
        (EXIT_MAX_MEMORY, "max-memory-per-child"),
        (EXIT_SHUTDOWN, None),
    ],
)
def test_a_recycle_says_why_the_child_left(exit_reason: float, counted: str | None) -> None:
    made = table()
    made.mark_exit(2, exit_reason)
    assert 2 not in [p.row for p in made.processes()]  # gone from the live processes at once
    assert made.take_row(2, 555, 3000.0) == counted
    assert sum(made.recycles().values()) == (counted is not None)


def test_a_forked_child_writes_into_the_table_its_parent_reads() -> None:
    made = table()
    a = made.task_index("app.a")
    pid = os.fork()
    if pid == 0:  # the child: record a run in its own row, then leave without cleanup
        made.started(1, a)
        made.finished(1, a, "success", 0.2, peak=42.0, retained=1.0)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    (stats,) = list(made.stats())
    assert stats.runs["success"] == 1 and stats.peak_rss == 42.0


def test_the_exposition_is_valid_and_has_the_formulas_series() -> None:
    made = table()
    for task in TASKS:
        index = made.task_index(task)
        made.started(1, index)
        made.finished(1, index, "success", 0.2, peak=42.0, retained=1.0)
    text = generate_latest(_registry(made)).decode()
    count = sum(len(s) for s in samples(text).values())
    assert count == len(TASKS) * task_series() + len(names.RECYCLE_REASONS)


def _registry(made: TaskTable) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(TaskStatsCollector(made, {"pool": "prefork"}))
    return registry


def test_the_fleet_target_holds_by_the_formula() -> None:
    # 500 workers x 8 prefork children x 50 task names, per-process ports: under 1 million.
    assert 500 * worker_series(8, 50) == 703_000
    assert 500 * worker_series(8, 50, one_port=True) < 500 * worker_series(8, 50)
    # The same metrics per child instead of per worker would be 5 million and more.
    assert 500 * 8 * 50 * task_series() > 5_000_000 - 1


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"port": "9808"}, "port=...): must be an integer"),
        ({"port": True}, "port=...): must be an integer"),
        ({"port": 70000}, "between 0 and 65535"),
        ({"mode": "every-port"}, "mode=...): must be one of per-process, one-port"),
        ({"labels": {"task": "x"}}, "'task' cannot be a label"),
        ({"labels": {"bad-name": "x"}}, "'bad-name' cannot be a label"),
        ({"max_task_names": 0}, "max_task_names=...): must be"),
    ],
)
def test_bad_instrument_arguments_raise_one_line(kwargs: dict[str, object], fragment: str) -> None:
    arguments = {"port": None, "mode": None, "labels": None, "max_task_names": 100} | kwargs
    with pytest.raises(ValueError) as raised:
        check_arguments(**arguments)  # type: ignore[arg-type]
    assert fragment in str(raised.value) and "\n" not in str(raised.value)
