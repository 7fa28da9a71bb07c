"""What every part of the seed reproduction shares: paths, the scenarios it compares, its error
type, the arithmetic of medians that may be missing (None), and numbers as the page writes them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from membench.units import GIB, MIB

REPO = Path(__file__).resolve().parents[2]
# The seed benchmark's README, verbatim: the published table and the stated use case are parsed
# from it. Copied from the seed as handed to this project (shared/seed/000_ad73f0711c4e7ca4.txt).
SEED_README = Path(__file__).with_name("seed-README.md")
REPORT = REPO / "docs" / "results" / "seed-reproduction.md"
MB = MIB  # the seed's "MB"
SEED_SCENARIOS = ("prefork_threads", "prefork_sequential", "gevent_threads", "gevent_greenlets")
CONCURRENT = ("prefork_threads", "gevent_threads", "gevent_greenlets")
ONE_PROCESS = ("solo_threads", "threads_threads")
MATRIX_SCENARIOS = (*CONCURRENT, *ONE_PROCESS)
ARENA_SCENARIOS = ("prefork_threads", "solo_threads", "gevent_greenlets")
ALLOCATORS = ("glibc", "arena2", "jemalloc")
PAYLOADS = ("bytes", "records")
MANY_ARENAS = 64  # > 40 threads: the default limit on a machine with 8 or more cores
MANY = f"arenas{MANY_ARENAS}"  # the arenas step's setting, beside glibc's "arena2" and "glibc"
STEPS = ("seed", "matrix", "arenas")
ENV_FILE = "environment.json"
SEED_CONCURRENCY = 2  # the seed's code default: what its table ran
SEED_PAUSE_S = 0.5  # the seed's driver sleeps this long after every run, inside its timer

# payload -> allocator -> scenario -> medians (the matrix), or
# payload -> scenario -> arena setting -> medians (the arenas step).
Cells = dict[str, dict[str, dict[str, dict[str, Any]]]]


class Failure(Exception):
    """Something the report cannot be built without: one line, exit code 2."""


def diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def med(fig: dict[str, Any] | None, key: str) -> float | None:
    """The median of figure `key` (a {median, min, max} dict) of `fig`, None if absent."""
    if fig is None or fig.get(key) is None:
        return None
    return fig[key]["median"]


def f1(value: float | None) -> str:
    return "n/a" if value is None else f"{value + 0.0 if round(value, 1) else 0.0:.1f}"


def f2(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value if round(value, 1) else 0.0:+.1f}"


def g_or_na(value: float | None) -> str:
    return "n/a" if value is None else f"{value:g}"


def span(fig: dict[str, Any] | None, digits: int = 2) -> str:
    """`median (min-max)`: the median over runs and the range the runs spanned."""
    if fig is None:
        return "n/a"
    return f"{fig['median']:.{digits}f} ({fig['min']:.{digits}f}-{fig['max']:.{digits}f})"


def short(scenario: str) -> str:
    return scenario.replace("_", "-")


def gib(value: int) -> str:
    return f"{value / GIB:.1f} GiB"


def when(doc: dict[str, Any]) -> tuple[str, str]:
    """A results.json's start and finish, `YYYY-MM-DD HH:MM:SS` (UTC)."""
    return doc["started_at"][:19].replace("T", " "), doc["finished_at"][:19].replace("T", " ")


def table(headers: str, rows: list[list[str]], align: str | None = None) -> list[str]:
    """A Markdown table under `headers` (`a | b`); `align` has one `l` or `r` per column (default:
    first left, rest right)."""
    headers_ = [h.strip() for h in headers.split("|")]
    align = align or "l" + "r" * (len(headers_) - 1)
    marks = {"l": "---", "r": "---:"}
    lines = ["| " + " | ".join(headers_) + " |", "|" + "|".join(marks[a] for a in align) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]
