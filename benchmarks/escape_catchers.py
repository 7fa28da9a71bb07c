"""What it costs to catch processes that escape a worker: membench's child subreaper, against a
memory cgroup per worker (the other candidate).

Usage::

    python benchmarks/escape_catchers.py --repetitions 200

Subreaper: the prctl at start, and per worker stopped one look at this process's children
(membench.descendants.Adopter.end_strays, with no stray). Cgroup: per worker, make a memory
cgroup under this process's own and move a freshly started process into it, then (the process
gone, its stop not counted) read what is left in it and remove it; skipped where no cgroup can
be made. Medians, microseconds.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

import _bench

from membench.cgroup import find_memory_cgroup
from membench.descendants import Adopter


def micros(samples: list[float]) -> dict[str, float]:
    return {"median_us": statistics.median(samples) * 1e6, "max_us": max(samples) * 1e6}


def subreaper(repetitions: int) -> dict[str, dict[str, float]]:
    starts, looks = [], []
    for _ in range(repetitions):
        t0 = time.perf_counter()
        adopter = Adopter()
        starts.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        adopter.end_strays()
        looks.append(time.perf_counter() - t0)
    return {"adopt": micros(starts), "per_worker_stopped": micros(looks)}


def cgroup_per_worker(repetitions: int) -> dict[str, dict[str, float]] | str:
    own = find_memory_cgroup()
    if own is None:
        return "no memory cgroup of this process found"
    cycles = []
    for index in range(repetitions):
        child = subprocess.Popen(["sleep", "30"])
        try:
            t0 = time.perf_counter()
            path = own.directory / f"membench-bench-{os.getpid()}-{index}"
            try:
                path.mkdir()
            except OSError as exc:
                return f"cannot make a cgroup under {own.directory}: {exc.strerror}"
            (path / "cgroup.procs").write_text(str(child.pid))
            elapsed = time.perf_counter() - t0
            child.kill()  # the worker's stop: not the cgroup's cost
            child.wait()
            t0 = time.perf_counter()
            (path / "cgroup.procs").read_text()  # what is left in it, as a stop would look
            path.rmdir()
            cycles.append(elapsed + time.perf_counter() - t0)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    return {"make_move_remove": micros(cycles)}


def main(argv: list[str]) -> int:
    args = _bench.parser(__doc__, "repetitions=200").parse_args(argv)
    results = {
        "subreaper": subreaper(args.repetitions),
        "cgroup_per_worker": cgroup_per_worker(args.repetitions),
    }
    for name, figures in results.items():
        print(name, figures)
    return _bench.save(
        "escape_catchers", argv, args.output, repetitions=args.repetitions, results=results
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
