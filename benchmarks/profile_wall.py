"""Where a concurrent scenario's time beyond the ideal goes: py-spy profiles of the task's process.

Usage::

    pip install py-spy
    python benchmarks/profile_wall.py --runs 5
    python benchmarks/profile_wall.py --runs 5 --fresh     # writes profile_wall_fresh.json

For each concurrent scenario, one worker (started as the runner starts it) runs the
`membench_run.py wall` case (200 subtasks x 3 MB, 40 workers, 0.5 s) once unprofiled, then `--runs`
times (`--fresh`: each run on a new worker, nothing unprofiled) while `py-spy record
--nonblocking` samples the process that runs the task (the prefork child, or the gevent worker).
py-spy keeps the samples of threads it judges active (running or runnable): a thread blocked in a
sleep, a GIL wait or epoll is left out, but with 40 OS threads on 2 cores, time spent runnable and
waiting for a core counts too. Each sample is sorted by what the innermost membench frame was
doing; samples / rate / runs gives active seconds per task.

The question it answers: is the wall above ceil(200/40) x 0.5 s the instrument (the exporter, the
task's observer and gauges) or the workload's own data work (build, digest, free)?
"""

from __future__ import annotations

import collections
import math
import shutil
import signal
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import _bench

SCENARIOS = "prefork_threads,gevent_threads,gevent_greenlets"

# First match wins, innermost frame first; a frame is "function (path:line)".
CATEGORIES = (
    ("build", ("build_payload", "build_bytes", "build_records", "build_dicts", "_pattern")),
    ("digest", ("digest_payload",)),
    ("instrument in the task", ("observe (", "subtask_running", "/prometheus_client/")),
    ("exporter", ("/exporter/",)),
    ("subtask (free, sleep call)", ("subtask (",)),
    ("task pool (threads/greenlets)", ("run_batch", "_run_threads", "_run_greenlets")),
)


OTHER = "celery, kombu, gevent hub, other"


def categorize(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, needles in CATEGORIES:
            if any(needle in frame for needle in needles):
                return name
    return OTHER


def parse_raw(path: Path) -> collections.Counter[str]:
    """Samples per category from py-spy's raw (collapsed) output: `frame;frame;... count`."""
    categories: collections.Counter[str] = collections.Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        categories[categorize(stack.split(";"))] += int(count)
    return categories


def task_pid(worker: Any) -> int:
    """The process that runs tasks: the prefork child, or the gevent worker itself."""
    children = [pid for pid in worker.tree() if pid != worker.pid]
    return children[0] if worker.scenario.pool == "prefork" else worker.pid


def profile_runs(
    py_spy: str, ws: _bench.Workers, worker: Any, params: dict[str, Any], runs: int, rate: int
) -> tuple[list[float], Path]:
    """Task walls of `runs` batches sampled by py-spy, and the file of its samples."""
    raw = ws.directory / f"profile-{worker.queue}.txt"
    argv = [py_spy, "record", "--nonblocking", "--format", "raw", "--rate", str(rate)]
    argv += ["--pid", str(task_pid(worker)), "--output", str(raw)]
    spy = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert spy.stdout is not None
        for line in spy.stdout:  # attached once it says so: no batch runs unsampled
            if "Sampling process" in line:
                break
        else:
            raise RuntimeError(f"py-spy exited {spy.wait()} before sampling")
        walls = [ws.send_batch(worker, **params).get(timeout=120)["wall_s"] for _ in range(runs)]
        spy.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        spy.communicate(timeout=60)
    finally:
        if spy.poll() is None:
            spy.kill()
            spy.wait()
    return walls, raw


def main(argv: list[str]) -> int:
    parser = _bench.parser(__doc__, f"runs=5 rate=200 scenarios={SCENARIOS}")
    parser.add_argument("--fresh", action="store_true", help="each run on a fresh worker")
    args = parser.parse_args(argv)
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        sys.exit("profile_wall: error: py-spy is not on PATH (pip install py-spy)")
    subtasks, size, workers, hold = 200, 3.0, 40, 0.5
    params = {"subtasks": subtasks, "size_mb": size, "hold_s": hold, "workers": workers}
    ideal = math.ceil(subtasks / workers) * hold
    walls: dict[str, list[float]] = {}
    samples: dict[str, collections.Counter[str]] = {}
    with _bench.workers() as ws:
        for scenario in args.scenarios.split(","):
            walls[scenario], samples[scenario] = [], collections.Counter()
            # Warm: one worker, one unprofiled batch first. Fresh: a new worker per run, as
            # `membench run` does by default, so its first batch also grows the heap.
            batches = [1] * args.runs if args.fresh else [args.runs]
            for runs in batches:
                worker = ws.start(scenario)
                if not args.fresh:
                    ws.send_batch(worker, **params).get(timeout=120)
                task_walls, raw = profile_runs(py_spy, ws, worker, params, runs, args.rate)
                walls[scenario] += task_walls
                samples[scenario] += parse_raw(raw)
                ws.stop(worker)
    names = [name for name, _ in CATEGORIES] + [OTHER]
    results: dict[str, Any] = {}
    for name, runs in walls.items():
        wall = statistics.median(runs)
        active = {k: samples[name][k] / args.rate / len(runs) for k in names}
        data = active["build"] + active["digest"] + active["subtask (free, sleep call)"]
        instrument = active["instrument in the task"] + active["exporter"]
        results[name] = {
            "walls_s": runs,
            **{"wall_s": wall, "over_ideal_s": wall - ideal},
            **{"data_work_active_s": data, "instrument_active_s": instrument},
            "active_s_per_task": active,
        }
    _bench.print_table(
        f"{subtasks} x {size} MB, {workers} workers, {hold} s: ideal {ideal:.2f} s; median task "
        "wall; active s per task (py-spy samples) by what the innermost membench frame did",
        [{"scenario": n} | r | r["active_s_per_task"] for n, r in results.items()],
    )
    version = subprocess.run([py_spy, "--version"], capture_output=True, text=True).stdout
    return _bench.save(
        "profile_wall_fresh" if args.fresh else "profile_wall",
        argv,
        args.output,
        **{"params": params, "py_spy": version.strip(), "rate_hz": args.rate},
        worker="fresh per run" if args.fresh else "one per scenario, warmed by one batch",
        **{"ideal_s": ideal, "results": results},
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
