"""The soak's result: one typed document (dataclasses) from which the printed report, soak.json
and the plot are all made, so they cannot disagree, and a field the code misspells fails at once
instead of writing a silent null."""

from __future__ import annotations

import os
import subprocess
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from membench.jsonfile import write_json_atomic
from membench.soak.analysis import Analysis
from membench.soak.local import LocalRun
from membench.soak.verdict import Thresholds, Verdict

SCHEMA = "membench-soak/2"
RESULT_FILE = "soak.json"
PLOT_FILE = "soak.png"


@dataclass
class SoakResult:
    mode: str  # "local" (membench soak) or "prometheus" (membench soak --prometheus URL)
    command: list[str]  # as typed, any password masked
    complete: bool  # False: interrupted or stopped by an error; the figures cover what ran
    error: str | None
    thresholds: Thresholds
    verdict: Verdict
    analysis: Analysis | None
    local: LocalRun | None
    machine: dict[str, Any]
    schema: str = SCHEMA


def machine() -> dict[str, Any]:
    """The runner's machine block (cores, memory, kernel, versions), Prometheus's version where
    the binary is on PATH, and the load at start (others may share the machine)."""
    from membench.results.document import plain
    from membench.run.report import machine_info

    try:
        done = subprocess.run(["prometheus", "--version"], capture_output=True, text=True)
        lines = (done.stdout or done.stderr).splitlines()[:1]
    except OSError:
        lines = []
    return {
        **plain(machine_info()),
        "prometheus_client": metadata.version("prometheus-client"),
        "prometheus": lines[0] if lines else None,
        "load_average_at_start": list(os.getloadavg()),
    }


def write(result: SoakResult, directory: Path) -> list[Path]:
    """soak.json, and the plot of the baselines when there is a figure to draw."""
    path = directory / RESULT_FILE
    write_json_atomic(path, asdict(result))
    written = [path]
    analysis = result.analysis
    if analysis is not None and any(p.segments for p in analysis.processes):
        from membench.soak.plot import plot_baselines

        faults = result.local.faults if result.local else []
        limit = result.thresholds.max_growth_mb_per_hour
        plot_baselines(analysis, faults, result.verdict.status, limit, directory / PLOT_FILE)
        written.append(directory / PLOT_FILE)
    return written
