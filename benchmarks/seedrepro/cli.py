"""The seed reproduction's command line: parse the flags, run the `membench run` steps, then build
the report (or only re-render it from the JSON saved beside it)."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from membench.jsonfile import write_json_atomic

from . import seedmethod
from .build import build_report, print_summary, render_saved
from .collect import parse_seed
from .common import (
    ALLOCATORS,
    ARENA_SCENARIOS,
    ENV_FILE,
    FULL,
    MANY_ARENAS,
    MATRIX_SCENARIOS,
    PAYLOADS,
    QUICK,
    REPORT,
    SEED_README,
    STEPS,
    Failure,
)

DESCRIPTION = (
    "Reproduce the seed benchmark's published table and compute the terms of every difference."
)
Step = tuple[str, list[str], dict[str, str]]  # name, `membench` arguments, extra environment
# `numpy`: the seed's subtask and method (seedmethod.py), straight into the report's directory.
ALL_STEPS = (*STEPS, "numpy")


def membench_argv() -> list[str]:
    found = shutil.which("membench")
    return [found] if found else [sys.executable, "-m", "membench"]


def _fmt_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def run_commands(out: Path, runs: int, quick: bool) -> list[Step]:
    """(step, `membench run` arguments, extra environment) of each step, exactly as run."""
    p = QUICK if quick else FULL
    common = ["run"]
    for flag in ("subtasks", "size", "workers", "time"):
        common += [f"--{flag}", _fmt_number(p[flag])]
    common += ["--runs", str(runs), "--malloc-trim"]
    matrix = (
        ["malloc=glibc", "payload=bytes,records"]
        if quick
        else ["malloc=" + ",".join(ALLOCATORS), "payload=" + ",".join(PAYLOADS)]
    )
    steps: list[Step] = [
        ("seed", [], {}),
        ("matrix", ["--scenarios", ",".join(MATRIX_SCENARIOS), "--matrix", *matrix], {}),
        # More glibc arenas than this machine's default limit (8 x cores): what a machine with
        # enough cores for one arena per thread would allow. membench has no flag for it (its
        # arena2 sets 2); the worker inherits MALLOC_ARENA_MAX from the environment.
        (
            "arenas",
            ["--scenarios", ",".join(ARENA_SCENARIOS), "--matrix", "payload=" + ",".join(PAYLOADS)],
            {"MALLOC_ARENA_MAX": str(MANY_ARENAS)},
        ),
    ]
    return [
        (name, [*common, *extra, "--output", str(out / name)], env) for name, extra, env in steps
    ]


def _recorded_environment() -> dict[str, str]:
    """The variables that change the workers' allocator: they inherit this environment."""
    return {
        k: v
        for k, v in sorted(os.environ.items())
        if k.startswith(("MALLOC_", "GLIBC_TUNABLES", "LD_PRELOAD", "PYTHONMALLOC"))
    }


def run_step(out: Path, name: str, args: list[str], extra_env: dict[str, str]) -> int:
    """Run one step's `membench run`, recording the allocator environment it ran with."""
    argv = [*membench_argv(), *args]
    env = dict(os.environ) | extra_env
    prefix = "".join(f"{k}={v} " for k, v in extra_env.items())
    print(f"\n$ {prefix}membench {' '.join(args)}", flush=True)
    record = out / name
    record.mkdir(parents=True, exist_ok=True)
    environment = {"inherited": _recorded_environment(), "set_by_script": extra_env}
    write_json_atomic(record / ENV_FILE, environment)
    t0 = time.monotonic()
    code = subprocess.run(argv, check=False, env=env).returncode
    print(f"reproduce_seed: {name}: exit {code} after {time.monotonic() - t0:.0f} s", flush=True)
    if code == 130:
        raise KeyboardInterrupt
    if code not in (0, 1):
        raise Failure(f"`{prefix}membench {' '.join(args)}` exited {code}")
    return code


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="reproduce_seed.py", description=DESCRIPTION)
    parser.add_argument(
        "--output",
        default=str(Path(tempfile.gettempdir()) / "membench-seed-reproduction"),
        help="directory for the raw membench results (default: %(default)s)",
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per scenario (default: 3)")
    parser.add_argument(
        "--skip-run",
        action="store_true",
        help="do not measure: regenerate the report from the JSON already in --output",
    )
    parser.add_argument(
        "--render-only",
        nargs="?",
        const=str(REPORT.with_suffix("")),
        metavar="DIR",
        help="do not measure or copy: re-render --report from the JSON saved in DIR "
        "(default: docs/results/seed-reproduction) and check it against DIR/summary.json",
    )
    parser.add_argument(
        "--report",
        default=str(REPORT),
        help="the Markdown report; its files go in a directory of the same name without .md "
        "(default: docs/results/seed-reproduction.md)",
    )
    parser.add_argument(
        "--seed-readme", default=str(SEED_README), help="the seed benchmark's README"
    )
    parser.add_argument(
        "--steps",
        default=",".join(ALL_STEPS),
        help="measurement steps to run (default: %(default)s); the report reads all four",
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
    out = Path(args.output).resolve()
    seed_readme = Path(args.seed_readme)
    report = Path(args.report).resolve()
    codes: dict[str, int] = {}
    try:
        # Parse the seed first: a missing README must not cost a 15-minute run.
        seed = parse_seed(seed_readme)
        if args.render_only is not None:
            summary = render_saved(Path(args.render_only).resolve(), seed, report)
        else:
            commands = run_commands(out, args.runs, args.quick)
            if not args.skip_run:
                out.mkdir(parents=True, exist_ok=True)
                for name, command, extra_env in commands:
                    if name in args.steps:
                        codes[name] = run_step(out, name, command, extra_env)
                if "numpy" in args.steps and not args.quick:
                    seedmethod.measure(report.with_suffix(""), membench_argv())
            summary = build_report(out, seed, seed_readme, report, args)
    except Failure as exc:
        print(f"reproduce_seed: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("reproduce_seed: interrupted", file=sys.stderr)
        return 130
    print_summary(summary)
    if args.render_only is not None:
        print(f"\nwrote {report}")
        return 1 if summary["mismatch"] else 0
    print(f"\nwrote {report} and {report.with_suffix('')}/")
    return 1 if any(codes.values()) or summary["failed_runs"] or summary["mismatch"] else 0
