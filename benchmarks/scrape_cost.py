"""CPU cost of one scrape in the worker, and of the /proc reads behind it.

Usage::

    python benchmarks/scrape_cost.py --repetitions 5

1. Per exporter process of an idle worker (prefork_sequential main and child, gevent_greenlets
   main), scraped as curl asks (text) and as Prometheus asks (OpenMetrics, gzip): CPU time
   (utime + stime from /proc/<pid>/stat) over `--scrapes` back-to-back scrapes, minus the CPU
   the same process used over an equally long window without scrapes (an idle Celery worker
   polls its broker), divided by the number of scrapes. `--repetitions` windows each; medians.
2. In this process: CPU per call of read_status_memory (VmRSS/VmHWM), read_smaps_rollup (PSS,
   a walk of the page tables) and read_process_memory (both), on an idle worker's pid and on this
   process holding `--big` MiB of touched memory (the reads' cost grows with mapped memory).
3. gzip of the prefork main process's text exposition at levels 1, 6 and 9: CPU per call and
   the compressed size (the exporter compresses at level 1 when the scraper accepts gzip).
Target: one scrape <= 2 ms CPU in the worker.
"""

from __future__ import annotations

import gzip
import statistics
import sys
import time
from typing import Any

import _bench

from membench.procfs import (
    read_cpu_seconds,
    read_process_memory,
    read_smaps_rollup,
    read_status_memory,
)


def scrape_cpu_ms(
    pid: int, address: str, scrapes: int, headers: dict[str, str] | None = None
) -> tuple[float, float, float]:
    """(CPU ms per scrape net of idle, idle CPU ms per second, wall ms per scrape)."""
    c0, t0 = read_cpu_seconds(pid), time.monotonic()
    for _ in range(scrapes):
        _bench.scrape(address, headers=headers)
    c1, t1 = read_cpu_seconds(pid), time.monotonic()
    time.sleep(t1 - t0)  # the same window, idle
    c2, t2 = read_cpu_seconds(pid), time.monotonic()
    busy, idle = c1 - c0, (c2 - c1) * (t1 - t0) / (t2 - t1)
    return (busy - idle) * 1000 / scrapes, idle * 1000 / (t1 - t0), (t1 - t0) * 1000 / scrapes


def per_call_ms(fn: Any, calls: int) -> float:
    c0 = time.process_time()
    for _ in range(calls):
        fn()
    return (time.process_time() - c0) * 1000 / calls


def main(argv: list[str]) -> int:
    script = _bench.Script("scrape_cost", __doc__, repetitions=5)
    script.add_argument("--scrapes", type=int, default=500)
    script.add_argument("--calls", type=int, default=2000)
    script.add_argument("--big", type=int, default=1024, help="MiB this process holds for part 2")
    args = script.parse(argv)

    scrape_results: dict[str, Any] = {}
    read_results: dict[str, Any] = {}
    rows = []
    with _bench.broker() as (url, app), _bench.workdir() as wd, _bench.Workers(url, app, wd) as ws:
        for pool, scenario in _bench.POOL_SCENARIOS.items():
            worker = ws.start(scenario)
            time.sleep(1.0)
            for pid, (role, address) in _bench.exporter_addresses(worker).items():
                _bench.scrape(address)  # the first scrape builds what later ones reuse
                # As curl asks (text, uncompressed), and as Prometheus asks (OpenMetrics, gzip).
                for how, headers in (("text", None), ("prometheus", _bench.PROMETHEUS_HEADERS)):
                    windows = [
                        scrape_cpu_ms(pid, address, args.scrapes, headers)
                        for _ in range(args.repetitions)
                    ]
                    cost = statistics.median(w[0] for w in windows)
                    scrape_results[f"{pool}/{role}/{how}"] = {
                        "cpu_ms_per_scrape": _bench.summary([w[0] for w in windows]),
                        "idle_cpu_ms_per_s": _bench.summary([w[1] for w in windows]),
                        "wall_ms_per_scrape": _bench.summary([w[2] for w in windows]),
                        "scrape_bytes": len(_bench.scrape(address, headers=headers)),
                        "met": cost <= 2.0,
                    }
                    rows.append(
                        [
                            f"scrape, {pool}/{role}, {how}",
                            cost,
                            f"{min(w[0] for w in windows):.3f}-{max(w[0] for w in windows):.3f}",
                            "met" if cost <= 2.0 else "MISSED",
                        ]
                    )
            if pool == "prefork":
                main_address = _bench.exporter_addresses(worker)[worker.pid][1]
                exposition = _bench.scrape(main_address).encode()
                target_pid = worker.pid
                rss = read_status_memory(target_pid)[0]
                for name, fn in (
                    ("read_status_memory", lambda p=target_pid: read_status_memory(p)),
                    ("read_smaps_rollup", lambda p=target_pid: read_smaps_rollup(p)),
                    ("read_process_memory", lambda p=target_pid: read_process_memory(p)),
                ):
                    values = [per_call_ms(fn, args.calls) for _ in range(args.repetitions)]
                    key = f"{name}, idle worker ({rss / _bench.MIB:.0f} MiB RSS)"
                    read_results[key] = _bench.summary(values)
                    rows.append([key, statistics.median(values), "", ""])
            ws.stop(worker)

    block = bytearray(args.big * _bench.MIB)
    block[::4096] = b"x" * len(range(0, len(block), 4096))  # every page resident
    rss = read_status_memory()[0]
    for name, fn in (
        ("read_status_memory", lambda: read_status_memory()),
        ("read_smaps_rollup", lambda: read_smaps_rollup()),
        ("read_process_memory", lambda: read_process_memory()),
    ):
        values = [per_call_ms(fn, max(50, args.calls // 10)) for _ in range(args.repetitions)]
        key = f"{name}, this process ({rss / _bench.MIB:.0f} MiB RSS)"
        read_results[key] = _bench.summary(values)
        rows.append([key, statistics.median(values), "", ""])
    del block

    gzip_results: dict[str, Any] = {"body_bytes": len(exposition)}
    for level in (1, 6, 9):
        values = [
            per_call_ms(lambda lv=level: gzip.compress(exposition, compresslevel=lv), args.calls)
            for _ in range(args.repetitions)
        ]
        size = len(gzip.compress(exposition, compresslevel=level))
        gzip_results[f"level {level}"] = {"cpu_ms": _bench.summary(values), "bytes": size}
        key = f"gzip level {level}, {len(exposition)} -> {size} bytes"
        rows.append([key, statistics.median(values), "", ""])

    print(f"\nCPU ms, medians of {args.repetitions} windows")
    _bench.print_table(["what", "CPU ms", "min-max", "scrape <= 2 ms"], rows)
    return script.save(
        scrapes=args.scrapes, scrape=scrape_results, reads=read_results, gzip=gzip_results
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
