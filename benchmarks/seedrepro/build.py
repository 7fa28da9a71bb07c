"""Turn measurements into the report: compute, render, copy the raw results beside it and write
summary.json; or re-render the report from those saved copies alone."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from membench.jsonfile import write_json_atomic

from . import blocks, page, seedmethod, seedtables
from .collect import load_results, load_saved
from .common import MANY_ARENAS, MAX_RESULTS_BYTES, REPORT, ReportInputs, med
from .decompose import compute_arenas, compute_decomposition, compute_matrix, compute_ratios
from .fmt import f1, f2, short

# The parts of summary.json that render-only recomputes, to check against the saved ones.
COMPUTED = ("ratios", "decomposition_mb", "matrix_mb", "arenas_mb")


def copy_results(out: Path, target: Path) -> dict[str, Any]:
    """Copy results.json (timelines of non-median runs dropped only if over ~3 MB), the plot and
    matrix.json into `target`; say what was done."""
    target.mkdir(parents=True, exist_ok=True)
    source = out / "seed" / "results.json"
    stripped = False
    if source.stat().st_size > MAX_RESULTS_BYTES:
        document = json.loads(source.read_text())
        for scenario in document["scenarios"]:
            measured = [r for r in scenario["runs"] if r["status"] == "ok" and not r.get("warmup")]
            measured.sort(key=lambda r: r["peak_rss_bytes"])
            keep = measured[len(measured) // 2] if measured else None
            for run in scenario["runs"]:
                if run is not keep:
                    run["timeline"] = {}
        write_json_atomic(target / "results.json", document)
        stripped = True
    else:
        shutil.copyfile(source, target / "results.json")
    shutil.copyfile(out / "seed" / "memory_comparison.png", target / "memory_comparison.png")
    shutil.copyfile(out / "matrix" / "matrix.json", target / "matrix.json")
    if (out / "arenas" / "matrix.json").exists():
        shutil.copyfile(out / "arenas" / "matrix.json", target / "arenas-matrix.json")
    return {
        "source_bytes": source.stat().st_size,
        "stripped_timelines": stripped,
        "copied_bytes": (target / "results.json").stat().st_size,
    }


def _files(rel: str, copied: dict[str, Any]) -> list[str]:
    """The report's Files list: what lies in the directory `rel` beside it."""
    return [
        f"[`{rel}/results.json`]({rel}/results.json): the seed use case, every run, as written by "
        "`membench run`"
        + (
            f" (it was {copied['source_bytes'] / 1e6:.1f} MB: the `timeline` arrays of all but "
            "the median-peak run per scenario are emptied here; every other figure is intact)"
            if copied["stripped_timelines"]
            else " (unchanged)"
        ),
        f"[`{rel}/memory_comparison.png`]({rel}/memory_comparison.png): tree RSS and PSS over "
        "time, the median-peak run per approach",
        f"[`{rel}/matrix.json`]({rel}/matrix.json): the matrix's summaries per combination "
        "(per-run files stay in the run's output directory)",
        f"[`{rel}/arenas-matrix.json`]({rel}/arenas-matrix.json): the `arenas` step's "
        f"summaries (`MALLOC_ARENA_MAX={MANY_ARENAS}`)",
        f"[`{rel}/summary.json`]({rel}/summary.json): the ratios, the decomposition and the "
        "matrix figures on this page, machine-readable",
        *seedmethod.files(rel),
    ]


def argv_text(output: str, runs: int) -> str:
    """The flags of the reproduce_seed command the report shows."""
    return f"--output {output}" + (f" --runs {runs}" if runs != 3 else "")


def quoted_figures(summary: dict[str, Any], method: dict[str, Any] | None) -> dict[str, Any]:
    """What the page's narrative may quote: summary.json, and seed-method.json as `seed_method`."""
    return summary | {"seed_method": method or {}}


def compose(
    data: dict[str, Any], seed: dict[str, Any], notes: dict[str, Any], template: str
) -> tuple[str, dict[str, Any], dict[str, Any] | None]:
    """The page (the template's narrative with its blocks filled in), the figures summary.json
    keeps (COMPUTED) and the seed-method figures; `notes` gives argv, files and saved_dir."""
    ratios = compute_ratios(data, seed)
    deco = compute_decomposition(data)
    matrix = compute_matrix(data)
    arenas = compute_arenas(data, matrix) if data["arenas"] else {}
    inputs = ReportInputs(data, seed, ratios, deco, matrix, arenas)
    method = seedmethod.build(notes["saved_dir"], seed["rows"], deco)
    method_blocks = (
        seedtables.blocks(method["saved"], method["figures"], seed["rows"])
        if method
        else dict.fromkeys(seedtables.BLOCK_NAMES, blocks.NOT_RUN)
    )
    text = page.fill(template, blocks.build(inputs, notes["argv"], notes["files"], method_blocks))
    figures = {
        "ratios": ratios,
        "decomposition_mb": deco,
        "matrix_mb": matrix,
        "arenas_mb": arenas,
    }
    return text, figures, method["figures"] if method else None


def template_for(report: Path) -> str:
    """The narrative to fill: the report itself, or the committed page for a new path."""
    source = report if report.exists() else REPORT
    return source.read_text()


def build_report(
    out: Path, seed: dict[str, Any], seed_readme: Path, report: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """Report and summary.json from the raw output of the runs in `out`; returns the summary."""
    data = load_results(out)
    target = report.with_suffix("")
    copied = copy_results(out, target)
    notes = {
        "quick": args.quick,
        "argv": argv_text(args.output, args.runs),
        "files": _files(target.name, copied),
        "saved_dir": target,
    }
    text, figures, method = compose(data, seed, notes, template_for(report))
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(text)
    failed = sum(
        fig["runs"] - fig["runs_ok"]
        for fig in [
            *data["seed"].values(),
            *[f for m in data["matrix"].values() for f in m.values()],
        ]
    )
    summary = {
        "generated_by": "benchmarks/reproduce_seed.py",
        "quick": args.quick,
        "commands": [data["seed_doc"]["command"], data["matrix_doc"]["command"]],
        "measured": data["measured"],
        "machine": data["seed_doc"]["machine"],
        "parameters": data["params"],
        "seed_published": {
            "readme": str(seed_readme),
            "rows": seed["rows"],
            "stated": seed["stated"],
        },
        "ours": {
            s: {
                "approach": fig["approach"],
                "peak_mb": fig["peak"],
                "time_s": fig["time"],
                "ideal_s": fig["ideal_s"],
                "runs_ok": fig["runs_ok"],
                "runs": fig["runs"],
            }
            for s, fig in data["seed"].items()
        },
        "ratios": figures["ratios"],
        "decomposition_mb": figures["decomposition_mb"],
        "matrix_mb": figures["matrix_mb"],
        "arenas_mb": figures["arenas_mb"],
        "environment": data["environment"],
        "results_copy": copied,
        "failed_runs": failed,
    }
    write_json_atomic(target / "summary.json", summary)
    return summary | {"mismatch": _quote_problems(text, summary, method)}


def _quote_problems(text: str, summary: dict[str, Any], method: dict[str, Any] | None) -> list[str]:
    """The page's quoted numbers that its figures do not give, each said on stderr."""
    # Compared as JSON: tuples come back from a file as lists.
    figures = json.loads(json.dumps(quoted_figures(summary, method)))
    problems = page.check(text, figures)
    for problem in problems:
        print(f"reproduce_seed: warning: the page's narrative, {problem}", file=sys.stderr)
    return problems


def _seed_output(command: list[str]) -> str:
    """The reproduce_seed --output a step's `membench run ... --output OUT/seed` came from."""
    return str(Path(command[command.index("--output") + 1]).parent)


def render_saved(saved: Path, seed: dict[str, Any], report: Path) -> dict[str, Any]:
    """Re-render the report from the copies in `saved` (nothing is run or copied) and check that
    they give the figures their summary.json holds (a warning on stderr names any that differ).
    Returns that summary.json, with `mismatch` listing what differs."""
    data, summary = load_saved(saved)
    notes = {
        "quick": summary["quick"],
        "argv": argv_text(_seed_output(data["seed_doc"]["command"]), data["params"]["runs"]),
        "files": _files(report.with_suffix("").name, summary["results_copy"]),
        "saved_dir": saved,
    }
    text, figures, method = compose(data, seed, notes, template_for(report))
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(text)
    # Compared as JSON: tuples come back from a file as lists.
    recomputed = json.loads(json.dumps(figures))
    mismatch = [key for key in COMPUTED if recomputed[key] != summary[key]]
    if mismatch:
        print(
            f"reproduce_seed: warning: {saved / 'summary.json'} holds other {', '.join(mismatch)} "
            "than its saved results give",
            file=sys.stderr,
        )
    return summary | {"mismatch": mismatch + _quote_problems(text, summary, method)}


def print_summary(summary: dict[str, Any]) -> None:
    """The short table on stdout: ours beside the seed's, the ratios, each peak's terms."""
    print("\nSEED REPRODUCTION (MB, s; ours = medians over runs)")
    ours, seed = summary["ours"], summary["seed_published"]["rows"]
    header = f"{'approach':<36}{'peak ours':>11}{'peak seed':>11}{'time ours':>11}{'time seed':>11}"
    print(header)
    print("-" * len(header))
    for s in sorted(ours, key=lambda k: ours[k]["peak_mb"]["median"] if ours[k]["peak_mb"] else 0):
        fig = ours[s]
        print(
            f"{fig['approach']:<36}{f1(med(fig, 'peak_mb')):>11}{f2(seed[s]['peak_mb']):>11}"
            f"{f2(med(fig, 'time_s')):>11}{f2(seed[s]['time_s']):>11}"
        )
    print()
    header = f"{'ratio':<50}{'ours':>8}{'seed':>8}"
    print(header)
    print("-" * len(header))
    for r in summary["ratios"]:
        print(f"{r['ratio']:<50}{f2(r['ours']):>8}{f2(r['seed']) if r['seed'] else '-':>8}")
    print()
    header = f"{'approach':<20}{'baseline':>9}{'floor':>7}{'excess':>8}{'peak':>8}{'peakPSS':>9}"
    header += f"{'HWMsum':>8}{'retained':>9}{'trimmed':>8}"
    print(header)
    print("-" * len(header))
    for s, d in summary["decomposition_mb"].items():
        print(
            f"{short(s):<20}{f1(d['baseline']):>9}{f1(d['floor']):>7}{f1(d['excess']):>8}"
            f"{f1(d['peak']):>8}{f1(d['peak_pss']):>9}{f1(d['hwm_sum']):>8}"
            f"{f1(d['retained']):>9}{f1(d['trimmed']):>8}"
        )
    if summary["failed_runs"]:
        print(f"\n{summary['failed_runs']} run(s) FAILED: see the report")
