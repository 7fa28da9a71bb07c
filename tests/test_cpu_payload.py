"""`--payload cpu-numpy|cpu-python`: subtasks that spend `--time` CPU seconds computing; on real
workers OS threads hold every subtask's data at once, greenlets one subtask's at a time."""

from __future__ import annotations

import time
import tracemalloc
from typing import Any

import pytest
from helpers import StartWorker, send_batch

from membench.units import KIB, MIB
from membench.workers.cpu_payload import cpu_subtask, spend
from membench.workers.numpy_payload import warm_up
from membench.workers.params import CPU_PAYLOADS, BatchParams


def test_spend_computes_until_the_thread_has_spent_the_budget() -> None:
    passes: list[int] = []
    start = time.thread_time()
    done, spent = spend(0.05, passes.append)
    assert done == len(passes) >= 1 and passes == list(range(done))
    assert spent >= 0.05  # counted by the loop's own clock: this thread's CPU time
    assert time.thread_time() - start >= spent
    assert spend(0.0, passes.append)[0] == 0


@pytest.mark.parametrize("kind", CPU_PAYLOADS)
def test_a_cpu_subtask_holds_its_data_and_no_temporary(kind: str) -> None:
    warm_up()
    held: list[int] = []
    tracemalloc.start()  # numpy's buffers are traced too
    try:
        result = cpu_subtask(
            kind, 4, 2.0, 2 * MIB, 0.02, lambda _: held.append(tracemalloc.get_traced_memory()[0])
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result["task_id"] == 4 and result["cpu_s"] >= 0.02 and result["passes"] >= 1
    assert abs(held[0] - 2 * MIB) < 64 * KIB
    assert peak - held[0] < 256 * KIB  # sorting in place, reading in Python: nothing data-sized


def test_cpu_floors_follow_the_pool() -> None:
    raw = {"subtasks": 8, "size_mb": 4, "hold_s": 0.5, "workers": 4, "strategy": "threads"}
    params = BatchParams.validate({**raw, "payload": "cpu-numpy"})
    assert params.floor_bytes("prefork") == 4 * 4 * MIB
    assert params.floor_bytes("gevent") == 4 * MIB  # a computing greenlet never yields
    assert BatchParams.validate({**raw, "payload": "numpy"}).floor_bytes("gevent") == 16 * MIB
    # A CPU hold may share one core: the deadline counts every hold.
    assert params.ideal_seconds() == 8 * 0.5


@pytest.mark.slow
@pytest.mark.parametrize("kind", CPU_PAYLOADS)
def test_os_threads_hold_every_subtask_greenlets_one_at_a_time(
    kind: str, start_worker: StartWorker, celery_app: Any
) -> None:
    # Each hold (CPU seconds) long next to the four builds (numpy's RandomState lock runs them
    # one at a time, ~30 ms each): at 0.1 s a first thread could finish before the last built.
    params = {"subtasks": 4, "size_mb": 8, "hold_s": 0.5, "workers": 4, "payload": kind}
    grown = {}
    for scenario in ("prefork_threads", "gevent_greenlets"):
        worker = start_worker(scenario)
        report = send_batch(celery_app, worker, **params).get(timeout=120)
        assert report["subtasks_done"] == 4
        assert report["subtask_means"]["cpu_s"] >= 0.5
        assert report["numpy_loaded"] is (kind == "cpu-numpy")
        grown[scenario] = report["peak_rss_bytes"] - report["start_rss_bytes"]
        if scenario == "prefork_threads":
            assert report["max_os_threads"] >= 4 + 2
    assert grown["prefork_threads"] >= 4 * 8 * MIB - MIB  # less what the idle child kept free
    assert grown["gevent_greenlets"] < 2 * 8 * MIB
