"""`--payload numpy`, the seed's subtask: real numpy in real workers; numpy is loaded only where
it runs; std's temporary; the concurrent temporaries term in results.json and the table."""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from helpers import StartWorker, membench, send_batch

from membench.run.payloads import preload_payload
from membench.units import MIB
from membench.workers.numpy_payload import seed_subtask, warm_up

NUMPY_SO = "_multiarray_umath"  # numpy's core extension: mapped once numpy is imported


def maps_numpy(pid: int) -> bool:
    return NUMPY_SO in Path(f"/proc/{pid}/maps").read_text()


def test_the_seed_subtask_builds_float64_holds_then_reduces() -> None:
    warm_up()  # numpy imported and its first use done: only the subtask's memory is traced
    seen: list[Any] = []
    tracemalloc.start()  # numpy reports its data buffers to tracemalloc
    try:
        result = seed_subtask(3, 2.0, 0.0, lambda _: seen.append(tracemalloc.get_traced_memory()))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert set(result) == {"task_id", "data_size_mb", "mean", "std_dev"}
    assert result["task_id"] == 3 and result["data_size_mb"] == 2.0
    # Uniform [0, 1): mean 1/2, sd 1/sqrt(12), over 262144 samples.
    assert abs(result["mean"] - 0.5) < 0.01
    assert abs(result["std_dev"] - 12**-0.5) < 0.01
    (held_bytes,) = [current for current, _ in seen]
    assert abs(held_bytes - 2 * MIB) < 4096  # int(2 MiB / 8) float64s, held during the hold
    assert peak >= 2 * held_bytes - 4096  # np.std's `x - mean`: a second data-sized array
    assert type(result["mean"]) is float and type(result["std_dev"]) is float
    json.dumps(result)  # JSON-able (the project never pickles)


@pytest.mark.slow
def test_importing_the_tasks_does_not_import_numpy() -> None:
    code = "import sys, membench.workers.tasks; print('numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["prefork_threads", "gevent_greenlets"])
def test_a_worker_that_ran_only_bytes_never_loads_numpy(
    scenario: str, start_worker: StartWorker, celery_app: Any
) -> None:
    worker = start_worker(scenario)
    small = {"subtasks": 2, "size_mb": 1, "hold_s": 0, "workers": 2}
    report = send_batch(celery_app, worker, payload="bytes", **small).get(timeout=60)
    assert report["numpy_loaded"] is False
    assert not any(maps_numpy(pid) for pid in worker.tree())  # independent of the report
    report = send_batch(celery_app, worker, payload="numpy", **small).get(timeout=60)
    assert report["numpy_loaded"] is True
    assert maps_numpy(report["pid"])
    assert abs(report["subtask_means"]["mean"] - 0.5) < 0.02


@pytest.mark.slow
def test_the_runner_loads_numpy_in_every_pool_child_before_the_baseline(
    start_worker: StartWorker, celery_app: Any
) -> None:
    worker = start_worker("prefork_threads", concurrency=2)
    children = [pid for pid in worker.tree() if pid != worker.pid]
    assert len(children) == 2 and not any(maps_numpy(pid) for pid in worker.tree())
    added = preload_payload(celery_app, worker, "numpy")
    assert added is not None and added > 5 * MIB
    assert all(maps_numpy(pid) for pid in children)
    assert not maps_numpy(worker.pid)  # the parent never runs a task
    assert preload_payload(celery_app, worker, "bytes") is None


# 40 subtasks of 3 MB on 40 OS threads (prefork + threads) against 40 greenlets: the same floor
# (120 MB). Excess = VmHWM - start RSS - floor of the executing process, as the task reports it.
# Measured 5 times on fresh workers (2 cores, under the test lock): OS threads minus greenlets
# min 0.79, median 0.85, max 0.98 MB (threads 4.04-4.24 MB, greenlets 3.19-3.27 MB, i.e. one
# 3 MB temporary each). The gap is the 40 threads' own memory: std's temporaries do not pile up,
# because numpy's global RandomState lock serialises the builds, so the threads wake ~3.5 ms
# apart and each std (~1-2 ms) is mostly over before the next starts.
THREADS_OVER_GREENLETS_BYTES = int(0.4 * MIB)  # half the smallest measured gap


@pytest.mark.slow
def test_os_threads_peak_above_greenlets_at_the_same_floor(
    start_worker: StartWorker, celery_app: Any
) -> None:
    # Held long enough that the last of the 40 builds ends before the first lets its data go,
    # also on a machine busy with other tests (0.5 s was not, under the parallel suite).
    params = {"subtasks": 40, "size_mb": 3, "hold_s": 2.0, "workers": 40, "payload": "numpy"}
    floor = 40 * 3 * MIB
    excess = {}
    for scenario in ("prefork_threads", "gevent_greenlets"):
        worker = start_worker(scenario)
        report = send_batch(celery_app, worker, **params).get(timeout=120)
        assert report["peak_method"] == "vmhwm"
        excess[scenario] = report["peak_rss_bytes"] - report["start_rss_bytes"] - floor
        assert excess[scenario] >= 0  # the data was all alive at once in both
    gap = excess["prefork_threads"] - excess["gevent_greenlets"]
    assert gap >= THREADS_OVER_GREENLETS_BYTES, {k: v / MIB for k, v in excess.items()}


@pytest.mark.slow
def test_membench_run_shows_the_concurrent_temporaries(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["--subtasks", "8", "--size", "2", "--time", "0.1", "--workers", "8", "--runs", "1"]
    scenarios = "prefork_threads,gevent_greenlets"
    result = membench(
        "run", "--payload", "numpy", *args, "--scenarios", scenarios, "--output", str(out)
    )
    assert result.returncode == 0, result.stderr
    assert "Concurrent temporaries (numpy)" in result.stdout
    document = json.loads((out / "results.json").read_text())
    assert document["parameters"]["payload"] == "numpy"
    assert document["parameters"]["payload_sha256"] is None
    for scenario in document["scenarios"]:
        (run,) = scenario["runs"]
        assert run["status"] == "ok", run["reason"]
        assert run["payload_import_rss_bytes"] > 5 * MIB  # numpy loaded before the baseline
        assert run["floor_bytes"] == 8 * 2 * MIB
        # Most of the one temporary np.std allocates, from the kernel's high-water marks (freed
        # memory the idle worker kept resident can take a part of it: seen 1.82 of 2 MB).
        assert run["concurrent_temporaries_bytes"] >= 1 * MIB
        assert run["temporaries_at_once"] == run["concurrent_temporaries_bytes"] / (2 * MIB)
        assert scenario["summary"]["concurrent_temporaries_bytes"]["median"] is not None
        assert abs(run["subtask_means"]["std_dev"] - 12**-0.5) < 0.01
