"""What `membench run` costs beyond the tasks it measures, and how close its walls and its sampler
come to their ideal: one topic, a part per question, each running `membench run` as a user would
and reading its results.json.

`python benchmarks/membench_run.py PART [--args "MORE RUN FLAGS"] [flags]` (`PART --help` lists
them). The parts, each with the JSON it writes to docs/results/performance/ (`--output` to change):

- `wall` (concurrency_wall; concurrency_wall_reuse with `--reuse-worker`): `membench run
  --subtasks 200 --size 3 --workers 40 --time 0.5 --runs N` (the seed's published use case) over
  the three concurrent scenarios: the median task wall (`duration_s`, measured inside the task)
  against the ideal ceil(subtasks / workers) x time, and the round trip. `--reuse-worker`: one
  worker per scenario warmed by one run (`--reuse-worker --warmup 1`), instead of a fresh one per
  run (whose first batch also grows its heap). In this process it also measures the CPU of one
  subtask's data work (build and digest, median of 50) and from it a floor no scheduler beats
  here: every round, `workers` subtasks build and digest at once, so the last of them is
  `workers x cpu / cores` late: floor = ideal + rounds x workers x cpu / cores. And the
  instrument's CPU per subtask inside the task (observer, gauges, counter) with `workers` threads
  alive: its share of the wall is at most rounds x workers x that. Target: <= 1.05 x ideal.
- `overhead` (run_overhead): `membench run` with its defaults, `--repetitions` times. A
  scenario's wall runs from its first "starting worker" line to the next scenario's (the last
  one's to the exit: it also carries the plot, results.json and the broker's stop); its overhead
  is that wall minus its runs' `duration_s`, split into `worker_ready_s`, dispatch + result
  (`round_trip_s - duration_s`) and the rest. Headline: the command's wall over its ideal (every
  measured run's ideal task wall summed), median of the repetitions; target <= 1.10.
- `unmoved BEFORE.json AFTER.json` (run_unmoved): no run, two results.json of the same command
  before and after a change of the runner (`membench run --runs 5`): per scenario, whether the
  min-max ranges of the baselines, peaks (RSS and PSS) and task walls overlap, and whether each
  side's median lies inside the other's range. Run both from a shell, never from Python: a
  Python process alive beside the run (this script, say) shares the interpreter's pages with
  the worker and lowers every PSS by ~1.6 MiB.
- `phases` (run_phases): `membench run` (defaults), each repetition in a process of its own
  with the runner's methods timed (the interpreter and imports before its start excluded): the
  time to the first worker ready, between one run's end and the next worker ready (summed: the
  stops and the 11 starts), the runs themselves (dispatch, task, the reads after it) and after
  the last run (the plot, results.json, the broker's stop).
- `sampler` (sampler): the `sampler` block of results.json of `membench run --runs N` with the
  defaults and with the concurrent 200 x 3 MB case: ticks, ticks over 10 ms late, ticks missed
  (counted as not on time), and the interval between samples of each run's timeline (its first
  point is the baseline read, not a tick). Target: >= 95% of ticks on time.
- `scale` (scale): `--workers 500 --subtasks 5000 --size 0.1 --time 0.5 --runs 5` in both gevent
  scenarios: runs completed, wall against the ideal, baseline, peak tree RSS and PSS, OS threads.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _bench

from membench.results.document import read_results
from membench.results.model import (
    BenchmarkParameters,
    BenchmarkResults,
    BenchmarkScenario,
    RunResult,
)
from membench.stats import percentile
from membench.units import MIB
from membench.workers.params import BatchParams
from membench.workers.payload import build_payload, digest_payload

CONCURRENT = "--scenarios prefork_threads,gevent_threads,gevent_greenlets"
SEED_CASE = f"--subtasks 200 --size 3 --workers 40 --time 0.5 {CONCURRENT}"


def ideal_s(parameters: BenchmarkParameters) -> float:
    return math.ceil(parameters.subtasks / parameters.workers) * parameters.time_s


def measured(scenario: BenchmarkScenario) -> list[RunResult]:
    return [r for r in scenario.runs if r.status == "ok" and not r.warmup]


def seconds(value: float | None) -> float:
    assert value is not None, "a successful run records every time figure"
    return value


def data_cpu_s(size_bytes: int, repetitions: int = 50) -> float:
    """Median CPU seconds of building and digesting one subtask's payload in this process."""
    values = []
    for i in range(repetitions):
        c0 = time.process_time()
        digest_payload(build_payload("bytes", i, size_bytes))
        values.append(time.process_time() - c0)
    return statistics.median(values)


def instrument_cpu_s(threads: int, calls: int = 2000) -> float:
    """CPU seconds per subtask of what the task does for measurement, not for the workload."""
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


def wall(args: argparse.Namespace, extra: list[str]) -> dict[str, Any]:
    reuse = ["--reuse-worker", "--warmup", "1"] if args.reuse_worker else []
    run_args = [*shlex.split(SEED_CASE), "--runs", str(args.runs), *reuse, *extra]
    run = _bench.membench_run(run_args)
    p = run.results.parameters
    ideal, rounds = ideal_s(p), math.ceil(p.subtasks / p.workers)
    live = min(p.workers, p.subtasks)
    cpu, cores = data_cpu_s(int(p.size_mb * MIB)), os.cpu_count() or 1
    floor = ideal + rounds * live * cpu / cores
    instrument = instrument_cpu_s(p.workers)
    results = {}
    for scenario in run.results.scenarios:
        durations = [seconds(r.duration_s) for r in measured(scenario)]
        median = statistics.median(durations)
        results[scenario.scenario] = {
            "duration_s": _bench.summary(durations),
            "round_trip_s": _bench.summary([seconds(r.round_trip_s) for r in measured(scenario)]),
            "ratio_median": median / ideal,
            "over_floor_s": median - floor,
            "failed_runs": sum(not r.warmup for r in scenario.runs) - len(durations),
            "met": median / ideal <= 1.05,
        }
    print(f"\ndata work per subtask {cpu * 1000:.2f} ms CPU; floor {floor:.3f} s on {cores} cores")
    print(f"instrument inside the task: {instrument * 1000:.3f} ms CPU per subtask")
    _bench.print_table(
        f"task wall, s, against the ideal {ideal:.2f} s",
        [{"scenario": s} | r for s, r in results.items()],
    )
    return {
        "membench_command": " ".join(run.results.command),
        **{"ideal_s": ideal, "data_cpu_ms_per_subtask": cpu * 1000, "cores": cores},
        **{"floor_s": floor, "floor_x_ideal": floor / ideal},
        "instrument_cpu_ms_per_subtask": instrument * 1000,
        "instrument_share_max_s": rounds * live * instrument,
        **{"results": results, "membench_wall_s": run.wall_s},
    }


def command_ideal_s(results: BenchmarkResults) -> float:
    """The sum of every measured run's ideal task wall: what a runner without overhead takes."""
    p = results.parameters
    total = 0.0
    for scenario in results.scenarios:
        batch = {"subtasks": p.subtasks, "size_mb": p.size_mb, "hold_s": p.time_s}
        batch |= {"workers": p.workers, "strategy": scenario.strategy, "payload": p.payload}
        total += p.runs * BatchParams.validate(batch).ideal_seconds()
    return total


# What must not move when the runner changes: per scenario, each side's median inside the other
# side's min-max over the same runs.
UNMOVED = (
    "baseline_rss_bytes",
    "baseline_pss_bytes",
    "peak_rss_bytes",
    "peak_pss_bytes",
    "duration_s",
)


def figures_unmoved(before: BenchmarkResults, after: BenchmarkResults) -> dict[str, Any]:
    """Per scenario and figure: both medians and ranges, whether the ranges overlap, and the
    stricter: whether each median lies inside the other side's min-max (the same tree twice,
    minutes apart, already fails that on most figures here: drifts of 0.05-0.1 MiB)."""
    by_name = {s.scenario: s for s in after.scenarios}
    checked: dict[str, Any] = {}
    for a in before.scenarios:
        b = by_name[a.scenario]
        for key in UNMOVED:
            fa, fb = getattr(a.summary, key), getattr(b.summary, key)
            if fa is None or fb is None:
                continue
            checked[f"{a.scenario}/{key}"] = {
                "before": {"median": fa.median, "min": fa.min, "max": fa.max},
                "after": {"median": fb.median, "min": fb.min, "max": fb.max},
                "overlap": fa.min <= fb.max and fb.min <= fa.max,
                "medians_inside": fa.min <= fb.median <= fa.max and fb.min <= fa.median <= fb.max,
            }
    return checked


def print_unmoved(checked: dict[str, Any]) -> None:
    def shown(key: str, f: dict[str, float]) -> str:
        unit, digits = (1.0, 3) if key.endswith("_s") else (MIB, 2)
        values = [f[k] / unit for k in ("median", "min", "max")]
        return f"{values[0]:.{digits}f} ({values[1]:.{digits}f}-{values[2]:.{digits}f})"

    _bench.print_table(
        "unmoved: min-max ranges overlap; and each median inside the other's (MiB; s)",
        [
            {
                "scenario/figure": name,
                "before": shown(name, entry["before"]),
                "after": shown(name, entry["after"]),
                "overlap": entry["overlap"],
                "medians inside": entry["medians_inside"],
            }
            for name, entry in checked.items()
        ],
    )


def unmoved(args: argparse.Namespace, extra: list[str]) -> dict[str, Any]:
    documents = []
    for path in (args.before, args.after):
        document = read_results(path)
        assert isinstance(document, BenchmarkResults), f"{path}: not a `membench run` results.json"
        documents.append(document)
    checked = figures_unmoved(*documents)
    print_unmoved(checked)
    overlap = all(entry["overlap"] for entry in checked.values())
    inside = sum(entry["medians_inside"] for entry in checked.values())
    print(f"\nevery figure's ranges overlap: {overlap}; medians inside: {inside}/{len(checked)}")
    before, after = (str(path) for path in (args.before, args.after))
    fields = {"before": before, "after": after, "all_overlap": overlap}
    return fields | {"medians_inside": f"{inside}/{len(checked)}", "figures": checked}


def timed_run(extra: list[str], marks_path: Path) -> int:
    """One `membench run` in this process with its runner's methods timed; the times of each
    worker ready and each run's end go to `marks_path`. A process of its own per run: the
    membench Celery app is configured once per process."""
    from membench.cli.main import main as membench
    from membench.run.runner import Runner
    from membench.run.worker import WorkerProcess

    marks: list[tuple[str, float]] = []
    for cls, name in ((WorkerProcess, "wait_ready"), (Runner, "_one_run")):
        original = getattr(cls, name)

        def timed(*a: Any, original: Any = original, name: str = name, **k: Any) -> Any:
            try:
                return original(*a, **k)
            finally:
                marks.append((name, time.monotonic()))

        setattr(cls, name, timed)
    with (
        tempfile.TemporaryDirectory(prefix="membench-bench-") as output,
        open(os.devnull, "w") as table,
        contextlib.redirect_stdout(table),
    ):
        t0 = time.monotonic()
        code = membench(["run", *extra, "--output", output])
        marks.append(("end", time.monotonic()))
    marks_path.write_text(json.dumps({"t0": t0, "code": code, "marks": marks}))
    return code


def phases(args: argparse.Namespace, extra: list[str]) -> dict[str, Any]:
    figures: dict[str, list[float]] = {}
    for rep in range(args.repetitions):
        with tempfile.TemporaryDirectory(prefix="membench-bench-") as scratch:
            marks_path = Path(scratch) / "marks.json"
            argv = [sys.executable, __file__, "phases", "--timed-run", str(marks_path)]
            subprocess.run([*argv, "--args", shlex.join(extra)], check=True)
            timed = json.loads(marks_path.read_text())
        ready = [t for name, t in timed["marks"] if name == "wait_ready"]
        ended = [t for name, t in timed["marks"] if name == "_one_run"]
        end = timed["marks"][-1][1]
        entry = {
            "to_first_ready_s": ready[0] - timed["t0"],
            "between_runs_s": sum(r - e for e, r in zip(ended, ready[1:], strict=False)),
            "runs_s": sum(e - r for r, e in zip(ready, ended, strict=True)),
            "after_last_run_s": end - ended[-1],
            "command_s": end - timed["t0"],
        }
        for key, value in entry.items():
            figures.setdefault(key, []).append(value)
        print(f"repetition {rep + 1}/{args.repetitions}: {entry['command_s']:.1f} s", flush=True)
    results = {key: _bench.summary(values) for key, values in figures.items()}
    _bench.print_table(
        f"membench run {shlex.join(extra)}: s, medians of {args.repetitions}", [results]
    )
    return {"membench_args": shlex.join(extra), "results": results}


def overhead(args: argparse.Namespace, extra: list[str]) -> dict[str, Any]:
    per_scenario: dict[str, dict[str, list[float]]] = {}
    commands = []
    for rep in range(args.repetitions):
        run = _bench.membench_run(extra)
        ideal = command_ideal_s(run.results)
        tasks_total = 0.0
        for scenario in run.results.scenarios:
            runs = measured(scenario)
            tasks = sum(seconds(r.duration_s) for r in runs)
            tasks_total += tasks
            wall = run.walls[scenario.scenario]
            figures = {"wall_s": wall, "tasks_s": tasks, "overhead_s": wall - tasks}
            trips = sum(seconds(r.round_trip_s) for r in runs)
            figures |= {"ready_s": sum(seconds(r.worker_ready_s) for r in runs)}
            figures |= {"dispatch_s": trips - tasks}
            for key, value in figures.items():
                per_scenario.setdefault(scenario.scenario, {}).setdefault(key, []).append(value)
        ratio = run.wall_s / ideal
        commands.append({"wall_s": run.wall_s, "tasks_s": tasks_total, "ideal_s": ideal})
        commands[-1] |= {"wall_x_ideal": ratio, "tasks_x_ideal": tasks_total / ideal}
        print(
            f"repetition {rep + 1}/{args.repetitions}: {run.wall_s:.1f} s, "
            f"{ratio:.3f} x the ideal {ideal:.1f} s",
            flush=True,
        )
    results: dict[str, dict[str, Any]] = {}
    for name, entry in per_scenario.items():
        results[name] = {k: _bench.summary(v) for k, v in entry.items()}
        results[name]["met"] = statistics.median(entry["overhead_s"]) <= 2.0
    _bench.print_table(
        f"per scenario, s, summed over its runs, medians of {args.repetitions} commands",
        [{"scenario": s} | r for s, r in results.items()],
    )
    ratio = statistics.median(c["wall_x_ideal"] for c in commands)
    headline = {"wall_x_ideal": ratio, "met": ratio <= 1.10}
    headline |= {"wall_s": _bench.summary([c["wall_s"] for c in commands])}
    print(f"\nwall / ideal, median of {args.repetitions}: {ratio:.3f} (target <= 1.10)")
    fields = {"membench_args": shlex.join(extra), "headline": headline, "results": results}
    fields["commands"] = commands
    return fields


def sampler(args: argparse.Namespace, extra: list[str]) -> dict[str, Any]:
    results, commands = {}, {}
    for config, flags in (("defaults", ""), ("concurrent-200x3MB", SEED_CASE)):
        run = _bench.membench_run([*shlex.split(flags), "--runs", str(args.runs), *extra])
        commands[config] = " ".join(run.results.command)
        for scenario in run.results.scenarios:
            stats = [r.sampler for r in scenario.runs if r.sampler is not None]
            ticks = sum(s.ticks for s in stats)
            late = sum(s.late_ticks for s in stats)
            missed = sum(s.missed_ticks for s in stats)
            intervals = [
                (b - a) * 1000
                for r in scenario.runs
                for a, b in itertools.pairwise(r.timeline.t_s[1:])
            ]
            on_time = (ticks - late) / (ticks + missed) if ticks + missed else 0.0
            results[f"{config}/{scenario.scenario}"] = {
                **{"ticks": ticks, "late_ticks": late, "missed_ticks": missed},
                "on_time_ratio": on_time,
                "interval_ms": {
                    **{f"p{q}": percentile(intervals, q) for q in (50, 99)},
                    **{"max": max(intervals), "n": len(intervals)},
                }
                if intervals
                else None,
                "met": on_time >= 0.95,
            }
    _bench.print_table(
        f"sampler punctuality (late: > 10 ms), {args.runs} runs per scenario",
        [{"config/scenario": k} | r for k, r in results.items()],
    )
    return {"runs": args.runs, "membench_commands": commands, "results": results}


def scale(args: argparse.Namespace, extra: list[str]) -> dict[str, Any]:
    flags = "--workers 500 --subtasks 5000 --size 0.1 --time 0.5 --runs 5"
    run = _bench.membench_run(
        [*shlex.split(flags), "--scenarios", "gevent_threads,gevent_greenlets", *extra]
    )
    doc = run.results
    ideal = ideal_s(doc.parameters)
    summary = {}
    for scenario in doc.scenarios:
        runs = scenario.runs
        done = doc.parameters.subtasks
        ok = [r for r in measured(scenario) if r.subtasks_done == done]
        summary[scenario.scenario] = {
            "completed_runs": f"{len(ok)}/{len(runs)}",
            "failures": [r.reason for r in runs if r not in ok],
            **{
                key: _bench.summary([getattr(r, key) for r in ok]) if ok else None
                for key in (
                    "duration_s",
                    "baseline_rss_bytes",
                    "peak_rss_bytes",
                    "peak_pss_bytes",
                    "max_os_threads",
                )
            },
            "x_ideal": statistics.median(seconds(r.duration_s) for r in ok) / ideal if ok else None,
            "late_ticks": sum(r.sampler.late_ticks for r in ok if r.sampler),
        }
    title = f"{' '.join(doc.command)}: ideal {ideal:.1f} s, took {run.wall_s:.1f} s"
    _bench.print_table(title, [{"scenario": s} | r for s, r in summary.items()])
    return {
        "membench_command": " ".join(doc.command),
        **{"ideal_s": ideal, "membench_wall_s": run.wall_s, "scenario_walls_s": run.walls},
        "tasks_s": sum(r.duration_s or 0.0 for s in doc.scenarios for r in s.runs),
        "summary": summary,
    }


# part -> its function, its JSON's stem, and its flags (`_bench.add_flags`)
PARTS: dict[str, tuple[Callable[[argparse.Namespace, list[str]], dict[str, Any]], str, str]] = {
    "wall": (wall, "concurrency_wall", "runs=5"),
    "overhead": (overhead, "run_overhead", "repetitions=3"),
    "sampler": (sampler, "sampler", "runs=5"),
    "scale": (scale, "scale", ""),
    "unmoved": (unmoved, "run_unmoved", ""),
    "phases": (phases, "run_phases", "repetitions=2"),
}


def main(argv: list[str]) -> int:
    parser = _bench.parser(__doc__)
    parser.add_argument("--args", default="", help="more `membench run` flags, one string")
    parts = parser.add_subparsers(dest="part", required=True)
    for part, (_, stem, spec) in PARTS.items():
        sub = _bench.add_flags(parts.add_parser(part, help=f"writes {stem}.json"), spec)
        sub.add_argument("--output", type=Path, default=argparse.SUPPRESS)
        sub.add_argument("--args", default=argparse.SUPPRESS)
    parts.choices["wall"].add_argument("--reuse-worker", action="store_true")
    for side in ("before", "after"):
        parts.choices["unmoved"].add_argument(side, type=Path, metavar=f"{side.upper()}_JSON")
    parts.choices["phases"].add_argument("--timed-run", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if getattr(args, "timed_run", None) is not None:  # one of phases' runs, in a process of its own
        return timed_run(shlex.split(args.args), args.timed_run)
    run, stem, _ = PARTS[args.part]
    fields = run(args, shlex.split(args.args))
    stem += "_reuse" if getattr(args, "reuse_worker", False) else ""
    return _bench.save(stem, argv, args.output, **fields)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
