"""`membench run --app` against real workers of every pool with the example app
(examples/app_benchmark): tree peaks grow as N x S, a CPU-bound task under gevent is flagged
serial and a sleeping one is not, and the sizing's --max-memory-per-child holds on a real
prefork worker while one 20% lower recycles the child after every task."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from helpers import REPO, membench

from membench.units import MIB

pytestmark = pytest.mark.slow

EXAMPLE = REPO / "examples" / "app_benchmark"


def app_run(tmp_path: Path, name: str, *args: str) -> tuple[subprocess.CompletedProcess[str], Any]:
    output = tmp_path / name
    done = membench("run", "--app", "tasks:app", *args, "--output", str(output), cwd=EXAMPLE)
    document = json.loads((output / "results.json").read_text())
    return done, document


def rows(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        s["scenario"]: s["runs"][0] | {"verdict": s["throughput_vs_solo"]}
        for s in document["scenarios"]
    }


@pytest.mark.long
def test_tree_peaks_grow_as_n_times_s_under_every_pool(tmp_path: Path) -> None:
    size_mb = 16
    done, document = app_run(
        tmp_path,
        "growth",
        "--task", "tasks.hold",
        "--args", f"[{size_mb}, 1.0]",
        "--pools", "prefork,gevent,threads,solo",
        "--concurrency", "1,3",
        "--tasks", "3",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    found = rows(document)
    assert set(found) == {"solo-c1", "prefork-c1", "prefork-c3", "gevent-c1", "gevent-c3",
                          "threads-c1", "threads-c3"}  # fmt: skip
    for name, row in found.items():
        assert row["outcomes"] == {"success": 3}, (name, row["outcomes"])
        n = row["concurrency"]
        rise = (row["peak_rss_bytes"] - row["baseline_rss_bytes"]) / MIB
        # prefork: S in each of N children; gevent, threads: N x S in the one process.
        assert abs(rise - n * size_mb) < 4 + n, (name, rise)
    for pool in ("prefork", "gevent", "threads"):
        one, three = found[f"{pool}-c1"], found[f"{pool}-c3"]
        assert three["processes"] == (4 if pool == "prefork" else 1)
        grown = (three["peak_rss_bytes"] - three["baseline_rss_bytes"]) - (
            one["peak_rss_bytes"] - one["baseline_rss_bytes"]
        )
        assert abs(grown / MIB - 2 * size_mb) < 6, (pool, grown / MIB)
    # Exact per-run peaks where each run had its process to itself; shared windows where not.
    assert found["prefork-c3"]["task_peak_runs"] == 3
    assert found["solo-c1"]["task_peak_runs"] == 3
    assert found["gevent-c3"]["window_peak_rss_bytes"] is not None
    sizing = {r["scenario"]: r for r in document["sizing"]["rows"]}
    assert sizing["prefork-c3"]["need_bytes"] == found["prefork-c3"]["peak_pss_bytes"]
    assert sizing["prefork-c3"]["max_memory_per_child_kib"] > 0
    assert "Sizing (MB)" in done.stdout and "BENCHMARK RESULTS" in done.stdout


@pytest.mark.serial(
    reason="the verdict compares each row's walls with a solo run's: another test's CPU work "
    "stretches one and not the other"
)
def test_a_cpu_bound_task_under_gevent_is_flagged_serial_a_sleeping_one_is_not(
    tmp_path: Path,
) -> None:
    common = ("--pools", "gevent,threads", "--concurrency", "4", "--tasks", "8")
    done, document = app_run(tmp_path, "spin", "--task", "tasks.spin", "--args", "[0.1]", *common)
    assert done.returncode == 0, done.stderr
    found = rows(document)
    assert found["gevent-c4"]["verdict"]["serial"] is True
    assert found["threads-c4"]["verdict"]["serial"] is True
    assert "gevent -c 4: gevent ran this task serially" in done.stdout
    assert "threads -c 4: threads were serialised (GIL)" in done.stdout

    done, document = app_run(
        tmp_path, "sleep", "--task", "tasks.hold", "--args", "[1, 0.3]", *common
    )
    assert done.returncode == 0, done.stderr
    found = rows(document)
    for name in ("gevent-c4", "threads-c4"):
        assert found[name]["verdict"]["serial"] is False, found[name]["verdict"]
        assert found[name]["throughput_per_s"] > 3 * found["solo-c1"]["throughput_per_s"]
    assert "serially" not in done.stdout and "serialised" not in done.stdout


@pytest.mark.long
def test_the_sizings_max_memory_per_child_does_not_recycle_every_task_20_percent_less_does(
    tmp_path: Path,
) -> None:
    tasks = 6
    task = ("--task", "tasks.hold", "--args", "[24, 0.05]", "--pools", "prefork")
    common = (*task, "--concurrency", "1", "--tasks", str(tasks))
    done, document = app_run(tmp_path, "measure", *common)
    assert done.returncode == 0, done.stderr
    kib = {r["scenario"]: r for r in document["sizing"]["rows"]}["prefork-c1"][
        "max_memory_per_child_kib"
    ]
    assert f"{kib} KiB" in done.stdout

    done, document = app_run(tmp_path, "at", *common, "--max-memory-per-child", str(kib))
    assert done.returncode == 0, done.stderr
    row = rows(document)["prefork-c1"]
    assert row["outcomes"] == {"success": tasks}
    assert row["child_recycles"]["max-memory-per-child"] == 0
    assert row["executing_pids"] == 1  # one child ran every task

    lower = int(kib * 0.8)
    done, document = app_run(tmp_path, "lower", *common, "--max-memory-per-child", str(lower))
    assert done.returncode == 0, done.stderr
    row = rows(document)["prefork-c1"]
    assert row["outcomes"] == {"success": tasks}
    assert row["executing_pids"] == tasks  # a new child for every task
    assert row["child_recycles"]["max-memory-per-child"] >= tasks - 1
