"""What every part of the seed reproduction shares: paths, the scenarios it compares, its error
type, the inputs the page's blocks are built from, and the arithmetic of medians that may be
missing (None)."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from membench.units import MIB as MB  # noqa: F401 (seedmethod reads common.MB)

REPO = Path(__file__).resolve().parents[2]
# The seed benchmark's README, verbatim: the published table and the stated use case are parsed
# from it. Copied from the seed as handed to this project (shared/seed/000_ad73f0711c4e7ca4.txt).
SEED_README = Path(__file__).with_name("seed-README.md")
REPORT = REPO / "docs" / "results" / "seed-reproduction.md"
SEED_SCENARIOS = ("prefork_threads", "prefork_sequential", "gevent_threads", "gevent_greenlets")
CONCURRENT = ("prefork_threads", "gevent_threads", "gevent_greenlets")
MATRIX_SCENARIOS = (*CONCURRENT, "solo_threads", "threads_threads")
ONE_PROCESS = ("solo_threads", "threads_threads")
OS_THREADS = ("prefork_threads", "solo_threads", "threads_threads")
GREENLETS = ("gevent_threads", "gevent_greenlets")
ALLOCATORS = ("glibc", "arena2", "jemalloc")
PAYLOADS = ("bytes", "records")
# The seed's table labels (its approach column without the "200x3.0MB" suffix).
SEED_LABELS = {
    "prefork (multithreading)": "prefork_threads",
    "prefork (sequential)": "prefork_sequential",
    "gevent (multithreading)": "gevent_threads",
    "gevent (gevent pool)": "gevent_greenlets",
}
FULL = {"subtasks": 200, "size": 3, "workers": 40, "time": 0.5}
QUICK = {"subtasks": 20, "size": 1, "workers": 4, "time": 0.05}
MAX_RESULTS_BYTES = 3 * 1000 * 1000
ARENA_SCENARIOS = ("prefork_threads", "solo_threads", "gevent_greenlets")
MANY_ARENAS = 64  # > 40 threads: the default limit on a machine with 8 or more cores
MANY = f"arenas{MANY_ARENAS}"  # the arenas step's setting, beside glibc's "arena2" and "glibc"
ENV_FILE = "environment.json"
STEPS = ("seed", "matrix", "arenas")

# payload -> allocator -> scenario -> medians (the matrix), or
# payload -> scenario -> arena setting -> medians (the arenas step).
Cells = dict[str, dict[str, dict[str, dict[str, Any]]]]


class Failure(Exception):
    """Something the report cannot be built without: one line, exit code 2."""


@dataclass(frozen=True)
class ReportInputs:
    """What the page's blocks (blocks.build) are built from: the loaded runs, the seed's parsed
    table and the figures decompose.py derives from them."""

    data: dict[str, Any]  # collect.load_results or load_saved
    seed: dict[str, Any]  # collect.parse_seed
    ratios: list[dict[str, Any]]
    deco: dict[str, dict[str, Any]]
    matrix: Cells
    arenas: Cells  # {} when the arenas step did not run


def diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def med(fig: dict[str, Any] | None, key: str) -> float | None:
    """The median of figure `key` (a {median, min, max} dict) of `fig`, None if absent."""
    if fig is None or fig.get(key) is None:
        return None
    return fig[key]["median"]


def ideals(subtasks: float, workers: float, hold: float) -> tuple[float, float]:
    """Wall time if only the holds counted: (concurrent, in rounds of `workers`; sequential)."""
    return math.ceil(subtasks / workers) * hold, subtasks * hold
