"""`membench run` beyond the seed's flags: allocators, malloc_trim, the matrix, prefork recycling
and the extra pools, each run on real workers and checked in results.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import membench

from membench.units import MIB
from membench.workers import allocator
from membench.workers.allocator import AllocatorUnavailable, allocator_env

SMALL = ["--subtasks", "4", "--size", "2", "--time", "0.05", "--workers", "2", "--runs", "1"]


def _runs(document: dict) -> dict[str, list[dict]]:
    return {s["scenario"]: s["runs"] for s in document["scenarios"]}


@pytest.mark.long
@pytest.mark.slow
def test_matrix_runs_every_allocator_and_each_worker_really_uses_it(tmp_path: Path) -> None:
    if allocator.find_jemalloc() is None:
        pytest.skip("libjemalloc.so.2 not installed (.ci/run installs libjemalloc2)")
    result = membench(
        "run",
        *SMALL,
        "--scenarios",
        "prefork_threads,gevent_greenlets",
        "--malloc-trim",
        "--matrix",
        "malloc=glibc,arena2,jemalloc",
        "payload=bytes,dicts",
        "--output",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "matrix.json").read_text())
    assert summary["complete"] is True
    labels = [c["label"] for c in summary["combinations"]]
    assert labels == [
        f"malloc={m} payload={p}"
        for m in ("glibc", "arena2", "jemalloc")
        for p in ("bytes", "dicts")
    ]
    assert "MATRIX SUMMARY" in result.stdout
    for combination in summary["combinations"]:
        malloc = combination["label"].split()[0].removeprefix("malloc=")
        document = json.loads((tmp_path / combination["results"]).read_text())
        assert document["parameters"]["malloc"] == malloc
        assert document["parameters"]["payload"] == combination["label"].split("=")[-1]
        for scenario, runs in _runs(document).items():
            (run,) = runs
            assert run["status"] == "ok", run["reason"]
            # Read from the executing process's own mappings and environment, not from flags.
            assert run["allocator"] == malloc, (scenario, run["allocator"])
            assert run["trim_method"].endswith(
                "jemalloc arena purge" if malloc == "jemalloc" else "malloc_trim(0)"
            )
            if scenario == "prefork_threads":
                # The release must not un-share the child's copy-on-write pages (a full gc did:
                # PSS +11-14 MB); what it frees can only lower PSS, give or take noise.
                assert run["trimmed_pss_bytes"] <= run["retained_pss_bytes"] + 2 * MIB, run
            assert run["trimmed_rss_bytes"] > 0 and run["trimmed_pss_bytes"] > 0
            assert run["floor_bytes"] == 2 * 2 * MIB
            assert run["excess_rss_bytes"] == (
                run["peak_rss_bytes"] - run["baseline_rss_bytes"] - run["floor_bytes"]
            )
        assert (tmp_path / combination["results"]).parent.joinpath("memory_comparison.png").exists()


@pytest.mark.slow
def test_max_tasks_per_child_replaces_the_prefork_child_between_runs(tmp_path: Path) -> None:
    pids = {}
    for recycle in (False, True):
        out = tmp_path / f"recycle-{recycle}"
        flags = ["--max-tasks-per-child", "1"] if recycle else []
        result = membench(
            "run",
            *SMALL[:-1],
            "2",
            "--scenarios",
            "prefork_sequential",
            "--reuse-worker",
            *flags,
            "--output",
            str(out),
        )
        assert result.returncode == 0, result.stderr[-3000:]
        document = json.loads((out / "results.json").read_text())
        assert document["parameters"]["max_tasks_per_child"] == (1 if recycle else None)
        runs = _runs(document)["prefork_sequential"]
        assert [r["status"] for r in runs] == ["ok", "ok"]
        pids[recycle] = [r["executing_pid"] for r in runs]
    assert pids[False][0] == pids[False][1]  # one long-lived child ...
    assert pids[True][0] != pids[True][1]  # ... unless recycled after each task


@pytest.mark.slow
def test_extra_pools_run_in_one_process_with_os_threads(tmp_path: Path) -> None:
    result = membench(
        "run", *SMALL, "--scenarios", "threads_threads,solo_threads", "--output", str(tmp_path)
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "threads pool (multithreading) 4x2.0MB" in result.stdout
    assert "solo (multithreading) 4x2.0MB" in result.stdout
    document = json.loads((tmp_path / "results.json").read_text())
    for scenario, runs in _runs(document).items():
        (run,) = runs
        assert run["status"] == "ok", run["reason"]
        assert run["processes"] == 1, scenario  # no pool children: the task runs in the main
        assert run["max_os_threads"] >= 2 + 2, scenario  # 2 subtask threads + main + exporter


def test_jemalloc_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(allocator, "JEMALLOC_PATHS", ())
    monkeypatch.setattr(allocator.ctypes.util, "find_library", lambda name: None)
    with pytest.raises(AllocatorUnavailable, match="apt install libjemalloc2"):
        allocator_env("jemalloc")
    assert allocator_env("arena2") == {"MALLOC_ARENA_MAX": "2"}
    assert allocator_env("glibc") == {}
