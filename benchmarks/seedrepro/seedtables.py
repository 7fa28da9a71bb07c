"""The seed-method section of the report: published cells against ours, the terms of each peak,
the times summed the seed's way (figures from seedmethod.py)."""

from __future__ import annotations

from typing import Any

from .common import SEED_SCENARIOS
from .fmt import f1, f2, short, signed, table

SEED_CONCURRENCY = 2  # the seed's code default: what its table ran
SEED_PAUSE_S = 0.5  # the seed's driver sleeps this long after every run, inside its timer
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


def _published(seed_rows: dict[str, Any], s: str, key: str) -> float:
    return seed_rows[s][key]


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
            published = _published(seed_rows, s, pub_key)
            ours = c2[s][key]
            fmt = f1 if key == "peak" else f2
            rows.append(
                [
                    short(s),
                    label,
                    fmt(ours),
                    fmt(c1.get(s, {}).get(key)),
                    f"{published:.2f}",
                    signed(published - ours) if key == "peak" else f"{published - ours:+.2f}",
                    f"{(published / ours - 1) * 100:+.0f}%",
                    carrier,
                ]
            )
    return rows


def terms_rows(fig: dict[str, Any]) -> list[list[str]]:
    """Each seed-method peak as driver + idle + floor + temporaries + excess + retained growth."""
    rows = []
    for c in sorted(fig["cells"]):
        for s, x in fig["cells"][c].items():
            rows.append(
                [
                    short(s),
                    c,
                    str(x["processes"]),
                    str(x["max_os_threads"]),
                    f1(x["driver"]),
                    f1(x["idle"]),
                    f1(x["payload_import"]),
                    f1(x["floor"]),
                    signed(x["temporaries"]),
                    signed(x["excess"]),
                    signed(x["retained_growth"]),
                    " / ".join(f1(v) for v in x["retained"]),
                    f1(x["peak"]),
                    f1(x["peak_hwm"]),
                    str(x["peak_run"]),
                ]
            )
    return rows


def time_rows(fig: dict[str, Any], seed_rows: dict[str, Any]) -> list[list[str]]:
    rows = []
    for c in sorted(fig["cells"]):
        for s, x in fig["cells"][c].items():
            rows.append(
                [
                    short(s),
                    c,
                    " + ".join(f"{t:.2f}" for t in x["round_trips"]),
                    f"3 x {SEED_PAUSE_S:g}",
                    f2(x["time"]),
                    f"{seed_rows[s]['time_s']:.2f}",
                ]
            )
    return rows


def machine_line(saved: dict[str, Any]) -> str:
    m = saved["runs"][SEED_CONCURRENCY]["machine"]
    v = saved["driver"].get("versions", {})
    return (
        f"{m['cores']} cores, {m['memory_bytes'] / 2**30:.1f} GiB, kernel {m['kernel']}, "
        f"{m['libc']}, Python {m['python']}, Celery {m['celery']}, gevent {m['gevent']}, "
        f"billiard {m['billiard']}, numpy {v.get('numpy', 'n/a')}, matplotlib "
        f"{v.get('matplotlib', 'n/a')}, psutil {v.get('psutil', 'n/a')}"
    )


def blocks(
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
            [
                "approach",
                "column",
                "seed method, ours c=2",
                "seed method, ours c=1",
                "published",
                "difference",
                "relative",
                "term that carries it",
            ],
            cell_rows(fig, seed_rows),
            "llrrrrrl",
        ),
        "seed-method-terms": table(
            [
                "approach",
                "c",
                "processes",
                "OS threads",
                "driver",
                "tree idle",
                "of it numpy",
                "floor",
                "temporaries",
                "allocator excess",
                "retained growth",
                "retained after each run",
                "peak (sampled)",
                "peak (HWM sum)",
                "peak run",
            ],
            terms_rows(fig),
        ),
        "seed-method-times": table(
            ["approach", "c", "round trips (s)", "pauses (s)", "seed method (s)", "published"],
            time_rows(fig, seed_rows),
        ),
    }
