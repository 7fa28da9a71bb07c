"""Sizing, verified: a --concurrency 4 worker's memory predicted from a --concurrency 1 run, then
measured on a real -c 4 worker with 4 tasks in flight at once.

Usage::

    flock /tmp/membench-test.lock python benchmarks/sizing.py

1. `membench run --concurrency 1 --sizing 4` (the seed's four scenarios, `--subtasks 20 --size 2
   --time 0.5 --workers 4 --runs 3` by default): its results.json `sizing` is the prediction.
2. Per scenario, a real `-c 4` worker (prefork: started with `--max-memory-per-child` set to the
   predicted value). Its idle tree is read per process; then 4 process_batch are sent at once to
   its queue while a TreeSampler reads the tree's PSS from outside every 50 ms, and this
   process's memory cgroup usage is sampled beside it. Measured need: the tree's peak PSS while
   the 4 tasks ran. Per term: idle tree (predicted Fixed + 4 x idle child) and the tasks' rise
   (predicted 4 x Rise). Prefork: 4 more tasks at once must run in the same 4 children (a child
   Celery recycles finishes exiting only seconds later, but never runs another task).
3. Prefork only, the other side of the threshold: a `-c 1` worker whose --max-memory-per-child
   lies between the child's RSS at the start of a task and the task's peak. Celery recycles that
   child after its task (what it compares, ru_maxrss, includes the task's peak): the next task
   runs in a new child.
4. Prefork only: an idle `-c 1` worker read per process, to check the idle child's PSS that the
   prediction takes from the tree's sums.

Results: docs/results/sizing.json and the table in docs/sizing.md.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from typing import Any

import _bench

from membench.cgroup import find_memory_cgroup, read_cgroup_memory
from membench.processes import wait_for
from membench.procfs import read_process_memory
from membench.results.document import plain
from membench.run.sampler import TreeSampler
from membench.run.worker import WorkerOptions, WorkerProcess
from membench.units import MIB
from membench.workers.scenarios import SCENARIOS, SEED_SCENARIOS

N = 4


class CgroupSampler(threading.Thread):
    """This process's memory cgroup usage every 50 ms (no samples without a cgroup)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.cgroup = find_memory_cgroup()
        self.samples: list[tuple[float, int]] = []
        self.stopping = threading.Event()

    def now(self) -> int | None:
        return read_cgroup_memory(self.cgroup).usage if self.cgroup else None

    def run(self) -> None:
        while not self.stopping.wait(0.05):
            if (usage := self.now()) is not None:
                self.samples.append((time.time(), usage))

    def peak(self, start: float, end: float) -> int | None:
        return max((usage for t, usage in self.samples if start <= t <= end), default=None)


def processes(worker: WorkerProcess) -> list[dict[str, float]]:
    """The tree now, per process in pid order (the parent first; children in fork order)."""
    rows: list[dict[str, float]] = []
    for pid in sorted(worker.tree()):
        memory = read_process_memory(pid)
        mb = {f"{k}_mb": round((getattr(memory, k) or 0) / MIB, 2) for k in ("rss", "pss", "uss")}
        rows.append({"pid": pid, **mb})
    return rows


def start(ws: _bench.Workers, scenario: str, concurrency: int, kib: int | None) -> WorkerProcess:
    return ws.start(scenario, concurrency, options=WorkerOptions(max_memory_per_child_kib=kib))


def batch(args: Any) -> dict[str, Any]:
    return {"subtasks": args.subtasks, "size_mb": args.size, "hold_s": args.time}


def send(ws: _bench.Workers, worker: WorkerProcess, args: Any, count: int) -> list[dict[str, Any]]:
    """`count` process_batch sent at once; their reports."""
    sent = [ws.send_batch(worker, workers=args.workers, **batch(args)) for _ in range(count)]
    return [r.get(timeout=120) for r in sent]


def in_flight(ws: _bench.Workers, scenario: str, args: Any, kib: int | None) -> dict[str, Any]:
    """A -c N worker, N tasks sent at once: idle tree, peak tree PSS, cgroup usage, recycling."""
    cgroup = CgroupSampler()
    cgroup.start()
    before = cgroup.now()
    worker = start(ws, scenario, N, kib)
    sampler = TreeSampler(worker.pid, 0.05).start()
    try:
        wait_for(lambda: len(sampler.samples) >= 5, timeout=10)
        idle_rows = processes(worker)
        idle = statistics.median(s.pss for s in sampler.samples[-5:])
        reports = send(ws, worker, args, N)
    finally:
        sampler.stop()
        cgroup.stopping.set()
    start_t = min(r["started_at"] for r in reports)
    end_t = max(r["finished_at"] for r in reports)
    peak = max(s.pss for s in sampler.between(start_t, end_t))
    cgroup_peak = cgroup.peak(start_t, end_t)
    prefork = SCENARIOS[scenario].pool == "prefork"
    again = send(ws, worker, args, N) if prefork else []
    ws.stop(worker)
    return {
        "idle_tree_pss_bytes": round(idle),
        "peak_tree_pss_bytes": peak,
        "idle_processes": idle_rows,
        "task_pids": sorted({r["pid"] for r in reports}),
        "all_at_once": max(r["started_at"] for r in reports)
        < min(r["finished_at"] for r in reports),
        "task_peak_rss_bytes": [r["peak_rss_bytes"] for r in reports],
        "cgroup": None
        if cgroup.cgroup is None or before is None or cgroup_peak is None
        else {
            "directory": str(cgroup.cgroup.directory),
            "version": cgroup.cgroup.files.version,
            "usage_before_worker_bytes": before,
            "peak_usage_during_tasks_bytes": cgroup_peak,
            "delta_bytes": cgroup_peak - before,
        },
        "max_memory_per_child_kib": kib,
        # The same children ran the second round: none was recycled after its first task.
        "children_kept": {r["pid"] for r in again} == {r["pid"] for r in reports}
        if prefork
        else None,
        "second_round_task_peak_rss_bytes": [r["peak_rss_bytes"] for r in again],
    }


def recycles_under_peak(ws: _bench.Workers, scenario: str, args: Any) -> dict[str, Any]:
    """-c 1, one task, --max-memory-per-child between the child's RSS at its start and its peak."""
    probe = start(ws, scenario, 1, None)
    (report,) = send(ws, probe, args, 1)
    ws.stop(probe)
    kib = (report["start_rss_bytes"] + report["peak_rss_bytes"]) // 2 // 1024
    worker = start(ws, scenario, 1, kib)
    first, second = send(ws, worker, args, 1) + send(ws, worker, args, 1)
    ws.stop(worker)
    return {
        "start_rss_kib": report["start_rss_bytes"] // 1024,
        "end_rss_kib": report["end_rss_bytes"] // 1024,
        "peak_rss_kib": report["peak_rss_bytes"] // 1024,
        "max_memory_per_child_kib": kib,
        "recycled": first["pid"] != second["pid"],
    }


def idle_child(ws: _bench.Workers, scenario: str) -> dict[str, Any]:
    worker = start(ws, scenario, 1, None)
    rows = processes(worker)
    ws.stop(worker)
    return {"parent": rows[0], "child": rows[1]}


def comparison(guess: dict[str, Any], measured: dict[str, Any]) -> dict[str, Any]:
    """Predicted against measured, in total and per term (MB): the idle tree, the tasks' rise."""
    idle, peak = measured["idle_tree_pss_bytes"], measured["peak_tree_pss_bytes"]
    return {
        "predicted_mb": round(guess["need_bytes"] / MIB, 1),
        "measured_mb": round(peak / MIB, 1),
        "error": round((guess["need_bytes"] - peak) / peak, 4),
        "idle_predicted_mb": round(
            (guess["fixed_bytes"] + N * (guess.get("child_pss_bytes") or 0)) / MIB, 1
        ),
        "idle_measured_mb": round(idle / MIB, 1),
        "rise_predicted_mb": round(N * guess["task_rise_bytes"] / MIB, 1),
        "rise_measured_mb": round((peak - idle) / MIB, 1),
    }


def main(argv: list[str]) -> int:
    spec = f"subtasks=20 size=2.0 time=0.5 workers=4 runs=3 scenarios={','.join(SEED_SCENARIOS)}"
    args = _bench.parser(__doc__, spec).parse_args(argv)
    run_args = [f"--{item.partition('=')[0]}" for item in spec.split()]
    run_args = [x for flag in run_args for x in (flag, str(getattr(args, flag[2:])))]
    t0 = time.monotonic()
    run = _bench.membench_run([*run_args, "--concurrency", "1", "--sizing", str(N)])
    predicted = {a.scenario: plain(a) for a in run.results.sizing.approaches}
    print(run.stdout[run.stdout.find("Sizing at") :])
    rows, results = [], {}
    with _bench.workers() as ws:
        for scenario in args.scenarios.split(","):
            guess = predicted[scenario]
            kib = guess.get("max_memory_per_child_kib")
            measured = in_flight(ws, scenario, args, kib)
            entry = {"predicted": guess, "measured": measured}
            entry["comparison"] = comparison(guess, measured)
            if SCENARIOS[scenario].pool == "prefork":
                entry["recycles_under_peak"] = recycles_under_peak(ws, scenario, args)
                entry["idle_c1"] = idle_child(ws, scenario)
            results[scenario] = entry
            rows.append(
                {"scenario": scenario, **entry["comparison"], "threshold KiB": kib}
                | {"kept at it": measured["children_kept"]}
                | {"recycled under peak": entry.get("recycles_under_peak", {}).get("recycled")}
            )
    _bench.print_table("sizing at 4: predicted against measured, MB", rows)
    return _bench.save(
        "sizing",
        argv,
        args.output or _bench.REPO / "docs" / "results" / "sizing.json",
        parameters={**batch(args), "workers": args.workers, "runs": args.runs, "concurrency": N},
        prediction_from=run.results.command,
        wall_s=round(time.monotonic() - t0, 1),
        scenarios=results,
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
