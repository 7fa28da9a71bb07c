"""The report's Markdown tables: the machine, ours beside the seed's, the ratios, each peak's
terms, the allocator matrix and the arenas step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .common import ALLOCATORS, MANY, MANY_ARENAS, MATRIX_SCENARIOS, PAYLOADS, SEED_SCENARIOS, med
from .fmt import f1, f2, g_or_na, gib, short, signed, span, table

Column = tuple[str, Callable[[float | None], str], str]  # header, format, key

TERM_COLUMNS: tuple[Column, ...] = (
    ("baseline", f1, "baseline"),
    ("floor", f1, "floor"),
    ("excess", f1, "excess"),
    ("peak (RSS)", f1, "peak"),
    ("baseline PSS", f1, "baseline_pss"),
    ("excess PSS", f1, "excess_pss"),
    ("peak PSS", f1, "peak_pss"),
    ("RSS - PSS at peak", f1, "rss_minus_pss_peak"),
)
AFTER_TASK_COLUMNS: tuple[Column, ...] = (
    ("sampled tree peak", f1, "peak"),
    ("HWM sum", f1, "hwm_sum"),
    ("HWM sum - sampled peak", signed, "hwm_sum_minus_peak"),
    ("VmHWM, task's process", f1, "vmhwm"),
    ("retained", f1, "retained"),
    ("retained - baseline", signed, "retained_above_baseline"),
    ("trimmed", f1, "trimmed"),
    ("released by trim", signed, "released_by_trim"),
    ("retained PSS", f1, "retained_pss"),
    ("trimmed PSS", f1, "trimmed_pss"),
)
MATRIX_COLUMNS: tuple[Column, ...] = (
    ("baseline", f1, "baseline"),
    ("peak", f1, "peak"),
    ("excess", f1, "excess"),
    ("retained", f1, "retained"),
    ("trimmed", f1, "trimmed"),
    ("released by trim", signed, "released_by_trim"),
    ("time", f2, "time"),
)
_MACHINE_KEYS = ("kernel", "libc", "python", "celery", "gevent", "billiard")


def _cells(row: dict[str, Any], columns: tuple[Column, ...]) -> list[str]:
    return [fmt(row[key]) for _, fmt, key in columns]


def _headers(columns: tuple[Column, ...]) -> list[str]:
    return [header for header, _, _ in columns]


def machine_table(machine: dict[str, Any]) -> list[str]:
    """Ours against the seed's (which states none of it)."""
    ours = [
        f"ours ({machine['machine']})",
        str(machine["cores"]),
        gib(machine["memory_bytes"]),
        *(str(machine[key]) for key in _MACHINE_KEYS),
    ]
    return [
        "| machine | cores | memory | kernel | libc | Python | Celery | gevent | billiard |",
        "|---|---:|---:|---|---|---|---|---|---|",
        "| " + " | ".join(ours) + " |",
        "| seed |" + " not stated |" * 8,
    ]


def seed_table(ours: dict[str, Any], rows: dict[str, Any]) -> list[str]:
    """The seed's columns, ours (median and min-max) beside its figures, by our peak."""
    order = sorted(SEED_SCENARIOS, key=lambda s: med(ours[s], "peak") or 0.0)
    return table(
        [
            "Approach",
            "Peak Memory (MB), ours",
            "Execution Time (s), ours",
            "Peak Memory (MB), seed",
            "Execution Time (s), seed",
        ],
        [
            [
                ours[s]["approach"],
                span(ours[s]["peak"]),
                span(ours[s]["time"]),
                f"{rows[s]['peak_mb']:.2f}",
                f"{rows[s]['time_s']:.2f}",
            ]
            for s in order
        ],
    )


def ratio_table(ratios: list[dict[str, Any]]) -> list[str]:
    rows = [
        [
            r["ratio"].replace("_", "-"),
            f2(r["ours"]),
            "not published (RSS only)" if r["kind"] == "peak_pss" else f2(r["seed"]),
        ]
        for r in ratios
    ]
    return table(["ratio (medians)", "ours", "seed"], rows)


def terms_table(deco: dict[str, dict[str, Any]], order: list[str]) -> list[str]:
    """Baseline, floor and excess of each peak, in RSS and PSS."""
    return table(
        ["approach", "processes", "OS threads", *_headers(TERM_COLUMNS)],
        [
            [
                short(s),
                "/".join(str(n) for n in deco[s]["processes"]) or "n/a",
                g_or_na(deco[s]["max_os_threads"]),
                *_cells(deco[s], TERM_COLUMNS),
            ]
            for s in order
        ],
    )


def after_task_table(deco: dict[str, dict[str, Any]], order: list[str]) -> list[str]:
    """The sampled peak against the kernel's high-water marks, and what the task left behind."""
    return table(
        ["approach", *_headers(AFTER_TASK_COLUMNS)],
        [[short(s), *_cells(deco[s], AFTER_TASK_COLUMNS)] for s in order],
    )


def matrix_table(by_allocator: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """One payload of the matrix: a row per allocator and approach."""
    body = [
        [
            malloc,
            short(s),
            g_or_na(c["max_os_threads"]),
            *_cells(c, MATRIX_COLUMNS),
            f"{c['runs_ok']}/{c['runs']}",
        ]
        for malloc in [a for a in ALLOCATORS if a in by_allocator]
        for s in MATRIX_SCENARIOS
        if (c := by_allocator[malloc].get(s)) is not None
    ]
    headers = ["allocator", "approach", "OS threads", *_headers(MATRIX_COLUMNS), "runs ok"]
    return table(headers, body, "llrrrrrrrrr")


def arenas_table(arenas: dict[str, dict[str, dict[str, Any]]], default: int) -> list[str]:
    """Excess, retained and trimmed with 2, the default and MANY_ARENAS glibc arenas."""
    body = []
    settings = ("arena2", "glibc", MANY)
    for payload in [q for q in PAYLOADS if q in arenas]:
        for scenario, row in arenas[payload].items():
            cells = [payload, short(scenario)]
            for key in ("excess", "retained", "trimmed"):
                cells.append(" / ".join(f1(row.get(st, {}).get(key)) for st in settings))
            many = row[MANY]
            cells.append(f"{many['runs_ok']}/{many['runs']}")
            body.append(cells)
    return table(
        [
            "payload",
            "approach",
            f"excess: 2 / {default} / {MANY_ARENAS} arenas",
            f"retained: 2 / {default} / {MANY_ARENAS}",
            f"trimmed: 2 / {default} / {MANY_ARENAS}",
            f"runs ok ({MANY_ARENAS})",
        ],
        body,
        "llrrrr",
    )
