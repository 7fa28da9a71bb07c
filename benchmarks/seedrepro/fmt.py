"""Numbers to text for the seed reproduction report: MB to one decimal, signs, ranges, tables."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any


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
    median, low, high = fig["median"], fig["min"], fig["max"]
    return f"{median:.{digits}f} ({low:.{digits}f}-{high:.{digits}f})"


def value_range(values: Iterable[float | None]) -> str:
    """`low to high` in MB to one decimal (one figure when they agree), n/a when none."""
    present = [v for v in values if v is not None]
    if not present:
        return "n/a"
    low, high = f1(min(present)), f1(max(present))
    return low if low == high else f"{low} to {high}"


def more_or_less(value: float, unit: str = "MB") -> str:
    return f"{abs(value):.1f} {unit} {'more' if value >= 0 else 'less'}"


def short(scenario: str) -> str:
    return scenario.replace("_", "-")


def per_scenario(
    values: Mapping[str, float | None], fmt: Callable[[float | None], str] = f1, unit: str = ""
) -> str:
    """`prefork-threads 1.2<unit>, gevent-threads 0.3<unit>`: one figure per scenario."""
    return ", ".join(f"{short(s)} {fmt(v)}{unit}" for s, v in values.items())


def gib(value: int) -> str:
    return f"{value / 2**30:.1f} GiB"


def when(doc: dict[str, Any]) -> tuple[str, str]:
    """A results.json's start and finish, `YYYY-MM-DD HH:MM:SS` (UTC)."""
    return doc["started_at"][:19].replace("T", " "), doc["finished_at"][:19].replace("T", " ")


def table(headers: list[str], rows: list[list[str]], align: str | None = None) -> list[str]:
    """A Markdown table; `align` has one `l` or `r` per column (default: first left, rest right)."""
    align = align or "l" + "r" * (len(headers) - 1)
    marks = {"l": "---", "r": "---:"}
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(marks[a] for a in align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines
