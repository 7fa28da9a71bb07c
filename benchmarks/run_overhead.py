"""What `membench run` costs beyond the tasks it measures: whole command vs the tasks' walls.

Usage::

    python benchmarks/run_overhead.py --repetitions 3

Runs `membench run` with its defaults (4 scenarios x 3 runs of 10 x 20 MB, 4 workers, 0.5 s;
`--args` adds flags) `--repetitions` times. For each scenario, its wall is the time from its
first "starting worker" progress line to the next scenario's (the last one's runs to the command's
exit, so it also carries the plot, results.json and the broker's stop); its overhead is that
wall minus the sum of its runs' `duration_s` (task wall time measured inside the task).
Per run, results.json splits the overhead: `worker_ready_s` (start to ready) and
`round_trip_s - duration_s` (dispatch and result retrieval); the rest is stopping the worker and
the runner's own work. Target: overhead <= 2 s per scenario.
"""

from __future__ import annotations

import shlex
import statistics
import sys
from typing import Any

import _bench


def main(argv: list[str]) -> int:
    script = _bench.Script("run_overhead", __doc__, repetitions=3)
    script.add_argument("--args", default="", help="extra `membench run` flags, one string")
    args = script.parse(argv)

    per_scenario: dict[str, dict[str, list[float]]] = {}
    commands: list[dict[str, Any]] = []
    with _bench.workdir() as wd:
        for rep in range(args.repetitions):
            out = wd / f"rep{rep}"
            out.mkdir()
            doc = _bench.membench_run(shlex.split(args.args), out)
            walls = _bench.scenario_walls(doc)
            task_total = 0.0
            for scenario in doc["scenarios"]:
                name = scenario["scenario"]
                runs = [r for r in scenario["runs"] if r["status"] == "ok"]
                durations = sum(r["duration_s"] for r in runs)
                task_total += durations
                entry = per_scenario.setdefault(
                    name,
                    {
                        "wall_s": [],
                        "tasks_s": [],
                        "overhead_s": [],
                        "ready_s": [],
                        "dispatch_s": [],
                    },
                )
                entry["wall_s"].append(walls[name])
                entry["tasks_s"].append(durations)
                entry["overhead_s"].append(walls[name] - durations)
                entry["ready_s"].append(sum(r["worker_ready_s"] for r in runs))
                entry["dispatch_s"].append(sum(r["round_trip_s"] - r["duration_s"] for r in runs))
            first_start = min(t for t, text in doc["_lines"] if "starting worker" in text)
            commands.append(
                {
                    "wall_s": doc["_wall_s"],
                    "tasks_s": task_total,
                    "overhead_s": doc["_wall_s"] - task_total,
                    "before_first_scenario_s": first_start,
                    "runs_per_scenario": doc["parameters"]["runs"],
                }
            )
            print(f"repetition {rep + 1}/{args.repetitions}: {doc['_wall_s']:.1f} s", flush=True)

    rows = []
    results: dict[str, Any] = {}
    for name, entry in per_scenario.items():
        med = {k: statistics.median(v) for k, v in entry.items()}
        other = med["overhead_s"] - med["ready_s"] - med["dispatch_s"]
        results[name] = {
            **{k: _bench.summary(v) for k, v in entry.items()},
            "met": med["overhead_s"] <= 2.0,
        }
        rows.append(
            [
                name,
                med["wall_s"],
                med["tasks_s"],
                med["overhead_s"],
                med["ready_s"],
                med["dispatch_s"],
                other,
                "met" if med["overhead_s"] <= 2.0 else "MISSED",
            ]
        )
    runs = commands[0]["runs_per_scenario"]
    print(f"\n`membench run {args.args}`".rstrip() + f", medians of {args.repetitions} commands")
    print(f"per scenario, seconds, summed over its {runs} runs")
    _bench.print_table(
        [
            "scenario",
            "wall",
            "tasks",
            "overhead",
            "of which ready",
            "dispatch+result",
            "stop+other",
            "<= 2 s",
        ],
        rows,
    )
    whole = {k: statistics.median(c[k] for c in commands) for k in commands[0]}
    print(
        f"whole command: {whole['wall_s']:.1f} s wall, {whole['tasks_s']:.1f} s of tasks, "
        f"{whole['before_first_scenario_s']:.2f} s before the first scenario"
    )
    return script.save(membench_args=args.args, results=results, commands=commands)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
