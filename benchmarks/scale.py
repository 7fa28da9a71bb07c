"""Scale: 500 concurrent subtasks of 5000, in both gevent scenarios.

Usage::

    python benchmarks/scale.py

Runs `membench run --workers 500 --subtasks 5000 --size 0.1 --time 0.5 --runs 5
--scenarios gevent_threads,gevent_greenlets` and reports per scenario whether every subtask
completed, the task wall vs the ideal ceil(5000 / 500) x 0.5 s, the peak tree RSS and PSS, the
baseline, the OS threads the task used, and the whole command's wall time.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import _bench


def main(argv: list[str]) -> int:
    script = _bench.Script("scale", __doc__)
    script.add_run_flags(
        workers=500,
        subtasks=5000,
        size=0.1,
        time=0.5,
        runs=5,
        scenarios="gevent_threads,gevent_greenlets",
    )
    args = script.parse(argv)

    run_args = script.run_args()
    ideal = math.ceil(args.subtasks / args.workers) * args.time
    with _bench.workdir() as wd:
        doc = _bench.membench_run(run_args, wd)
    walls = _bench.scenario_walls(doc)

    rows = []
    results: dict[str, Any] = {}
    mib = _bench.MIB
    for scenario in doc["scenarios"]:
        for r in scenario["runs"]:
            ok = r["status"] == "ok" and r["subtasks_done"] == args.subtasks
            results.setdefault(scenario["scenario"], []).append(
                {
                    "completed": ok,
                    "status": r["status"],
                    "reason": r["reason"],
                    "subtasks_done": r["subtasks_done"],
                    "duration_s": r["duration_s"],
                    "x_ideal": r["duration_s"] / ideal if r["duration_s"] else None,
                    "round_trip_s": r["round_trip_s"],
                    "worker_ready_s": r["worker_ready_s"],
                    "baseline_rss_bytes": r["baseline_rss_bytes"],
                    "peak_rss_bytes": r["peak_rss_bytes"],
                    "peak_pss_bytes": r["peak_pss_bytes"],
                    "task_peak_rss_bytes": r["task_peak_rss_bytes"],
                    "retained_rss_bytes": r["retained_rss_bytes"],
                    "max_os_threads": r["max_os_threads"],
                    "sampler": r["sampler"],
                }
            )
            rows.append(
                [
                    f"{scenario['scenario']} run {r['run']}",
                    "yes" if ok else f"NO: {r['reason']}",
                    r["duration_s"] or 0.0,
                    (r["duration_s"] or 0.0) / ideal,
                    (r["baseline_rss_bytes"] or 0) / mib,
                    (r["peak_rss_bytes"] or 0) / mib,
                    (r["peak_pss_bytes"] or 0) / mib,
                    r["max_os_threads"],
                ]
            )
    print(
        f"\n{args.subtasks} x {args.size} MB, {args.workers} workers, {args.time} s "
        f"(ideal {ideal:.1f} s); `membench run` took {doc['_wall_s']:.1f} s"
    )
    _bench.print_table(
        [
            "scenario",
            "completed",
            "wall s",
            "x ideal",
            "baseline MiB",
            "peak RSS MiB",
            "peak PSS MiB",
            "OS threads",
        ],
        rows,
    )
    summary = {}
    for name, runs in results.items():
        ok = [r for r in runs if r["completed"]]
        summary[name] = {
            "completed_runs": f"{len(ok)}/{len(runs)}",
            **{
                key: _bench.summary([r[key] for r in ok]) if ok else None
                for key in ("duration_s", "x_ideal", "peak_rss_bytes", "peak_pss_bytes")
            },
        }
        if ok:
            print(
                f"{name}: {len(ok)}/{len(runs)} completed; median wall "
                f"{summary[name]['duration_s']['median']:.3f} s "
                f"({summary[name]['x_ideal']['median']:.3f} x ideal), median peak RSS "
                f"{summary[name]['peak_rss_bytes']['median'] / mib:.1f} MiB, PSS "
                f"{summary[name]['peak_pss_bytes']['median'] / mib:.1f} MiB"
            )
    return script.save(
        membench_command="membench run " + " ".join(run_args),
        ideal_s=ideal,
        membench_wall_s=doc["_wall_s"],
        scenario_walls_s=walls,
        summary=summary,
        results=results,
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
