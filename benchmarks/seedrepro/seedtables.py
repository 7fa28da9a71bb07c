"""The seed-method section of the report: published cells against ours, the terms of each peak,
the times summed the seed's way (figures from seedmethod.py)."""

from __future__ import annotations

from typing import Any

from .common import SEED_SCENARIOS
from .fmt import f1, f2, short, signed, table

SEED_CONCURRENCY = 2  # the seed's code default: what its table ran
SEED_PAUSE_S = 0.5  # the seed's driver sleeps this long after every run, inside its timer


def _published(seed_rows: dict[str, Any], s: str, key: str) -> float:
    return seed_rows[s][key]


def cell_rows(
    fig: dict[str, Any], seed_rows: dict[str, Any], carry: dict[str, str]
) -> list[list[str]]:
    """One row per published cell: ours at c=2 and c=1, published, difference, carrier."""
    c1, c2 = fig["cells"].get("1", {}), fig["cells"].get(str(SEED_CONCURRENCY), {})
    rows = []
    for s in SEED_SCENARIOS:
        if s not in c2:
            continue
        for label, key, pub_key, carrier in (
            ("Peak Memory (MB)", "peak", "peak_mb", carry[s]),
            ("Execution Time (s)", "time", "time_s", carry["time"]),
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


def _reading(res: dict[str, float]) -> list[str]:
    """A few sentences: what the peak differences leave once the idle gap is taken out."""
    rest, missing = res["prefork_threads_rest_mb"], res["missing_temporaries_mb"]
    smaller = res["idle_gap_1_process_mb"] < 0 and res["idle_gap_3_processes_mb"] < 0
    # Within a tenth of the data held at once: the temporaries account for the rest.
    close = abs(rest - missing) <= res["all_temporaries_at_once_mb"] / 10
    return [
        "Read as terms: our gevent rows (driver + 1 process) are "
        f"{signed(-res['idle_gap_1_process_mb'])} MB over the seed's, prefork-sequential "
        f"(driver + 3 processes, 3 MB of data) {signed(-res['idle_gap_3_processes_mb'])} MB"
        + (": the seed's idle processes were smaller (its versions). " if smaller else ". ")
        + "prefork-threads has the same 3 processes; after prefork-sequential's gap "
        f"{signed(rest)} MB of the seed's row remain, against {signed(missing)} MB if all 40 "
        f"`np.std` temporaries ({f1(res['all_temporaries_at_once_mb'])} MB) had coincided "
        f"instead of our {f1(res['temporaries_mb'])} MB: "
        + (
            "the rest is consistent with concurrent temporaries, whose overlap the number of "
            "cores sets (numpy releases the GIL; 2 cores here)."
            if close
            else f"{signed(rest - missing)} MB beyond that is the allocator's (arenas = 8 x cores)."
        )
        + " The times match to within the round trip of each run.",
    ]


def render(
    saved: dict[str, Any],
    fig: dict[str, Any],
    seed_rows: dict[str, Any],
    carry: dict[str, str],
    res: dict[str, float],
) -> list[str]:
    """The section: commands and date, the cell-by-cell table, the terms, the times."""
    d = saved["driver"]
    commands = [" ".join(saved["runs"][c]["command"]) for c in sorted(saved["runs"])]
    when = [
        f"c={c} {saved['runs'][c]['started_at'][:19]} to {saved['runs'][c]['finished_at'][11:19]}"
        for c in sorted(saved["runs"])
    ]
    return [
        "",
        "## The seed's method, rebuilt from our runs of its subtask",
        "",
        "The seed's code (not its README) fixes its method: its subtask is "
        "`np.random.random` (3 MB float64), sleep 0.5 s, `np.mean`, `np.std`; its Peak Memory "
        "is its driver's RSS plus the RSS of every worker process, sampled every 50 ms, maximum "
        "over the 3 runs of one reused worker, no baseline subtracted; its Execution Time is the "
        "3 runs summed, each round trip plus a 0.5 s pause; its `--concurrency` default is 2 "
        "(prefork: main + 2 children = 3 processes). Our `--payload numpy --reuse-worker` runs "
        "that subtask; below, its figures are summed the seed's way. The earlier reading of the "
        "seed's times as a longer hold is withdrawn: 3 x (round trip + 0.5 s) accounts for them.",
        "",
        "```bash",
        "# each alone on the machine, under flock /tmp/membench-test.lock",
        *commands,
        f"{d['command']}  # x{len(d['vmrss_kib'])}, VmRSS",
        "```",
        "",
        f"Measured {'; '.join(when)} UTC; driver {d['measured_at']} UTC. Machine: "
        f"{machine_line(saved)}.",
        "",
        f"**Driver footprint** (VmRSS, kB): {', '.join(map(str, d['vmrss_kib']))}; median "
        f"{f1(fig['driver_mb'])} MB.",
        "",
        "### Published cell by cell",
        "",
        "Seed method = driver + max over runs of the sampled worker-tree RSS sum (Peak), "
        "sum over runs of (round trip + 0.5 s) (Time). Difference = published - ours at "
        f"c={SEED_CONCURRENCY}.",
        "",
        *table(
            [
                "approach",
                "column",
                f"seed method, ours c={SEED_CONCURRENCY}",
                "seed method, ours c=1",
                "published",
                "difference",
                "relative",
                "term that carries it",
            ],
            cell_rows(fig, seed_rows, carry),
            "llrrrrrl",
        ),
        "",
        *_reading(res),
        "",
        "### The terms of each peak",
        "",
        "Seed-method peak = driver + worker-tree idle (before the first task, numpy loaded) + "
        "data floor + concurrent temporaries + allocator excess (these four from the first "
        "run) + retained growth (the peak run's sampled peak - the first run's: what earlier "
        "runs on the reused worker left and the next did not reuse). "
        "Allocator excess is the same approach's excess with the `bytes` payload (fresh worker, "
        "no temporaries; section below); temporaries are the rest of the sampled peak above "
        "the floor (mostly `np.std`'s `x - mean`, one per OS thread computing at once). "
        "Numpy import is part of idle. The last peak column uses the tree's summed VmHWM "
        "instead of the sampled RSS (an upper bound: it adds each process's own peak).",
        "",
        *table(
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
        "",
        "### Execution Time, summed the seed's way",
        "",
        *table(
            ["approach", "c", "round trips (s)", "pauses (s)", "seed method (s)", "published"],
            time_rows(fig, seed_rows),
        ),
    ]
