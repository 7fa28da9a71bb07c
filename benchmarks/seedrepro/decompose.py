"""The arithmetic behind the report: ratios against the seed's, each peak split into baseline +
floor + excess, and the medians of the allocator matrix and of the arenas step."""

from __future__ import annotations

from typing import Any

from .common import (
    CONCURRENT,
    GREENLETS,
    MANY,
    ONE_PROCESS,
    SEED_SCENARIOS,
    Cells,
    diff,
    ideals,
    med,
    ratio,
)

# The decomposition's terms, in MB (summary.json keeps this order).
TERMS = (
    "baseline",
    "floor",
    "excess",
    "peak",
    "baseline_pss",
    "excess_pss",
    "peak_pss",
    "vmhwm",
    "hwm_sum",
    "retained",
    "retained_pss",
    "trimmed",
    "trimmed_pss",
)


def compute_ratios(data: dict[str, Any], seed: dict[str, Any]) -> list[dict[str, Any]]:
    """Ours vs the seed's, each from medians (ours) and the published figures (seed)."""
    ours, rows = data["seed"], seed["rows"]
    out: list[dict[str, Any]] = []

    def add(name: str, kind: str, mine: float | None, theirs: float | None) -> None:
        out.append({"ratio": name, "kind": kind, "ours": mine, "seed": theirs})

    seq = "prefork_sequential"
    for scenario in ("prefork_threads", *GREENLETS):
        add(
            f"{scenario} / {seq} peak",
            "peak",
            ratio(med(ours[scenario], "peak"), med(ours[seq], "peak")),
            ratio(rows[scenario]["peak_mb"], rows[seq]["peak_mb"]),
        )
    for scenario in ("prefork_threads", *GREENLETS):
        # PSS counts prefork's shared pages once: the seed measured RSS only.
        add(
            f"{scenario} / {seq} peak PSS",
            "peak_pss",
            ratio(med(ours[scenario], "peak_pss"), med(ours[seq], "peak_pss")),
            None,
        )
    for scenario in CONCURRENT:
        add(
            f"{seq} / {scenario} time",
            "speedup",
            ratio(med(ours[seq], "time"), med(ours[scenario], "time")),
            ratio(rows[seq]["time_s"], rows[scenario]["time_s"]),
        )
    # From the seed's stated use case and its --time default: the README does not state the
    # hold time of the published run.
    st = seed["stated"]
    seed_conc, seed_seq = ideals(st["subtasks"], st["workers"], st["default_time_s"])
    for scenario in SEED_SCENARIOS:
        ideal = ours[scenario]["ideal_s"]
        seed_ideal = seed_conc if scenario != seq else seed_seq
        add(
            f"{scenario} wall / ideal ({ideal:g} s; seed {seed_ideal:g} s)",
            "wall_ideal",
            ratio(med(ours[scenario], "time"), ideal),
            ratio(rows[scenario]["time_s"], seed_ideal),
        )
    return out


def compute_decomposition(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per approach (the seed run, plus solo/threads from the matrix's glibc/bytes combination):
    the terms of the peak and what happens after the task."""
    rows: dict[str, dict[str, Any]] = {}
    sources = [(s, data["seed"][s], "seed run") for s in SEED_SCENARIOS]
    reference = data["matrix"].get(("glibc", "bytes"), {})
    sources += [(s, reference[s], "matrix glibc/bytes") for s in ONE_PROCESS if s in reference]
    for scenario, fig, source in sources:
        row = {
            "source": source,
            "approach": fig["approach"],
            "processes": fig["processes"],
            "max_os_threads": fig["max_os_threads"],
        }
        for key in TERMS:
            row[key] = med(fig, key)
        row["rss_minus_pss_peak"] = diff(row["peak"], row["peak_pss"])
        row["rss_minus_pss_baseline"] = diff(row["baseline"], row["baseline_pss"])
        row["hwm_sum_minus_peak"] = diff(row["hwm_sum"], row["peak"])
        row["released_by_trim"] = diff(row["retained"], row["trimmed"])
        row["retained_above_baseline"] = diff(row["retained"], row["baseline"])
        row["trimmed_above_baseline"] = diff(row["trimmed"], row["baseline"])
        row["time"] = med(fig, "time")
        row["ideal_s"] = fig["ideal_s"]
        rows[scenario] = row
    return rows


def _cell(fig: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """Medians of `keys` and time, what trim released, what stayed, and the OS threads."""
    cell = {key: med(fig, key) for key in keys}
    cell["time"] = med(fig, "time")
    cell["released_by_trim"] = diff(cell["retained"], cell["trimmed"])
    cell["retained_above_baseline"] = diff(cell["retained"], cell["baseline"])
    cell["max_os_threads"] = fig["max_os_threads"]
    return cell


def compute_matrix(data: dict[str, Any]) -> Cells:
    """payload -> allocator -> scenario -> medians of what tells the combinations apart."""
    out: Cells = {}
    keys = ("baseline", "peak", "excess", "peak_pss", "retained", "trimmed")
    for (malloc, payload), scenarios in data["matrix"].items():
        for scenario, fig in scenarios.items():
            cell = _cell(fig, keys)
            cell["allocator"] = fig["allocator"]
            cell["trim_method"] = fig["trim_method"]
            cell["runs_ok"], cell["runs"] = fig["runs_ok"], fig["runs"]
            out.setdefault(payload, {}).setdefault(malloc, {})[scenario] = cell
    return out


def compute_arenas(data: dict[str, Any], matrix: Cells) -> Cells:
    """payload -> scenario -> arena setting (arena2, default, many) -> medians."""
    out: Cells = {}
    keys = ("baseline", "peak", "excess", "retained", "trimmed")
    for payload, scenarios in data["arenas"].items():
        for scenario, fig in scenarios.items():
            row = {}
            for setting in ("arena2", "glibc"):
                cell = matrix.get(payload, {}).get(setting, {}).get(scenario)
                if cell is not None:
                    row[setting] = cell
            many = _cell(fig, keys)
            many["runs_ok"], many["runs"] = fig["runs_ok"], fig["runs"]
            row[MANY] = many
            out.setdefault(payload, {})[scenario] = row
    return out
