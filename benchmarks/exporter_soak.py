"""Exporter soak: idle workers of both pools, every exporter scraped every second for --minutes.

Usage::

    python benchmarks/exporter_soak.py --minutes 30

Starts one idle worker per pool (prefork_sequential: main + one child; gevent_greenlets: main)
on an embedded redis-server, scrapes every exporter every `--interval` seconds, and records each
exporter process's RSS (from /proc/<pid>/status, read from outside after the scrape) and the
number of series in the scrape. Reports per process the least-squares RSS slope after the
`--warmup` fraction of the run (KiB per hour; target <= 0 within noise) and whether the series
count stayed constant. A control worker per pool runs alongside with MEMBENCH_EXPORTER=off and is
never scraped: an idle Celery worker's main process grows by itself (broker polling, events), so
the exporter's share is the slope with the exporter minus the control's. The workers are always
stopped, also on Ctrl-C.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import _bench

from membench.procfs import read_status_memory
from membench.stats import slope


def _name(proc: dict[str, Any]) -> str:
    return f"{proc['pool']}/{proc['role']}" + (" (no exporter)" if proc["control"] else "")


def main(argv: list[str]) -> int:
    script = _bench.Script("exporter_soak", __doc__)
    script.add_argument("--minutes", type=float, default=30.0)
    script.add_argument("--interval", type=float, default=1.0)
    script.add_argument("--warmup", type=float, default=0.1, help="fraction left out of the slope")
    args = script.parse(argv)

    processes: dict[int, dict[str, Any]] = {}
    complete = False
    t_start = time.monotonic()
    with _bench.broker() as (url, app), _bench.workdir() as wd, _bench.Workers(url, app, wd) as ws:
        for pool, scenario in _bench.POOL_SCENARIOS.items():
            worker = ws.start(scenario)
            for pid, (role, address) in _bench.exporter_addresses(worker).items():
                processes[pid] = {
                    "pool": pool,
                    "role": role,
                    "address": address,
                    "t_s": [],
                    "rss_bytes": [],
                    "series": [],
                    "errors": 0,
                    "control": False,
                }
            control = ws.start(scenario, wait=False, MEMBENCH_EXPORTER="off")
            _bench.wait_pinged(control, app)
            for pid in control.tree():
                role = "main" if pid == control.pid else "child"
                processes[pid] = {
                    "pool": pool,
                    "role": role,
                    "address": None,
                    "t_s": [],
                    "rss_bytes": [],
                    "series": [],
                    "errors": 0,
                    "control": True,
                }
        t_start = time.monotonic()
        end = t_start + args.minutes * 60
        next_tick = t_start
        last_print = t_start
        try:
            while time.monotonic() < end:
                for pid, proc in processes.items():
                    try:
                        text = _bench.scrape(proc["address"]) if proc["address"] else None
                        rss = read_status_memory(pid)[0]
                    except OSError:
                        proc["errors"] += 1
                        continue
                    proc["t_s"].append(round(time.monotonic() - t_start, 3))
                    proc["rss_bytes"].append(rss)
                    if text is not None:
                        proc["series"].append(_bench.series_count(text))
                if time.monotonic() - last_print >= 60:
                    last_print = time.monotonic()
                    print(
                        f"{(last_print - t_start) / 60:5.1f} min: "
                        + ", ".join(
                            f"{_name(p)} {p['rss_bytes'][-1] / _bench.MIB:.2f} MiB"
                            for p in processes.values()
                            if p["rss_bytes"]
                        ),
                        flush=True,
                    )
                next_tick += args.interval
                time.sleep(max(0.0, next_tick - time.monotonic()))
            complete = True
        except KeyboardInterrupt:
            print("interrupted: stopping the workers, writing what was measured")

    rows = []
    results = []
    slopes: dict[str, float] = {}
    for pid, proc in processes.items():
        t, rss, series = proc["t_s"], proc["rss_bytes"], proc["series"]
        cut = t[-1] * args.warmup if t else 0
        kept = [(x, y) for x, y in zip(t, rss, strict=True) if x >= cut]
        # 0.0 where no slope fits (under two points, one instant), as the results always had.
        slope_b_per_s = slope([x for x, _ in kept], [y for _, y in kept]) or 0.0
        slope_kib_h = slope_b_per_s * 3600 / 1024
        slopes[_name(proc)] = slope_kib_h
        result = {
            "pid": pid,
            "pool": proc["pool"],
            "role": proc["role"],
            "control": proc["control"],
            "scrapes": len(t),
            "errors": proc["errors"],
            "rss_first_bytes": rss[0] if rss else None,
            "rss_after_warmup_bytes": kept[0][1] if kept else None,
            "rss_last_bytes": rss[-1] if rss else None,
            "rss_max_bytes": max(rss) if rss else None,
            "slope_kib_per_hour": round(slope_kib_h, 3),
            "series_min": min(series) if series else None,
            "series_max": max(series) if series else None,
            "series_constant": None
            if proc["control"]
            else bool(series) and min(series) == max(series),
            # Every 10th sample keeps the file small and still shows the curve.
            "timeline": {"t_s": t[::10], "rss_bytes": rss[::10]},
        }
        results.append(result)
        rows.append(
            [
                _name(proc),
                len(t),
                proc["errors"],
                (rss[0] / _bench.MIB) if rss else "-",
                (kept[0][1] / _bench.MIB) if kept else "-",
                (rss[-1] / _bench.MIB) if rss else "-",
                round(slope_kib_h, 1),
                f"{result['series_min']}-{result['series_max']}" if series else "-",
            ]
        )
    for result in results:
        if not result["control"]:
            control = slopes.get(f"{result['pool']}/{result['role']} (no exporter)")
            result["slope_minus_control_kib_per_hour"] = (
                None if control is None else round(result["slope_kib_per_hour"] - control, 3)
            )
    minutes = (time.monotonic() - t_start) / 60
    print(f"\nexporter soak, {minutes:.1f} min, scrape every {args.interval} s")
    _bench.print_table(
        [
            "process",
            "scrapes",
            "errors",
            "RSS first MiB",
            "after warmup",
            "last MiB",
            "slope KiB/h",
            "series",
        ],
        rows,
    )
    script.save(
        complete=complete,
        minutes=args.minutes,
        interval_s=args.interval,
        warmup_fraction=args.warmup,
        processes=results,
    )
    return 0 if complete else 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
