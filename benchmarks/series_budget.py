"""The series one instrumented worker exports, against exporter/budget.py's formula, and what
one-port mode costs the main process's scrape.

Usage::

    python benchmarks/series_budget.py --children 8 --scrapes 50

Starts the example app (examples/instrumented_app) as `celery -A proj worker -P prefork -c N`,
once per mode (per-process, one-port), runs each of its four tasks once, then counts the series
of every endpoint of the worker and times `--scrapes` scrapes of the main process's. The fleet
extrapolation (500 workers x 8 children x 50 task names) comes from the same formula.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _bench
from celery import Celery

from membench.broker import EmbeddedRedis
from membench.exporter import names
from membench.exporter.budget import worker_series
from membench.processes import spawn, stop, wait_for
from membench.targets import addresses_by_pid

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "instrumented_app"
TASKS = (("proj.allocate", (1,)), ("proj.leak", (1,)), ("proj.fail", ()), ("proj.sleep", (0,)))


def addresses(targets: Path) -> list[str]:
    return [found[0] for found in addresses_by_pid(targets).values()]


def measure(url: str, directory: Path, mode: str, children: int, scrapes: int) -> dict[str, Any]:
    targets = directory / mode
    env = dict(os.environ, CELERY_BROKER_URL=url, MEMBENCH_TARGETS_DIR=str(targets))
    env |= {"MEMBENCH_METRICS_PORT": "0", "PYTHONPATH": str(EXAMPLE)}
    queue = f"budget.{mode}"
    argv = [sys.executable, "-m", "celery", "-A", "proj", "worker", "-P", "prefork"]
    argv += ["-c", str(children), "-Q", queue, "-n", f"{queue}@%h", "--membench-mode", mode]
    argv += ["--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "WARNING"]
    proc = spawn(argv, env=env, log_path=directory / f"{mode}.log", cwd=EXAMPLE)
    client = Celery("client", broker=url, backend=url)
    try:
        endpoints = 1 + (children if mode == "per-process" else 0)
        wait_for(lambda: len(addresses(targets)) == endpoints, 60, what="every exporter")
        main = next(a for a in addresses(targets) if 'role="main"' in _bench.scrape(a))
        for task, args in TASKS:
            client.send_task(task, args=args, queue=queue).get(timeout=60, propagate=False)
        # task_postrun follows the result the client got: wait until the worker counted it.
        labels = f'outcome="success",pool="prefork",task="{TASKS[-1][0]}"'
        last = f"{names.TASK_RUNS_TOTAL}{{{labels}}} 1.0"
        wait_for(lambda: last in _bench.scrape(main), 30, what="the last run counted")
        texts = {address: _bench.scrape(address) for address in addresses(targets)}
        timings = []
        for _ in range(scrapes):
            t0 = time.perf_counter()
            _bench.scrape(main)
            timings.append((time.perf_counter() - t0) * 1000)
        counted = sum(_bench.series_count(text) for text in texts.values())
        cgroup = len(
            {
                line.split("{")[0]
                for line in texts[main].splitlines()
                if line.startswith("membench_cgroup_")
            }
        )
        formula = worker_series(children, len(TASKS), one_port=mode == "one-port", cgroup=cgroup)
        return {
            "endpoints": len(texts),
            "series": counted,
            "formula": formula,
            "cgroup_series_per_process": cgroup,
            "main_scrape_ms": _bench.summary(timings),
        }
    finally:
        client.close()
        stop(proc)


def main(argv: list[str]) -> int:
    args = _bench.parser(__doc__, "children=8 scrapes=50").parse_args(argv)
    results = {}
    with EmbeddedRedis() as server, tempfile.TemporaryDirectory() as directory:
        for mode in ("per-process", "one-port"):
            results[mode] = measure(server.url, Path(directory), mode, args.children, args.scrapes)
    fleet = {"workers": 500, "children": 8, "task_names": 50}
    fleet |= {"per_process": 500 * worker_series(8, 50)}
    fleet |= {"one_port": 500 * worker_series(8, 50, one_port=True)}
    title = f"prefork -c {args.children}, {len(TASKS)} task names run once; fleet: {fleet}"
    _bench.print_table(title, [{"mode": mode} | r for mode, r in results.items()])
    return _bench.save(
        "series_budget", argv, args.output, children=args.children, results=results, fleet=fleet
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
