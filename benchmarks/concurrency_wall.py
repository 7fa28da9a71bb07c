"""Wall time of the concurrent scenarios vs the ideal ceil(subtasks / workers) x time.

Usage::

    python benchmarks/concurrency_wall.py --runs 5

Runs `membench run --subtasks 200 --size 3 --workers 40 --time 0.5 --runs N` (the original's
published use case) for the three concurrent scenarios, reads results.json and reports per
scenario the median task wall time (`duration_s`, measured inside the task), its ratio to the
ideal ceil(200 / 40) x 0.5 s = 2.5 s, and the runner's round trip (send to result received).
Target: <= 1.05 x ideal. `--reuse-worker` measures a warmed long-lived worker instead of a fresh
one per run (a fresh worker's first batch also pays for growing its heap).

It also measures, in this process, the CPU one subtask's data work costs (build_payload plus
digest_payload of `--size` MB, median of 50) and from it a floor no scheduler can beat on this
machine: every round, `workers` subtasks build and digest at the same moment, so the last of
them starts holding (or finishes) `workers x cpu / cores` late:
floor = ideal + rounds x workers x cpu_per_subtask / cores. And the instrument's own CPU per
subtask inside the task (the task's observer reading /proc/self: thread count and RSS; the
subtask gauges and counter), with `workers` threads alive: its share of the wall is at most
rounds x workers x that.
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import time
from typing import Any

import _bench

from membench.workers.payload import build_payload, digest_payload

SCENARIOS = "prefork_threads,gevent_threads,gevent_greenlets"


def data_cpu_s(size_bytes: int, repetitions: int = 50) -> float:
    """Median CPU seconds of building and digesting one subtask's payload in this process."""
    values = []
    for i in range(repetitions):
        c0 = time.process_time()
        data = build_payload("bytes", i, size_bytes)
        digest_payload(data)
        del data
        values.append(time.process_time() - c0)
    return statistics.median(values)


def instrument_cpu_s(threads: int, calls: int = 2000) -> float:
    """CPU seconds per subtask of what the task does for measurement, not for the workload."""
    import threading

    from membench.workers.instrumentation import current_metrics
    from membench.workers.tasks import SubtaskObserver

    done = threading.Event()
    alive = [threading.Thread(target=done.wait) for _ in range(threads)]
    for thread in alive:
        thread.start()
    observer, metrics = SubtaskObserver(), current_metrics()
    try:
        c0 = time.process_time()
        for _ in range(calls):
            with metrics.subtask_running():
                observer.observe()
            metrics.subtasks_completed.inc()
        return (time.process_time() - c0) / calls
    finally:
        done.set()
        for thread in alive:
            thread.join()


def main(argv: list[str]) -> int:
    script = _bench.Script("concurrency_wall", __doc__)
    script.add_run_flags(subtasks=200, size=3.0, workers=40, time=0.5, runs=5, scenarios=SCENARIOS)
    script.add_argument(
        "--reuse-worker",
        action="store_true",
        help="one warmed worker per scenario (membench run --reuse-worker --warmup 1), "
        "instead of a fresh worker per run",
    )
    args = script.parse(argv)

    run_args = script.run_args()
    if args.reuse_worker:
        run_args += ["--reuse-worker", "--warmup", "1"]
    rounds = math.ceil(args.subtasks / args.workers)
    ideal = rounds * args.time
    cpu = data_cpu_s(int(args.size * 1024 * 1024))
    cores = os.cpu_count() or 1
    floor = ideal + rounds * min(args.workers, args.subtasks) * cpu / cores
    instrument = instrument_cpu_s(args.workers)
    instrument_share = rounds * min(args.workers, args.subtasks) * instrument
    with _bench.workdir() as wd:
        doc = _bench.membench_run(run_args, wd)

    rows = []
    results: dict[str, Any] = {}
    for scenario in doc["scenarios"]:
        runs = [r for r in scenario["runs"] if r["status"] == "ok" and not r["warmup"]]
        durations = [r["duration_s"] for r in runs]
        trips = [r["round_trip_s"] for r in runs]
        med = statistics.median(durations)
        results[scenario["scenario"]] = {
            "ideal_s": ideal,
            "duration_s": _bench.summary(durations),
            "round_trip_s": _bench.summary(trips),
            "ratio_median": med / ideal,
            "over_floor_s": med - floor,
            "ratio_min": min(durations) / ideal,
            "ratio_max": max(durations) / ideal,
            "failed_runs": len(scenario["runs"]) - len(runs),
            "met": med / ideal <= 1.05,
        }
        rows.append(
            [
                scenario["scenario"],
                len(runs),
                med,
                f"{min(durations):.2f}-{max(durations):.2f}",
                med / ideal,
                statistics.median(trips),
                "met" if med / ideal <= 1.05 else "MISSED",
            ]
        )
    print(
        f"\n{args.subtasks} x {args.size} MB, {args.workers} workers, {args.time} s: "
        f"ideal {ideal:.2f} s; medians of {args.runs} runs"
    )
    print(
        f"data work per subtask {cpu * 1000:.2f} ms CPU; floor on {cores} cores "
        f"{floor:.3f} s ({floor / ideal:.3f} x ideal)"
    )
    print(
        f"instrument inside the task: {instrument * 1000:.3f} ms CPU per subtask, at most "
        f"{instrument_share * 1000:.1f} ms of the wall ({instrument_share / ideal:.2%} of ideal)"
    )
    _bench.print_table(
        ["scenario", "runs", "wall s", "min-max", "x ideal", "round trip s", "<= 1.05 x"], rows
    )
    return script.save(
        membench_command="membench run " + " ".join(run_args),
        ideal_s=ideal,
        data_cpu_ms_per_subtask=cpu * 1000,
        cores=cores,
        floor_s=floor,
        floor_x_ideal=floor / ideal,
        instrument_cpu_ms_per_subtask=instrument * 1000,
        instrument_share_max_s=instrument_share,
        results=results,
        membench_wall_s=doc["_wall_s"],
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
