"""Reproduce the seed benchmark's published table: the command line and the pipeline.

Run the `membench run` steps, copy their JSON beside the report, compute every figure, write
summary.json, fill the page's tables and check the numbers its narrative quotes; or only
re-render the page from the JSON saved beside it."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from membench.jsonfile import write_json_atomic

from . import page, seedmethod, tables
from .collect import (
    compute_arenas,
    compute_decomposition,
    compute_matrix,
    compute_ratios,
    load_results,
    load_saved,
    parse_seed,
)
from .common import (
    ALLOCATORS,
    ARENA_SCENARIOS,
    ENV_FILE,
    MANY_ARENAS,
    MATRIX_SCENARIOS,
    PAYLOADS,
    REPO,
    REPORT,
    SEED_README,
    STEPS,
    Failure,
)

Step = tuple[str, list[str], dict[str, str]]  # name, `membench` arguments, extra environment
# `numpy`: the seed's subtask and method (seedmethod.py), straight into the report's directory.
ALL_STEPS = (*STEPS, "numpy")
FULL = {"subtasks": "200", "size": "3", "workers": "40", "time": "0.5"}
QUICK = {"subtasks": "20", "size": "1", "workers": "4", "time": "0.05"}
# What render-only recomputes from the saved runs, to check against summary.json.
COMPUTED = ("ratios", "decomposition_mb")


def membench_argv() -> list[str]:
    found = shutil.which("membench")
    return [found] if found else [sys.executable, "-m", "membench"]


def run_commands(out: Path, runs: int, quick: bool) -> list[Step]:
    """(step, `membench run` arguments, extra environment) of each step, exactly as run."""
    common = ["run", *(x for k, v in (QUICK if quick else FULL).items() for x in (f"--{k}", v))]
    common += ["--runs", str(runs), "--malloc-trim"]
    matrix = ["malloc=" + ",".join(ALLOCATORS), "payload=" + ",".join(PAYLOADS)]
    steps: list[Step] = [
        ("seed", [], {}),
        (
            "matrix",
            ["--scenarios", ",".join(MATRIX_SCENARIOS), "--matrix", *matrix[int(quick) :]],
            {},
        ),
        # More glibc arenas than this machine's default limit (8 x cores): what a machine with
        # enough cores for one arena per thread would allow. membench has no flag for it (its
        # arena2 sets 2); the worker inherits MALLOC_ARENA_MAX from the environment.
        (
            "arenas",
            ["--scenarios", ",".join(ARENA_SCENARIOS), "--matrix", matrix[1]],
            {"MALLOC_ARENA_MAX": str(MANY_ARENAS)},
        ),
    ]
    return [(name, [*common, *extra, "--output", str(out / name)], e) for name, extra, e in steps]


def run_step(out: Path, name: str, args: list[str], extra_env: dict[str, str]) -> int:
    """Run one step's `membench run`, recording the allocator environment it ran with (the
    variables that change the workers' allocator: they inherit this environment)."""
    prefix = "".join(f"{k}={v} " for k, v in extra_env.items())
    print(f"\n$ {prefix}membench {' '.join(args)}", flush=True)
    (out / name).mkdir(parents=True, exist_ok=True)
    inherited = {
        k: v
        for k, v in sorted(os.environ.items())
        if k.startswith(("MALLOC_", "GLIBC_TUNABLES", "LD_PRELOAD", "PYTHONMALLOC"))
    }
    environment = {"inherited": inherited, "set_by_script": extra_env}
    write_json_atomic(out / name / ENV_FILE, environment)
    t0 = time.monotonic()
    env = dict(os.environ) | extra_env
    code = subprocess.run([*membench_argv(), *args], check=False, env=env).returncode
    print(f"reproduce_seed: {name}: exit {code} after {time.monotonic() - t0:.0f} s", flush=True)
    if code == 130:
        raise KeyboardInterrupt
    if code not in (0, 1):
        raise Failure(f"`{prefix}membench {' '.join(args)}` exited {code}")
    return code


def copy_results(out: Path, target: Path) -> None:
    """Copy the seed run's results.json and plot, and the steps' matrix.json, into `target`."""
    target.mkdir(parents=True, exist_ok=True)
    for source, name in (
        (out / "seed" / "results.json", "results.json"),
        (out / "seed" / "memory_comparison.png", "memory_comparison.png"),
        (out / "matrix" / "matrix.json", "matrix.json"),
        (out / "arenas" / "matrix.json", "arenas-matrix.json"),
    ):
        if source.exists():
            shutil.copyfile(source, target / name)


def quoted_figures(summary: dict[str, Any], method: dict[str, Any] | None) -> dict[str, Any]:
    """What the page's narrative may quote: summary.json, and seed-method.json as `seed_method`."""
    return summary | {"seed_method": method or {}}


def compose(
    data: dict[str, Any], seed: dict[str, Any], argv: str, saved_dir: Path, report: Path
) -> tuple[str, dict[str, Any], dict[str, Any] | None]:
    """The page (the narrative of `report`, or of the committed page for a new path, with its
    tables filled in), the figures summary.json keeps and the seed-method figures."""
    if "saved" in data:  # render-only: the matrix's figures as summary.json keeps them
        matrix, arenas = data["saved"]["matrix_mb"], data["saved"]["arenas_mb"]
    else:
        matrix = compute_matrix(data)
        arenas = compute_arenas(data, matrix) if data["arenas"] else {}
    figures = {
        "ratios": compute_ratios(data, seed),
        "decomposition_mb": compute_decomposition(data),
        "matrix_mb": matrix,
        "arenas_mb": arenas,
    }
    method = seedmethod.build(saved_dir, seed["rows"], figures["decomposition_mb"])
    blocks = method and tables.method_blocks(method["saved"], method["figures"], seed["rows"])
    template = (report if report.exists() else REPORT).read_text()
    text = page.fill(template, tables.build(data, seed, figures, argv, blocks))
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(text)
    return text, figures, method["figures"] if method else None


def quote_problems(text: str, summary: dict[str, Any], method: dict[str, Any] | None) -> list[str]:
    """The page's quoted numbers that its figures do not give, each said on stderr."""
    # Compared as JSON: tuples come back from a file as lists.
    problems = page.check(text, json.loads(json.dumps(quoted_figures(summary, method))))
    for problem in problems:
        print(f"reproduce_seed: warning: the page's narrative, {problem}", file=sys.stderr)
    return problems


def argv_text(output: str, runs: int) -> str:
    """The flags of the reproduce_seed command the report shows."""
    return f"--output {output}" + (f" --runs {runs}" if runs != 3 else "")


def build_report(out: Path, seed: dict[str, Any], report: Path, args: Any) -> dict[str, Any]:
    """Report and summary.json from the raw output of the runs in `out`; returns the summary,
    with `mismatch` listing the quoted numbers that differ from it."""
    data = load_results(out)
    target = report.with_suffix("")
    copy_results(out, target)
    argv = argv_text(args.output, args.runs)
    text, figures, method = compose(data, seed, argv, target, report)
    scenarios = [*data["seed"].values(), *[f for m in data["matrix"].values() for f in m.values()]]
    summary = {
        "generated_by": "benchmarks/reproduce_seed.py",
        "quick": args.quick,
        "measured": data["measured"],
        "parameters": data["params"],
        "seed_published": {
            "readme": str(SEED_README.relative_to(REPO)),
            "rows": seed["rows"],
            "stated": seed["stated"],
        },
        **figures,
        "environment": data["environment"],
        "failed_runs": sum(fig["runs"] - fig["runs_ok"] for fig in scenarios),
    }
    write_json_atomic(target / "summary.json", summary)
    return summary | {"mismatch": quote_problems(text, summary, method)}


def render_saved(saved: Path, seed: dict[str, Any], report: Path) -> list[str]:
    """Re-render the report from the copies in `saved` (nothing is run or copied) and check that
    they give the figures their summary.json holds; what differs, each said on stderr."""
    data, summary = load_saved(saved)
    command = data["seed_doc"]["command"]  # `membench run ... --output OUT/seed`
    output = str(Path(command[command.index("--output") + 1]).parent)
    argv = argv_text(output, data["params"]["runs"])
    text, figures, method = compose(data, seed, argv, saved, report)
    # Compared as JSON: tuples come back from a file as lists.
    recomputed = json.loads(json.dumps(figures))
    mismatch = [key for key in COMPUTED if recomputed[key] != summary[key]]
    if mismatch:
        print(
            f"reproduce_seed: warning: {saved / 'summary.json'} holds other {', '.join(mismatch)} "
            "than its saved results give",
            file=sys.stderr,
        )
    return mismatch + quote_problems(text, summary, method)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="reproduce_seed.py", description=__doc__.splitlines()[0], allow_abbrev=False
    )
    default_output = Path(tempfile.gettempdir()) / "membench-seed-reproduction"
    parser.add_argument("--output", default=str(default_output), help="raw membench results")
    parser.add_argument("--runs", type=int, default=3, help="runs per scenario (default: 3)")
    parser.add_argument(
        "--skip-run", action="store_true", help="regenerate from the JSON in --output"
    )
    parser.add_argument(
        "--render-only",
        nargs="?",
        const=str(REPORT.with_suffix("")),
        metavar="DIR",
        help="re-render --report from the JSON saved in DIR (default: beside the report), "
        "and check it against DIR/summary.json; nothing is run or copied",
    )
    parser.add_argument(
        "--report", default=str(REPORT), help="the page; its JSON goes beside it, without .md"
    )
    parser.add_argument(
        "--steps", default=",".join(ALL_STEPS), help="steps to run (default: %(default)s)"
    )
    # Development only: tiny settings and a 1x2 matrix, to exercise the whole pipeline quickly.
    parser.add_argument("--quick", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.steps = [step.strip() for step in args.steps.split(",") if step.strip()]
    unknown = [step for step in args.steps if step not in ALL_STEPS]
    if unknown:
        parser.error(f"--steps: unknown step {unknown[0]!r} (choose from {', '.join(ALL_STEPS)})")
    if not 1 <= args.runs <= 1000:
        parser.error(f"--runs: must be between 1 and 1000, got {args.runs}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out, report = Path(args.output).resolve(), Path(args.report).resolve()
    codes: dict[str, int] = {}
    try:
        # Parse the seed first: a README it cannot read must not cost a 15-minute run.
        seed = parse_seed(SEED_README)
        if args.render_only is not None:
            mismatch = render_saved(Path(args.render_only).resolve(), seed, report)
            print(f"\nwrote {report}")
            return 1 if mismatch else 0
        if not args.skip_run:
            out.mkdir(parents=True, exist_ok=True)
            for name, command, extra_env in run_commands(out, args.runs, args.quick):
                if name in args.steps:
                    codes[name] = run_step(out, name, command, extra_env)
            if "numpy" in args.steps and not args.quick:
                seedmethod.measure(report.with_suffix(""), membench_argv())
        summary = build_report(out, seed, report, args)
    except Failure as exc:
        print(f"reproduce_seed: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("reproduce_seed: interrupted", file=sys.stderr)
        return 130
    print(f"\nwrote {report} and {report.with_suffix('')}/")
    return 1 if any(codes.values()) or summary["failed_runs"] or summary["mismatch"] else 0
