"""What was measured and what it adds up to: the seed's published table, membench's
results.json/matrix.json (or the copies saved beside the report) reduced to medians in MB and s per
scenario, then the ratios against the seed's, each peak split into baseline + floor + excess, and
the medians of the allocator matrix and of the arenas step."""

from __future__ import annotations

import json
import math
import re
import statistics
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .common import (
    CONCURRENT,
    ENV_FILE,
    MANY,
    MB,
    ONE_PROCESS,
    SEED_SCENARIOS,
    STEPS,
    Cells,
    Failure,
    diff,
    med,
    ratio,
    when,
)

# The seed's table labels (its approach column without the "200x3.0MB" suffix).
SEED_LABELS = {
    "prefork (multithreading)": "prefork_threads",
    "prefork (sequential)": "prefork_sequential",
    "gevent (multithreading)": "gevent_threads",
    "gevent (gevent pool)": "gevent_greenlets",
}


_SEED_ROW = re.compile(
    r"^(?P<label>[a-z].*?\))\s+(?P<subtasks>\d+)x(?P<size>[\d.]+)MB\s+"
    r"(?P<peak>\d+(?:\.\d+)?)\s+(?P<time>\d+(?:\.\d+)?)\s*$"
)
_STATED = (
    ("processes", r"(\d+) single process"),
    ("workers", r"(\d+) workers \(threads or greenlets\)"),
    ("subtasks", r"(\d+) subtasks, each creating"),
    ("size_mb", r"each creating (\d+(?:\.\d+)?)\s*MB"),
    (
        "default_time_s",
        r"--time`: Processing time for each subtask in seconds \(default: (\d+(?:\.\d+)?)\)",
    ),
)
# results.json summary key -> the figure's name here.
# fmt: off
FIGURE_KEYS = {
    "peak_rss_bytes": "peak", "peak_pss_bytes": "peak_pss", "baseline_rss_bytes": "baseline",
    "baseline_pss_bytes": "baseline_pss", "floor_bytes": "floor", "excess_rss_bytes": "excess",
    "excess_pss_bytes": "excess_pss", "task_peak_rss_bytes": "vmhwm",
    "tree_hwm_sum_bytes": "hwm_sum", "retained_rss_bytes": "retained",
    "retained_pss_bytes": "retained_pss", "trimmed_rss_bytes": "trimmed",
    "trimmed_pss_bytes": "trimmed_pss",
}
# fmt: on


def parse_seed(path: Path) -> dict[str, Any]:
    """The seed README's results table and stated parameters (nothing here is typed by hand)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise Failure(f"cannot read {path}: {exc.strerror or exc}") from None
    block = re.search(r"BENCHMARK RESULTS\s*\n=+\n(.*?)\n=+\n", text, re.S)
    if block is None:
        raise Failure(f"{path}: no BENCHMARK RESULTS table found")
    rows: dict[str, dict[str, Any]] = {}
    for line in block.group(1).splitlines():
        match = _SEED_ROW.match(line.strip())
        if match is None:
            continue
        scenario = SEED_LABELS.get(match["label"])
        if scenario is None:
            raise Failure(f"{path}: unknown approach {match['label']!r} in the seed's table")
        rows[scenario] = {
            "approach": f"{match['label']} {match['subtasks']}x{match['size']}MB",
            "peak_mb": float(match["peak"]),
            "time_s": float(match["time"]),
        }
    missing = [s for s in SEED_SCENARIOS if s not in rows]
    if missing:
        raise Failure(f"{path}: the seed's table has no row for {', '.join(missing)}")
    stated: dict[str, Any] = {}
    for key, pattern in _STATED:
        found = re.search(pattern, text)
        stated[key] = float(found.group(1)) if found else None
    # The published run's --time is not stated next to the table (only the flag's default).
    stated["time_stated_for_table"] = bool(re.search(r"Results.*?--time \d", text, re.S))
    return {"path": str(path), "rows": rows, "stated": stated, "table": block.group(0)}


def load_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise Failure(
            f"cannot read {path}: {exc.strerror or exc} (run without --skip-run)"
        ) from None
    except json.JSONDecodeError as exc:
        raise Failure(f"{path}: not JSON: {exc}") from None


def summary_figures(scenario: dict[str, Any]) -> dict[str, Any]:
    """A scenario's summary in MB (memory) and s (time): median, min, max over the runs."""
    summary = scenario["summary"]
    out: dict[str, Any] = {"scenario": scenario["scenario"], "approach": scenario["approach"]}
    for key, name in FIGURE_KEYS.items():
        figure = summary.get(key)
        out[name] = (
            {k: figure[k] / MB for k in ("median", "min", "max")} | {"n": figure["n"]}
            if figure
            else None
        )
    duration = summary.get("duration_s")
    out["time"] = {k: duration[k] for k in ("median", "min", "max")} if duration else None
    return out


def figures(scenario: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """One scenario of a results.json: medians (MB, s) with min-max, and what its runs report."""
    out = summary_figures(scenario)
    runs = [r for r in scenario["runs"] if not r.get("warmup")]
    ok = [r for r in runs if r["status"] == "ok"]
    out["runs_ok"], out["runs"] = len(ok), len(runs)
    out["processes"] = sorted({r["processes"] for r in ok if r.get("processes") is not None})
    threads = [r["max_os_threads"] for r in ok if r.get("max_os_threads") is not None]
    out["max_os_threads"] = statistics.median(threads) if threads else None
    for key in ("peak_method", "trim_method", "allocator"):
        out[key] = sorted({r[key] for r in ok if r.get(key)})
    ratios = [r["sampler"]["on_time_ratio"] for r in ok if r.get("sampler")]
    out["sampler_on_time_min"] = min(ratios) if ratios else None
    concurrent = scenario["strategy"] != "sequential"
    rounds = math.ceil(params["subtasks"] / params["workers"]) if concurrent else params["subtasks"]
    out["ideal_s"] = rounds * params["time_s"]
    return out


def _scenario_figures(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["scenario"]: figures(s, doc["parameters"]) for s in doc["scenarios"]}


def _axes(combination: dict[str, Any]) -> dict[str, str]:
    """`malloc=glibc payload=bytes` -> {"malloc": "glibc", "payload": "bytes"}."""
    return dict(part.split("=", 1) for part in combination["label"].split())


def _combinations(
    directory: Path, matrix_doc: dict[str, Any]
) -> Iterator[tuple[dict[str, str], dict[str, Any]]]:
    """(axes, results.json) of each combination of a `membench run --matrix` output."""
    for combination in matrix_doc["combinations"]:
        yield _axes(combination), load_json(directory / combination["results"])


def _time_range(docs: Iterable[dict[str, Any]]) -> tuple[str, str]:
    times = [when(doc) for doc in docs]
    return min(start for start, _ in times), max(end for _, end in times)


def load_results(out: Path) -> dict[str, Any]:
    """Everything the report reads, from the raw output of the three steps in `out`."""
    seed_doc = load_json(out / "seed" / "results.json")
    seed_figs = _scenario_figures(seed_doc)
    missing = [s for s in SEED_SCENARIOS if s not in seed_figs]
    if missing:
        raise Failure(f"{out / 'seed' / 'results.json'}: no scenario {', '.join(missing)}")
    matrix_doc = load_json(out / "matrix" / "matrix.json")
    matrix: dict[tuple[str, str], dict[str, Any]] = {}
    matrix_docs = []
    for axes, doc in _combinations(out / "matrix", matrix_doc):
        matrix_docs.append(doc)
        matrix[(axes.get("malloc", "glibc"), axes.get("payload", "bytes"))] = _scenario_figures(doc)
    arenas: dict[str, dict[str, Any]] = {}
    arenas_doc = None
    arenas_docs = []
    if (out / "arenas" / "matrix.json").exists():
        arenas_doc = load_json(out / "arenas" / "matrix.json")
        for axes, doc in _combinations(out / "arenas", arenas_doc):
            arenas_docs.append(doc)
            arenas[axes["payload"]] = _scenario_figures(doc)
    environment = {}
    for step in STEPS:
        path = out / step / ENV_FILE
        environment[step] = load_json(path) if path.exists() else None
    measured = {"seed_run": when(seed_doc), "matrix": _time_range(matrix_docs)}
    if arenas_docs:
        measured["arenas"] = _time_range(arenas_docs)
    return {
        "arenas": arenas,
        "arenas_doc": arenas_doc,
        "environment": environment,
        "measured": measured,
        "seed_doc": seed_doc,
        "seed": seed_figs,
        "params": seed_doc["parameters"],
        "matrix_doc": matrix_doc,
        "matrix": matrix,
    }


def load_saved(directory: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """From the copies saved beside the report (results.json, matrix.json, arenas-matrix.json,
    summary.json): the seed run as load_results gives it, with the matrix's figures as
    summary.json keeps them (the matrix's per-run files are not saved); and that summary.json."""
    summary = load_json(directory / "summary.json")
    seed_doc = load_json(directory / "results.json")
    arenas = directory / "arenas-matrix.json"
    data = {
        "arenas_doc": load_json(arenas) if arenas.exists() else None,
        "environment": summary["environment"],
        "measured": summary["measured"],
        "seed_doc": seed_doc,
        "seed": _scenario_figures(seed_doc),
        "params": seed_doc["parameters"],
        "matrix_doc": load_json(directory / "matrix.json"),
        "saved": summary,
    }
    return data, summary


# The decomposition's terms, in MB (summary.json keeps this order).
# fmt: off
TERMS = (
    "baseline", "floor", "excess", "peak", "baseline_pss", "excess_pss", "peak_pss", "vmhwm",
    "hwm_sum", "retained", "retained_pss", "trimmed", "trimmed_pss",
)
# fmt: on


def compute_ratios(data: dict[str, Any], seed: dict[str, Any]) -> list[dict[str, Any]]:
    """Ours vs the seed's, each from medians (ours) and the published figures (seed)."""
    ours, rows = data["seed"], seed["rows"]
    out: list[dict[str, Any]] = []

    def add(name: str, kind: str, mine: float | None, theirs: float | None) -> None:
        out.append({"ratio": name, "kind": kind, "ours": mine, "seed": theirs})

    seq = "prefork_sequential"
    for scenario in ("prefork_threads", "gevent_threads", "gevent_greenlets"):
        add(
            f"{scenario} / {seq} peak",
            "peak",
            ratio(med(ours[scenario], "peak"), med(ours[seq], "peak")),
            ratio(rows[scenario]["peak_mb"], rows[seq]["peak_mb"]),
        )
    for scenario in ("prefork_threads", "gevent_threads", "gevent_greenlets"):
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
    seed_conc = math.ceil(st["subtasks"] / st["workers"]) * st["default_time_s"]
    seed_seq = st["subtasks"] * st["default_time_s"]
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
    reference = data.get("matrix", {}).get(("glibc", "bytes"), {})
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
    if "saved" in data:  # the one-process rows come from the matrix: as summary.json keeps them
        saved = data["saved"]["decomposition_mb"]
        rows |= {s: saved[s] for s in ONE_PROCESS if s in saved}
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
