"""Read what was measured: the seed's published table, membench's results.json/matrix.json (or the
copies saved beside the report), reduced to medians in MB and s per scenario."""

from __future__ import annotations

import json
import math
import re
import statistics
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .common import (
    ENV_FILE,
    MANY,
    MB,
    ONE_PROCESS,
    SEED_LABELS,
    SEED_SCENARIOS,
    STEPS,
    Failure,
)
from .fmt import when

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
FIGURE_KEYS = {
    "peak_rss_bytes": "peak",
    "peak_pss_bytes": "peak_pss",
    "baseline_rss_bytes": "baseline",
    "baseline_pss_bytes": "baseline_pss",
    "floor_bytes": "floor",
    "excess_rss_bytes": "excess",
    "excess_pss_bytes": "excess_pss",
    "task_peak_rss_bytes": "vmhwm",
    "tree_hwm_sum_bytes": "hwm_sum",
    "retained_rss_bytes": "retained",
    "retained_pss_bytes": "retained_pss",
    "trimmed_rss_bytes": "trimmed",
    "trimmed_pss_bytes": "trimmed_pss",
}


def parse_seed(path: Path) -> dict[str, Any]:
    """The seed README's results table and stated parameters (nothing here is typed by hand)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise Failure(f"--seed-readme: cannot read {path}: {exc.strerror or exc}") from None
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
    out["failures"] = [f"run {r['run']}: {r['reason']}" for r in runs if r["status"] != "ok"]
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


def _saved_figures(scenario: dict[str, Any], cell: dict[str, Any]) -> dict[str, Any]:
    """Figures of a matrix scenario from its saved summary plus the cell summary.json kept of its
    runs; what neither kept (failures, peak method, sampler, ideal) is empty."""
    return summary_figures(scenario) | {
        "runs_ok": cell["runs_ok"],
        "runs": cell["runs"],
        "failures": [],
        "processes": [],
        "max_os_threads": cell["max_os_threads"],
        "peak_method": [],
        "trim_method": cell.get("trim_method", []),
        "allocator": cell.get("allocator", []),
        "sampler_on_time_min": None,
        "ideal_s": None,
    }


def load_saved(directory: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """What load_results gives, rebuilt from the copies saved beside the report (results.json,
    matrix.json, arenas-matrix.json, summary.json); and that summary.json."""
    summary = load_json(directory / "summary.json")
    seed_doc = load_json(directory / "results.json")
    matrix_doc = load_json(directory / "matrix.json")
    matrix: dict[tuple[str, str], dict[str, Any]] = {}
    for combination in matrix_doc["combinations"]:
        axes = _axes(combination)
        malloc, payload = axes.get("malloc", "glibc"), axes.get("payload", "bytes")
        cells = summary["matrix_mb"][payload][malloc]
        matrix[(malloc, payload)] = {
            s["scenario"]: _saved_figures(s, cells[s["scenario"]]) for s in combination["scenarios"]
        }
    # The one-process rows of the decomposition come from this combination.
    for scenario, row in summary["decomposition_mb"].items():
        if scenario in ONE_PROCESS and row["source"] == "matrix glibc/bytes":
            fig = matrix[("glibc", "bytes")][scenario]
            fig["processes"], fig["ideal_s"] = row["processes"], row["ideal_s"]
    arenas: dict[str, dict[str, Any]] = {}
    arenas_doc = None
    if (directory / "arenas-matrix.json").exists():
        arenas_doc = load_json(directory / "arenas-matrix.json")
        for combination in arenas_doc["combinations"]:
            payload = _axes(combination)["payload"]
            cells = summary["arenas_mb"][payload]
            arenas[payload] = {
                s["scenario"]: _saved_figures(s, cells[s["scenario"]][MANY])
                for s in combination["scenarios"]
            }
    data = {
        "arenas": arenas,
        "arenas_doc": arenas_doc,
        "environment": summary["environment"],
        "measured": summary["measured"],
        "seed_doc": seed_doc,
        "seed": _scenario_figures(seed_doc),
        "params": seed_doc["parameters"],
        "matrix_doc": matrix_doc,
        "matrix": matrix,
    }
    return data, summary
