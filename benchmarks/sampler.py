"""Punctuality of the runner's 50 ms sampler: ticks on time, late, missed; interval jitter.

Usage::

    python benchmarks/sampler.py --runs 5

Runs `membench run --runs N` twice: with the defaults (all four scenarios) and with the
original's concurrent use case (200 x 3 MB, 40 workers, 0.5 s, the three concurrent scenarios),
and reads each run's `sampler` block from results.json: ticks, ticks that started more than
10 ms late, ticks skipped because one took longer than the period. A tick is on time if it
started within 10 ms of its schedule; the ratio here counts missed ticks as not on time.
From each run's timeline (the samples between task start and result) it also reports the
interval between consecutive samples (p50, p99, max). Target: >= 95% of ticks within 10 ms.
"""

from __future__ import annotations

import itertools
import shlex
import sys
from typing import Any

import _bench

from membench.stats import percentile

CONFIGS = {
    "defaults": "",
    "concurrent-200x3MB": "--subtasks 200 --size 3 --workers 40 --time 0.5 "
    "--scenarios prefork_threads,gevent_threads,gevent_greenlets",
}
# The printed table: one row per config and scenario.
COLUMNS = (
    "config/scenario",
    "ticks",
    "late",
    "missed",
    "on time",
    "interval p50 ms",
    "p99 ms",
    "max ms",
    ">= 95%",
)


def main(argv: list[str]) -> int:
    script = _bench.Script("sampler", __doc__)
    script.add_argument("--runs", type=int, default=5)
    script.add_argument("--configs", default=",".join(CONFIGS))
    args = script.parse(argv)

    rows = []
    results: dict[str, Any] = {}
    for config in args.configs.split(","):
        run_args = [*shlex.split(CONFIGS[config]), "--runs", str(args.runs)]
        with _bench.workdir() as wd:
            doc = _bench.membench_run(run_args, wd)
        for scenario in doc["scenarios"]:
            ticks = late = missed = 0
            intervals: list[float] = []
            for r in scenario["runs"]:
                stats = r["sampler"]
                if not stats:
                    continue
                ticks += stats["ticks"]
                late += stats["late_ticks"]
                missed += stats["missed_ticks"]
                t = r["timeline"]["t_s"][1:]  # the first point is the baseline read, not a tick
                intervals += [(b - a) * 1000 for a, b in itertools.pairwise(t)]
            on_time = (ticks - late) / (ticks + missed) if ticks + missed else 0.0
            key = f"{config}/{scenario['scenario']}"
            results[key] = {
                "membench_command": "membench run " + " ".join(run_args),
                "ticks": ticks,
                "late_ticks": late,
                "missed_ticks": missed,
                "on_time_ratio": on_time,
                "interval_ms": {
                    "p50": percentile(intervals, 50),
                    "p99": percentile(intervals, 99),
                    "max": max(intervals),
                    "n": len(intervals),
                }
                if intervals
                else None,
                "met": on_time >= 0.95,
            }
            rows.append(
                [
                    key,
                    ticks,
                    late,
                    missed,
                    f"{on_time:.2%}",
                    results[key]["interval_ms"]["p50"] if intervals else "-",
                    results[key]["interval_ms"]["p99"] if intervals else "-",
                    results[key]["interval_ms"]["max"] if intervals else "-",
                    "met" if on_time >= 0.95 else "MISSED",
                ]
            )
        print(f"{config}: done", flush=True)
    print(f"\nsampler punctuality (50 ms period, late = > 10 ms), {args.runs} runs per scenario")
    _bench.print_table(COLUMNS, rows)
    return script.save(runs=args.runs, results=results)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
