"""The seed's own method applied to our `--payload numpy` runs: its driver's footprint, peak and
time summed its way, each published cell rebuilt as a sum of measured terms."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from membench.jsonfile import write_json_atomic

from .common import MB, SEED_CONCURRENCY, SEED_PAUSE_S, SEED_SCENARIOS, Failure, diff

CONCURRENCIES = (1, SEED_CONCURRENCY)
DRIVER_FILE = "driver-rss.json"
METHOD_FILE = "seed-method.json"
DRIVER_SAMPLES = 5
# The seed's driver (its run.py) imports these before it starts any worker.
DRIVER_IMPORTS = "numpy, celery, gevent, matplotlib, matplotlib.pyplot, psutil"
DRIVER_CODE = f"import {DRIVER_IMPORTS}; print(open('/proc/self/status').read())"
VERSIONS_CODE = (
    "import numpy, matplotlib, psutil; "
    "print(numpy.__version__, matplotlib.__version__, psutil.__version__)"
)
NUMPY_ARGS = [
    "run", "--payload", "numpy", "--subtasks", "200", "--size", "3", "--workers", "40",
    "--time", "0.5", "--runs", "3", "--reuse-worker",
]  # fmt: skip


def results_name(concurrency: int) -> str:
    return f"numpy-c{concurrency}.json"


def measure(target: Path, membench: list[str]) -> None:
    """Run the seed's use case with its payload at each concurrency, then time the driver's
    footprint; results go straight into `target` (docs/results/seed-reproduction)."""
    for c in CONCURRENCIES:
        with tempfile.TemporaryDirectory(prefix="membench-numpy-") as tmp:
            out = Path(tmp)
            argv = [*membench, *NUMPY_ARGS, "--concurrency", str(c), "--output", str(out)]
            print(f"\n$ membench {' '.join(argv[len(membench) :])}", flush=True)
            if subprocess.run(argv, check=False).returncode not in (0, 1):
                raise Failure(f"`membench {' '.join(argv[len(membench) :])}` failed")
            (target / results_name(c)).write_bytes((out / "results.json").read_bytes())
    write_json_atomic(target / DRIVER_FILE, measure_driver())


def measure_driver(samples: int = DRIVER_SAMPLES) -> dict[str, Any]:
    """VmRSS of an idle interpreter with the seed driver's imports, `samples` times."""
    rss_kib = []
    for _ in range(samples):
        out = subprocess.run(
            [sys.executable, "-c", DRIVER_CODE], check=True, capture_output=True, text=True
        ).stdout
        line = next(x for x in out.splitlines() if x.startswith("VmRSS:"))
        rss_kib.append(int(line.split()[1]))
    versions = subprocess.run(
        [sys.executable, "-c", VERSIONS_CODE], check=True, capture_output=True, text=True
    ).stdout.split()
    return {
        "command": f'python -c "{DRIVER_CODE}"',
        "versions": dict(zip(("numpy", "matplotlib", "psutil"), versions, strict=True)),
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "vmrss_kib": rss_kib,
        "median_bytes": int(statistics.median(rss_kib)) * 1024,
    }


def load(directory: Path) -> dict[str, Any] | None:
    """The numpy runs and the driver measurement saved in `directory`; None if any is missing."""
    paths = [directory / results_name(c) for c in CONCURRENCIES] + [directory / DRIVER_FILE]
    if not all(p.exists() for p in paths):
        return None
    docs = {c: json.loads(p.read_text()) for c, p in zip(CONCURRENCIES, paths, strict=False)}
    return {"runs": docs, "driver": json.loads(paths[-1].read_text())}


def _ok_runs(doc: dict[str, Any], scenario: str) -> list[dict[str, Any]]:
    for entry in doc["scenarios"]:
        if entry["scenario"] == scenario:
            return [r for r in entry["runs"] if r["status"] == "ok" and not r.get("warmup")]
    return []


def _mb(value: float | None) -> float | None:
    return None if value is None else value / MB


def cell(runs: list[dict[str, Any]], driver: float, excess: float | None) -> dict[str, Any]:
    """One approach at one concurrency, the seed's way: driver + the largest sampled tree RSS
    over the runs (one reused worker), split into the first run's terms + what reuse added."""
    first = runs[0]
    top = max(runs, key=lambda r: r["peak_rss_bytes"])
    floor = first["floor_bytes"]
    above = _mb(first["peak_rss_bytes"] - first["baseline_rss_bytes"] - floor)
    # The bytes payload's excess (same scenario, no temporaries) stands for the allocator's
    # share; what numpy adds above it is its temporaries (x - mean in np.std).
    hwm_top = max(r["tree_hwm_sum_bytes"] or 0 for r in runs)
    return {
        "processes": top["processes"],
        "driver": driver,
        "idle": _mb(first["baseline_rss_bytes"]),  # the worker before its first task
        "payload_import": _mb(first.get("payload_import_rss_bytes")),
        "floor": _mb(floor),
        "temporaries": diff(above, excess),
        "excess": excess,
        "above_floor": above,
        # A reused worker starts each run from what the last left: the seed's max picks it up.
        "retained_growth": _mb(top["peak_rss_bytes"] - first["peak_rss_bytes"]),
        "worker_peak": _mb(top["peak_rss_bytes"]),
        "peak_run": top["run"],
        "peak": driver + _mb(top["peak_rss_bytes"]),
        "peak_hwm": driver + hwm_top / MB,
        "hwm_temporaries": _mb(max(r["concurrent_temporaries_bytes"] or 0 for r in runs)),
        "baselines": [_mb(r["baseline_rss_bytes"]) for r in runs],
        "retained": [_mb(r["retained_rss_bytes"]) for r in runs],
        "round_trips": [r["round_trip_s"] for r in runs],
        "time": sum(r["round_trip_s"] + SEED_PAUSE_S for r in runs),
        "max_os_threads": max(r["max_os_threads"] or 0 for r in runs),
    }


def compute(saved: dict[str, Any], bytes_excess: dict[str, float | None]) -> dict[str, Any]:
    """concurrency -> scenario -> cell, plus the driver's median RSS (MB)."""
    driver = saved["driver"]["median_bytes"] / MB
    cells: dict[str, Any] = {}
    for c, doc in saved["runs"].items():
        for s in SEED_SCENARIOS:
            runs = _ok_runs(doc, s)
            if runs:
                cells.setdefault(str(c), {})[s] = cell(runs, driver, bytes_excess.get(s))
    return {"driver_mb": driver, "cells": cells}


def residuals(fig: dict[str, Any], seed_rows: dict[str, Any]) -> dict[str, float]:
    """Published - ours at the seed's concurrency, read as terms: the gevent rows (driver + one
    process) and prefork-sequential (driver + three) give the idle gap; prefork-threads has the
    same three processes, so what is left of its gap is the task's own terms."""
    c = fig["cells"][str(SEED_CONCURRENCY)]
    gap = {s: seed_rows[s]["peak_mb"] - c[s]["peak"] for s in c}
    pt = c["prefork_threads"]
    rest = gap["prefork_threads"] - gap["prefork_sequential"]
    return {
        "peak_gap_mb": gap,
        "idle_gap_1_process_mb": (gap["gevent_threads"] + gap["gevent_greenlets"]) / 2,
        "idle_gap_3_processes_mb": gap["prefork_sequential"],
        "prefork_threads_rest_mb": rest,
        "temporaries_mb": pt["temporaries"] or 0.0,
        "all_temporaries_at_once_mb": pt["floor"],  # one np.std temporary per subtask held
        "missing_temporaries_mb": pt["floor"] - (pt["temporaries"] or 0.0),
    }


def build(
    directory: Path, seed_rows: dict[str, Any], deco: dict[str, Any]
) -> dict[str, Any] | None:
    """The section's figures from the JSON in `directory`, also written to seed-method.json beside
    it; None when the numpy runs were not saved there."""
    saved = load(directory)
    if saved is None:
        return None
    fig = compute(saved, {s: row["excess"] for s, row in deco.items()})
    fig["residuals"] = residuals(fig, seed_rows)
    write_json_atomic(directory / METHOD_FILE, fig)
    return {"saved": saved, "figures": fig}
