"""What a run does and derives per payload: before the baseline, import the payload's modules
(numpy, the user's) in the worker; after the task, the floor, excess and numpy's temporaries."""

from __future__ import annotations

import contextlib
from typing import Any

from membench.results.model import RunResult, TaskReport
from membench.run.sampler import TreeMemory, read_tree_memory
from membench.run.worker import WorkerFailed, WorkerProcess
from membench.workers.params import BatchParams
from membench.workers.subtasks import payload_imports

ROUNDS = 5


def preload_payload(app: Any, worker: WorkerProcess, payload: str) -> int | None:
    """Load `payload` in the worker; return the tree RSS that added (None: nothing to load).

    Prefork children get a copy each: a copy lingers, keeping its child busy, so Celery's fair
    scheduling hands the next copy to another child. Raises WorkerFailed naming --payload.
    """
    if not payload_imports(payload):
        return None
    before = read_tree_memory(worker.pid).rss
    children = set(worker.tree()) - {worker.pid} if worker.scenario.pool == "prefork" else set()
    executing, loaded = children or {worker.pid}, set[int]()
    kwargs = {"payload": payload, "linger_s": 0.2 if len(executing) > 1 else 0.0}
    for _ in range(ROUNDS):
        sent = [
            app.send_task("membench.load_payload", kwargs=kwargs, queue=worker.queue)
            for _ in executing - loaded
        ]
        try:
            loaded.update(reply.get(timeout=60)["pid"] for reply in sent)
        except Exception as exc:  # the spec does not resolve in the worker, or no answer
            raise WorkerFailed(f"--payload {payload}: {exc}") from None
        finally:
            for reply in sent:  # an interrupted wait must not leave Celery listening at exit
                with contextlib.suppress(Exception):
                    app.backend.remove_pending_result(reply)
        if executing <= loaded:
            break
    return read_tree_memory(worker.pid).rss - before


def derive_figures(
    result: RunResult, params: BatchParams, pool: str, baseline: TreeMemory, report: TaskReport
) -> None:
    """Fill a RunResult's payload-dependent figures from the baseline and the task's report.

    Floor: None for user code (unknown), so Excess is not derived either. Concurrent temporaries
    (numpy): peak - baseline - floor from the kernel's high-water marks (the tree's summed VmHWM),
    since np.std's temporaries live ~1 ms and 50 ms sampling misses them.
    """
    result.subtask_means = report.subtask_means
    result.floor_bytes = floor = params.floor_bytes(pool)
    if floor is None:
        return
    peak_rss, peak_pss = result.peak_rss_bytes, result.peak_pss_bytes
    if peak_rss is None or peak_pss is None:  # no sample of the task's window: nothing to derive
        return
    result.excess_rss_bytes = peak_rss - baseline.rss - floor
    result.excess_pss_bytes = peak_pss - baseline.pss - floor
    if params.payload == "numpy":
        exact = result.tree_hwm_sum_bytes or 0 if result.peak_method == "vmhwm" else 0
        temporaries = max(peak_rss, exact) - baseline.rss - floor
        result.concurrent_temporaries_bytes = temporaries
        result.temporaries_at_once = temporaries / params.size_bytes
