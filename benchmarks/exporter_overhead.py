"""What the exporter costs an idle worker: RSS, USS and PSS with vs without it, same pool.

Usage::

    python benchmarks/exporter_overhead.py --repetitions 5

For each pool (prefork_sequential: main + one child; gevent_greenlets: main) starts
`--repetitions` fresh workers with the exporter and as many with MEMBENCH_EXPORTER=off
(alternating), lets each settle, scrapes every exporter `--scrapes` times (an exporter is only
worth its memory once it has answered), then reads RSS (status) and USS/PSS (smaps_rollup) of
the main and the child process. The difference of the medians is what the exporter costs.
Target: <= 1 MiB RSS per process, both pools.
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

import _bench

from membench.procfs import read_process_memory

KEYS = ("rss", "uss", "pss")


def measure(worker: Any, scrapes: int) -> dict[str, dict[str, int]]:
    for _ in range(scrapes):
        for _role, address in _bench.exporter_addresses(worker).values():
            _bench.scrape(address)
    out: dict[str, dict[str, int]] = {}
    for pid in worker.tree():
        memory = read_process_memory(pid)
        role = "main" if pid == worker.pid else "child"
        out[role] = {"rss": memory.rss, "uss": memory.uss or 0, "pss": memory.pss or 0}
    return out


def main(argv: list[str]) -> int:
    script = _bench.Script("exporter_overhead", __doc__, repetitions=5)
    script.add_argument("--settle", type=float, default=2.0, help="seconds idle before reading")
    script.add_argument("--scrapes", type=int, default=3)
    args = script.parse(argv)

    readings: dict[str, dict[str, list[dict[str, dict[str, int]]]]] = {}
    with _bench.broker() as (url, app), _bench.workdir() as wd, _bench.Workers(url, app, wd) as ws:
        for pool, scenario in _bench.POOL_SCENARIOS.items():
            readings[pool] = {"with": [], "without": []}
            for rep in range(args.repetitions):
                for variant in ("with", "without"):
                    if variant == "with":
                        worker = ws.start(scenario)
                    else:
                        worker = ws.start(scenario, wait=False, MEMBENCH_EXPORTER="off")
                        _bench.wait_pinged(worker, app)
                    time.sleep(args.settle)
                    readings[pool][variant].append(
                        measure(worker, args.scrapes if variant == "with" else 0)
                    )
                    ws.stop(worker)
                print(f"{pool}: repetition {rep + 1}/{args.repetitions} done", flush=True)

    rows = []
    results: dict[str, Any] = {}
    for pool, by_variant in readings.items():
        roles = ["main", "child"] if pool == "prefork" else ["main"]
        for role in roles:
            entry: dict[str, Any] = {}
            for key in KEYS:
                with_values = [r[role][key] for r in by_variant["with"]]
                without_values = [r[role][key] for r in by_variant["without"]]
                delta = statistics.median(with_values) - statistics.median(without_values)
                entry[key] = {
                    "with_bytes": _bench.summary(with_values),
                    "without_bytes": _bench.summary(without_values),
                    "delta_median_bytes": delta,
                }
            entry["met"] = entry["rss"]["delta_median_bytes"] <= _bench.MIB
            results[f"{pool}/{role}"] = entry
            rows.append(
                [
                    f"{pool}/{role}",
                    *(
                        f"{entry[k]['with_bytes']['median'] / _bench.MIB:.2f} / "
                        f"{entry[k]['without_bytes']['median'] / _bench.MIB:.2f} / "
                        f"{entry[k]['delta_median_bytes'] / _bench.MIB:+.2f}"
                        for k in KEYS
                    ),
                    "met" if entry["met"] else "MISSED",
                ]
            )
    print(f"\nidle worker memory, MiB, medians of {args.repetitions} fresh workers each")
    _bench.print_table(
        [
            "process",
            "RSS with/without/delta",
            "USS with/without/delta",
            "PSS with/without/delta",
            "<= 1 MiB RSS",
        ],
        rows,
    )
    return script.save(
        settle_s=args.settle, scrapes=args.scrapes, results=results, readings=readings
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
