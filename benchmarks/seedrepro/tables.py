"""The page's generated blocks, by marker name (page.fill puts them in place; the sentences
around them are the page's own): the commands and the machine, ours beside the seed's table, the
ratios, each peak's terms, the allocator matrix and the arenas step; and the seed-method section's
commands, published cells against ours, the terms of each peak and the times summed the seed's
way (figures from seedmethod.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .common import (
    ALLOCATORS,
    ENV_FILE,
    MANY,
    MANY_ARENAS,
    MATRIX_SCENARIOS,
    ONE_PROCESS,
    PAYLOADS,
    SEED_CONCURRENCY,
    SEED_PAUSE_S,
    SEED_SCENARIOS,
    f1,
    f2,
    g_or_na,
    gib,
    med,
    short,
    signed,
    span,
    table,
)

Column = tuple[str, Callable[[float | None], str], str]  # header, format, key

# fmt: off
TERM_COLUMNS: tuple[Column, ...] = (
    ("baseline", f1, "baseline"), ("floor", f1, "floor"),
    ("excess", f1, "excess"), ("peak (RSS)", f1, "peak"),
    ("baseline PSS", f1, "baseline_pss"), ("excess PSS", f1, "excess_pss"),
    ("peak PSS", f1, "peak_pss"), ("RSS - PSS at peak", f1, "rss_minus_pss_peak"),
)
AFTER_TASK_COLUMNS: tuple[Column, ...] = (
    ("sampled tree peak", f1, "peak"), ("HWM sum", f1, "hwm_sum"),
    ("HWM sum - sampled peak", signed, "hwm_sum_minus_peak"),
    ("VmHWM, task's process", f1, "vmhwm"),
    ("retained", f1, "retained"), ("retained - baseline", signed, "retained_above_baseline"),
    ("trimmed", f1, "trimmed"), ("released by trim", signed, "released_by_trim"),
    ("retained PSS", f1, "retained_pss"), ("trimmed PSS", f1, "trimmed_pss"),
)
MATRIX_COLUMNS: tuple[Column, ...] = (
    ("baseline", f1, "baseline"), ("peak", f1, "peak"),
    ("excess", f1, "excess"), ("retained", f1, "retained"),
    ("trimmed", f1, "trimmed"), ("released by trim", signed, "released_by_trim"),
    ("time", f2, "time"),
)
# fmt: on
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
        "Approach | Peak Memory (MB), ours | Execution Time (s), ours | Peak Memory (MB), seed"
        " | Execution Time (s), seed",
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
    return table("ratio (medians) | ours | seed", rows)


def terms_table(deco: dict[str, dict[str, Any]], order: list[str]) -> list[str]:
    """Baseline, floor and excess of each peak, in RSS and PSS."""
    return table(
        " | ".join(["approach", "processes", "OS threads", *_headers(TERM_COLUMNS)]),
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
        " | ".join(["approach", *_headers(AFTER_TASK_COLUMNS)]),
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
    return table(" | ".join(headers), body, "llrrrrrrrrr")


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
        f"payload | approach | excess: 2 / {default} / {MANY_ARENAS} arenas | retained: 2 / "
        f"{default} / {MANY_ARENAS} | trimmed: 2 / {default} / {MANY_ARENAS} | runs ok "
        f"({MANY_ARENAS})",
        body,
        "llrrrr",
    )


BLOCK_NAMES = (
    "seed-method-commands",
    "seed-method-cells",
    "seed-method-terms",
    "seed-method-times",
)
# Per published cell, the term the page's narrative finds behind the difference.
CARRIERS = {
    "prefork_threads": "concurrent temporaries (cores); allocator arenas",
    "prefork_sequential": "idle processes (the seed's versions): driver + 3 processes",
    "gevent_threads": "idle process (the seed's versions): driver + 1 process",
    "gevent_greenlets": "idle process (the seed's versions): driver + 1 process",
    "time": "round trip of each run",
}


def cell_rows(fig: dict[str, Any], seed_rows: dict[str, Any]) -> list[list[str]]:
    """One row per published cell: ours at c=2 and c=1, published, difference, carrier."""
    c1, c2 = fig["cells"].get("1", {}), fig["cells"].get(str(SEED_CONCURRENCY), {})
    rows = []
    for s in SEED_SCENARIOS:
        if s not in c2:
            continue
        for label, key, pub_key, carrier in (
            ("Peak Memory (MB)", "peak", "peak_mb", CARRIERS[s]),
            ("Execution Time (s)", "time", "time_s", CARRIERS["time"]),
        ):
            published = seed_rows[s][pub_key]
            ours = c2[s][key]
            fmt = f1 if key == "peak" else f2
            difference = signed(published - ours) if key == "peak" else f"{published - ours:+.2f}"
            relative = f"{(published / ours - 1) * 100:+.0f}%"
            rows.append(
                [
                    *(short(s), label, fmt(ours), fmt(c1.get(s, {}).get(key)), f"{published:.2f}"),
                    difference,
                    relative,
                    carrier,
                ]
            )
    return rows


def terms_rows(fig: dict[str, Any]) -> list[list[str]]:
    """Each seed-method peak as driver + idle + floor + temporaries + excess + retained growth."""
    return [
        [
            *(short(s), c, str(x["processes"]), str(x["max_os_threads"])),
            *(f1(x[k]) for k in ("driver", "idle", "payload_import", "floor")),
            *(signed(x[k]) for k in ("temporaries", "excess", "retained_growth")),
            " / ".join(f1(v) for v in x["retained"]),
            *(f1(x["peak"]), f1(x["peak_hwm"]), str(x["peak_run"])),
        ]
        for c in sorted(fig["cells"])
        for s, x in fig["cells"][c].items()
    ]


def time_rows(fig: dict[str, Any], seed_rows: dict[str, Any]) -> list[list[str]]:
    return [
        [
            *(short(s), c, " + ".join(f"{t:.2f}" for t in x["round_trips"])),
            *(f"3 x {SEED_PAUSE_S:g}", f2(x["time"]), f"{seed_rows[s]['time_s']:.2f}"),
        ]
        for c in sorted(fig["cells"])
        for s, x in fig["cells"][c].items()
    ]


def machine_line(saved: dict[str, Any]) -> str:
    m = saved["runs"][SEED_CONCURRENCY]["machine"]
    v = saved["driver"].get("versions", {})
    return (
        f"{m['cores']} cores, {m['memory_bytes'] / 2**30:.1f} GiB, kernel {m['kernel']}, "
        f"{m['libc']}, Python {m['python']}, Celery {m['celery']}, gevent {m['gevent']}, "
        f"billiard {m['billiard']}, numpy {v.get('numpy', 'n/a')}, matplotlib "
        f"{v.get('matplotlib', 'n/a')}, psutil {v.get('psutil', 'n/a')}"
    )


def method_blocks(
    saved: dict[str, Any], fig: dict[str, Any], seed_rows: dict[str, Any]
) -> dict[str, list[str]]:
    """The section's blocks: commands and date, the cell-by-cell table, the terms, the times."""
    d = saved["driver"]
    commands = [" ".join(saved["runs"][c]["command"]) for c in sorted(saved["runs"])]
    when = [
        f"c={c} {saved['runs'][c]['started_at'][:19]} to {saved['runs'][c]['finished_at'][11:19]}"
        for c in sorted(saved["runs"])
    ]
    return {
        "seed-method-commands": [
            "```bash",
            "# each alone on the machine, under flock /tmp/membench-test.lock",
            *commands,
            f"{d['command']}  # x{len(d['vmrss_kib'])}, VmRSS",
            "```",
            "",
            f"Measured {'; '.join(when)} UTC; driver {d['measured_at']} UTC. Machine: "
            f"{machine_line(saved)}.",
            "",
            f"Driver footprint (VmRSS, kB): {', '.join(map(str, d['vmrss_kib']))}; median "
            f"{f1(fig['driver_mb'])} MB.",
        ],
        "seed-method-cells": table(
            "approach | column | seed method, ours c=2 | seed method, ours c=1 | published"
            " | difference | relative | term that carries it",
            cell_rows(fig, seed_rows),
            "llrrrrrl",
        ),
        "seed-method-terms": table(
            "approach | c | processes | OS threads | driver | tree idle | of it numpy | floor"
            " | temporaries | allocator excess | retained growth | retained after each run"
            " | peak (sampled) | peak (HWM sum) | peak run",
            terms_rows(fig),
        ),
        "seed-method-times": table(
            "approach | c | round trips (s) | pauses (s) | seed method (s) | published",
            time_rows(fig, seed_rows),
        ),
    }


NOT_RUN = ["(not run: this step's results are not saved beside the page)"]


def _inherited(value: dict[str, str] | None) -> str:
    return "not recorded" if value is None else (json.dumps(value) if value else "none")


def _measured(data: dict[str, Any]) -> str:
    """When each step ran (UTC)."""
    seed_start, seed_end = data["measured"]["seed_run"]
    parts = [f"Seed use case measured {seed_start} to {seed_end} UTC"]
    for step in ("matrix", "arenas"):
        span = data["measured"].get(step)
        if span:
            parts.append(f"{step} {span[0]} to {span[1]} UTC")
        elif step == "matrix" or data["arenas_doc"] is not None:
            parts.append(f"{step} (time not saved)")
    return "; ".join(parts) + "."


def commands(data: dict[str, Any], argv: str) -> list[str]:
    """The command that ran the steps, each step's `membench run`, when, and the machine."""
    lines = [
        "```bash",
        "# timing-sensitive: run it alone on the machine",
        f"python benchmarks/reproduce_seed.py {argv}",
        "# which ran, in order:",
        " ".join(data["seed_doc"]["command"]),
        " ".join(data["matrix_doc"]["command"]),
    ]
    if data["arenas_doc"] is not None:
        env = (data["environment"].get("arenas") or {}).get("set_by_script") or {}
        lines.append(
            "".join(f"{k}={v} " for k, v in env.items()) + " ".join(data["arenas_doc"]["command"])
        )
    inherited = {
        step: (record or {}).get("inherited") for step, record in data["environment"].items()
    }
    p = data["params"]
    return [
        *lines,
        "```",
        "",
        "Allocator variables the workers inherited (MALLOC_*, GLIBC_TUNABLES, LD_PRELOAD, "
        f"PYTHONMALLOC), recorded in each step's `{ENV_FILE}`: "
        + "; ".join(f"{step}: " + _inherited(value) for step, value in inherited.items())
        + ".",
        "",
        _measured(data)
        + f" {p['runs']} run(s) per scenario, each on a fresh worker, `--concurrency "
        f"{p['concurrency']}`, payload `{p['payload']}`, allocator `{p['malloc']}`, sampled every "
        f"{p['sample_interval_s'] * 1000:.0f} ms, `--malloc-trim` after each run.",
        "",
        *machine_table(data["seed_doc"]["machine"]),
    ]


def ours_vs_seed(data: dict[str, Any], seed: dict[str, Any]) -> list[str]:
    ours = data["seed"]
    punctual = [ours[s]["sampler_on_time_min"] for s in SEED_SCENARIOS]
    methods = sorted({m for s in SEED_SCENARIOS for m in ours[s]["peak_method"]})
    return [
        *seed_table(ours, seed["rows"]),
        "",
        "Runs ok: "
        + ", ".join(f"{short(s)} {ours[s]['runs_ok']}/{ours[s]['runs']}" for s in SEED_SCENARIOS)
        + ". Sampler ticks on time, worst run: "
        + ("n/a" if None in punctual else f"{min(punctual) * 100:.1f}%")
        + "; VmHWM method: "
        + (", ".join(methods) or "n/a")
        + ".",
    ]


def build(
    data: dict[str, Any],
    seed: dict[str, Any],
    figures: dict[str, Any],
    argv: str,
    method: dict[str, list[str]] | None,
) -> dict[str, list[str]]:
    """Every block of the page, from the loaded runs, the seed's parsed table, the figures
    collect.py computes (ratios, decomposition_mb, matrix_mb, arenas_mb) and the seed-method
    section's blocks (method_blocks; None when its runs are not saved)."""
    deco, matrix, arenas = (figures[k] for k in ("decomposition_mb", "matrix_mb", "arenas_mb"))
    order = [*SEED_SCENARIOS, *[s for s in ONE_PROCESS if s in deco]]
    cores = data["seed_doc"]["machine"]["cores"]
    return {
        **(method or dict.fromkeys(BLOCK_NAMES, NOT_RUN)),
        "commands": commands(data, argv),
        "ours-vs-seed": ours_vs_seed(data, seed),
        "seed-table": ["```text", seed["table"].rstrip("\n"), "```"],
        "ratios": ratio_table(figures["ratios"]),
        "terms": terms_table(deco, order),
        "after-task": after_task_table(deco, order),
        **{
            f"matrix-{payload}": matrix_table(matrix[payload]) if payload in matrix else NOT_RUN
            for payload in PAYLOADS
        },
        "arenas": arenas_table(arenas, 8 * cores) if arenas else NOT_RUN,
    }
