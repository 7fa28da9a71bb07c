"""What the instrument costs each task: the time of its task_prerun + task_postrun hooks.

Usage::

    python benchmarks/instrument_cost.py

Each pool runs in a fresh interpreter set up as Celery sets up the process that runs tasks: a
prefork child (its own row of a 9-row table, VmHWM reset per task) and a gevent worker's main
process (gevent's monkey-patching first, so its lock is gevent's). The hooks are Celery's own
signal receivers, called through `signal.send` as Celery calls them, with and without the
instrument connected; the difference of the medians is what the instrument adds to a task.
The work they do is real: /proc/self/clear_refs and /proc/self/status are written and read.
Target: <= 100 us median per task. Per-process memory: `benchmarks/exporter.py overhead`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import _bench

from membench.stats import percentile

# Runs in a fresh interpreter: argv[1] = pool, argv[2] = tasks, argv[3] = "on" | "off".
PROBE = r"""
import json, sys, time
pool, tasks, variant = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if pool == "gevent":
    from gevent import monkey
    monkey.patch_all()
from celery import Celery, signals
from membench.exporter import names
from membench.exporter.state import state
from membench.exporter.tasktable import TaskTable

app = Celery("cost")
@app.task(name="cost.noop")
def noop():
    return None

if variant == "on":
    from membench.celery import instrument
    instrument(app)
    state.table = TaskTable(sorted(app.tasks), rows=9)
    state.row = 1 if pool == "prefork" else 0
    state.table.take_row(state.row, 1, time.time())
task = app.tasks["cost.noop"]
ns = []
for i in range(tasks):
    task_id = f"t{i}"
    t0 = time.perf_counter_ns()
    signals.task_prerun.send(sender=task, task_id=task_id, task=task, args=(), kwargs={})
    signals.task_postrun.send(
        sender=task, task_id=task_id, task=task, args=(), kwargs={}, retval=None, state="SUCCESS"
    )
    ns.append(time.perf_counter_ns() - t0)
if variant == "on":
    stats = {s.task: s.runs["success"] for s in state.table.stats()}
    assert stats.get("cost.noop") == tasks, stats
print(json.dumps(ns))
"""


def probe(pool: str, tasks: int, variant: str) -> list[int]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, pool, str(tasks), variant],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def main(argv: list[str]) -> int:
    args = _bench.parser(__doc__, "repetitions=3 tasks=20000").parse_args(argv)
    results: dict[str, Any] = {}
    for pool in ("prefork", "gevent"):
        timings: dict[str, list[float]] = {"on": [], "off": []}
        for rep in range(args.repetitions):
            for variant, values in timings.items():
                values += [ns / 1000 for ns in probe(pool, args.tasks, variant)]
            print(f"{pool}: repetition {rep + 1}/{args.repetitions} done", flush=True)
        on, off = ({q: percentile(v, q) for q in (50, 99)} for v in timings.values())
        results[pool] = {
            "median_us": on[50] - off[50],
            "p99_us": on[99] - off[99],
            **{"with_median_us": on[50], "with_p99_us": on[99]},
            **{"without_median_us": off[50], "without_p99_us": off[99]},
            "runs": len(timings["on"]),
            "met": on[50] - off[50] <= 100,
        }
    title = f"prerun + postrun per task, us, {args.repetitions} x {args.tasks} runs per pool"
    _bench.print_table(title, [{"pool": pool} | r for pool, r in results.items()])
    return _bench.save(
        "instrument_cost",
        argv,
        args.output,
        repetitions=args.repetitions,
        tasks=args.tasks,
        results=results,
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
