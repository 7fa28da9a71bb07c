"""Subtasks that compute for their hold instead of sleeping (`--payload cpu-numpy|cpu-python`):
`--time` is CPU seconds of the subtask's own thread, spent in GIL-releasing numpy or in Python."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from membench.workers.numpy_payload import random_array
from membench.workers.payload import build_bytes

PAGE = 4096


def spend(cpu_s: float, step: Callable[[int], None]) -> tuple[int, float]:
    """Repeat step(pass) until this thread has spent `cpu_s` of CPU; return (passes, CPU spent).
    thread_time() counts this OS thread only; a greenlet shares its thread with the others, but
    computing never yields, so no other greenlet runs until the subtask is done."""
    start = time.thread_time()
    passes = 0
    while (spent := time.thread_time() - start) < cpu_s:
        step(passes)
        passes += 1
    return passes, spent


def _python_pass(data: bytearray) -> Callable[[int], None]:
    checksum = [0]

    def step(number: int) -> None:
        acc = checksum[0]
        # Pure Python bytecode over one byte per page (a different byte each pass): it holds the
        # GIL throughout, and each pass is short (~0.1 ms for 8 MB) so the budget is met closely.
        for i in range(number % PAGE, len(data), PAGE):
            acc = (acc * 31 + data[i]) & 0xFFFFFFFF
        checksum[0] = acc

    return step


def _numpy_pass(data: Any) -> Callable[[int], None]:
    def step(_: int) -> None:
        data.sort()  # in place: numpy releases the GIL, and no temporary is allocated

    return step


def cpu_subtask(
    kind: str, index: int, size_mb: float, size: int, cpu_s: float, held: Callable[[int], None]
) -> dict[str, Any]:
    """Build the subtask's data, compute on it for `cpu_s` of thread CPU time, drop it.

    cpu-numpy: the seed's float64 array, sorted in place again and again (numpy releases the
    GIL while sorting; in place: no temporary, so the data is all the subtask holds).
    cpu-python: the `bytes` payload's buffer, read by a Python loop that holds the GIL.
    """
    if kind == "cpu-numpy":
        data: Any = random_array(size_mb)
        step = _numpy_pass(data)
    else:
        data = build_bytes(index, size)
        step = _python_pass(data)
    held(index)
    passes, spent = spend(cpu_s, step)
    del data, step
    return {"task_id": index, "data_size_mb": size_mb, "cpu_s": spent, "passes": passes}
