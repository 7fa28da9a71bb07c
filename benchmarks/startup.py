"""Worker start to ready, and stop, per pool: what every `membench run` pays per run.

Usage::

    python benchmarks/startup.py --repetitions 5

For each pool (prefork_sequential, gevent_greenlets) starts `--repetitions` fresh workers the way
the runner does (WorkerProcess.start, then wait_ready: the worker answers a ping and every
exporter registered its file_sd target), then stops each the way the runner does
(WorkerProcess.stop) after an idle `--idle` seconds, and checks that no process of the tree and no
file_sd target is left. Reports medians and ranges of start-to-ready and stop, and splits the
start: until `membench worker` (an interpreter of its own) has exec'd celery (its
/proc/<pid>/cmdline changes), and from there to Celery's worker_ready (the file the worker writes;
absent in trees from before it, then only the total is reported).
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

import _bench

from membench.processes import pid_alive


def _exec_done(pid: int) -> bool:
    """Whether `membench worker` (pid) has exec'd celery: its command line says so."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"\0celery\0" in f.read()
    except OSError:
        return False


def main(argv: list[str]) -> int:
    script = _bench.Script("startup", __doc__, repetitions=5)
    script.add_argument("--idle", type=float, default=1.0, help="seconds idle before stopping")
    args = script.parse(argv)

    results: dict[str, Any] = {}
    rows = []
    with _bench.broker() as (url, app), _bench.workdir() as wd, _bench.Workers(url, app, wd) as ws:
        for pool, scenario in _bench.POOL_SCENARIOS.items():
            ready, stop, leftovers = [], [], []
            to_exec: list[float] = []  # `membench worker` validated and exec'd celery
            to_announce: list[float] = []  # from exec to Celery's worker_ready
            for _ in range(args.repetitions):
                t0 = time.monotonic()
                worker = ws.start(scenario, wait=False)
                exec_at = announced_at = None
                announced = getattr(worker, "_announced_ready", None)  # absent before the fix
                while announced is not None and announced_at is None and worker.alive():
                    if exec_at is None and _exec_done(worker.pid):
                        exec_at = time.monotonic()
                    if announced():
                        announced_at = time.monotonic()
                    if time.monotonic() - t0 > 60:
                        break
                    time.sleep(0.002)
                worker.wait_ready(app)
                ready.append(time.monotonic() - t0)
                if exec_at is not None and announced_at is not None:
                    to_exec.append(exec_at - t0)
                    to_announce.append(announced_at - exec_at)
                time.sleep(args.idle)
                tree = worker.tree()
                t1 = time.monotonic()
                ws.stop(worker)
                stop.append(time.monotonic() - t1)
                # Zombies (dead, not yet reaped by init) count as gone, as in tests/test_faults.py.
                running = [pid for pid in tree if pid_alive(pid)]
                targets = list((worker.targets_dir / "workers").glob("*.json"))
                if running or targets:
                    leftovers.append({"running": running, "targets": len(targets)})
            results[pool] = {
                "scenario": scenario,
                "ready_s": _bench.summary(ready),
                "stop_s": _bench.summary(stop),
                "to_exec_s": _bench.summary(to_exec) if to_exec else None,
                "exec_to_worker_ready_s": _bench.summary(to_announce) if to_announce else None,
                "ready_values_s": ready,
                "stop_values_s": stop,
                "leftovers": leftovers,
            }
            rows.append(
                [
                    pool,
                    statistics.median(ready),
                    f"{min(ready):.2f}-{max(ready):.2f}",
                    statistics.median(to_exec) if to_exec else "-",
                    statistics.median(to_announce) if to_announce else "-",
                    statistics.median(stop),
                    f"{min(stop):.2f}-{max(stop):.2f}",
                    len(leftovers),
                ]
            )
            print(f"{pool}: done", flush=True)
    print(f"\nworker start-to-ready and stop, seconds, {args.repetitions} fresh workers per pool")
    _bench.print_table(
        [
            "pool",
            "ready median",
            "ready min-max",
            "of which to exec",
            "exec to worker_ready",
            "stop median",
            "stop min-max",
            "leftovers",
        ],
        rows,
    )
    return script.save(idle_s=args.idle, results=results)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
