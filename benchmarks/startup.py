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

import sys
import time
from typing import Any

import _bench

from membench.processes import pid_alive
from membench.procfs import read_cmdline


def exec_done(pid: int) -> bool:
    """Whether `membench worker` (pid) has exec'd celery: its command line says so."""
    try:
        return "celery" in read_cmdline(pid)
    except OSError:
        return False


def main(argv: list[str]) -> int:
    args = _bench.parser(__doc__, "repetitions=5 idle=1.0").parse_args(argv)
    results: dict[str, Any] = {}
    with _bench.workers() as ws:
        for pool, scenario in _bench.POOL_SCENARIOS.items():
            timings: dict[str, list[float]] = {"ready_s": [], "stop_s": []}
            timings |= {"to_exec_s": [], "exec_to_worker_ready_s": []}
            leftovers = []
            for _ in range(args.repetitions):
                t0 = time.monotonic()
                worker = ws.start(scenario, wait=False)
                exec_at = announced_at = None
                ready_path = getattr(worker, "ready_path", None)  # absent in trees before it
                while ready_path is not None and announced_at is None and worker.alive():
                    if exec_at is None and exec_done(worker.pid):
                        exec_at = time.monotonic()
                    if ready_path.exists() and ready_path.read_text().strip() == str(worker.pid):
                        announced_at = time.monotonic()
                    if time.monotonic() - t0 > 60:
                        break
                    time.sleep(0.002)
                worker.wait_ready(ws.app)
                timings["ready_s"].append(time.monotonic() - t0)
                if exec_at is not None and announced_at is not None:
                    timings["to_exec_s"].append(exec_at - t0)
                    timings["exec_to_worker_ready_s"].append(announced_at - exec_at)
                time.sleep(args.idle)
                tree = worker.tree()
                t1 = time.monotonic()
                ws.stop(worker)
                timings["stop_s"].append(time.monotonic() - t1)
                # Zombies (dead, not yet reaped by init) count as gone, as in tests/test_faults.py.
                running = [pid for pid in tree if pid_alive(pid)]
                targets = list((worker.targets_dir / "workers").glob("*.json"))
                if running or targets:
                    leftovers.append({"running": running, "targets": len(targets)})
            results[pool] = {
                "scenario": scenario,
                **{k: _bench.summary(v) if v else None for k, v in timings.items()},
                "ready_values_s": timings["ready_s"],
                "stop_values_s": timings["stop_s"],
                "leftovers": leftovers,
            }
            print(f"{pool}: done", flush=True)
    _bench.print_table(
        f"worker start-to-ready and stop, s, medians of {args.repetitions} workers per pool",
        [{"pool": pool} | r for pool, r in results.items()],
    )
    return _bench.save(
        "startup",
        argv,
        args.output,
        repetitions=args.repetitions,
        idle_s=args.idle,
        results=results,
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
