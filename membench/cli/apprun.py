"""`membench run --app MODULE:ATTRIBUTE --task NAME`: the user's real Celery task under each pool
and concurrency. Parse and check everything before any process starts, build the plan, run it,
print and write what was measured (the engine is membench/run/app/)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from membench.cli.measuring import Measuring, held_output
from membench.cli.options import (
    EXIT_FAILED_RUNS,
    EXIT_INTERRUPTED,
    EXIT_OK,
    MAX_CONCURRENCY,
    UsageError,
    check_broker,
    worker_options,
)
from membench.descendants import Adopter
from membench.run.app.spec import MAX_TASK_TIMEOUT_S, MAX_TASKS

if TYPE_CHECKING:
    from membench.results.model import AppRun
    from membench.run.app.runner import AppPlan

# The seed's flags that mean nothing to a user's task: refused with --app rather than ignored.
SEED_ONLY = {
    "subtasks": "--subtasks",
    "size_mb": "--size",
    "hold_s": "--time",
    "workers": "--workers",
    "runs": "--runs",
    "warmup": "--warmup",
    "scenarios": "--scenarios",
    "payload": "--payload",
    "reuse_worker": "--reuse-worker",
    "malloc_trim": "--malloc-trim",
    "targets_dir": "--targets-dir",
    "sizing": "--sizing",
    "matrix": "--matrix",
}
DEFAULT_CONCURRENCY = "1,4"
APP_ONLY = {
    "task": "--task",
    "args": "--args",
    "kwargs": "--kwargs",
    "tasks": "--tasks",
    "pools": "--pools",
    "task_timeout": "--task-timeout",
}


def app_options(function: Any) -> Any:
    """The flags of the --app mode, added to `membench run`."""
    decorators = [
        click.option(
            "--app",
            "app",
            metavar="MODULE:ATTRIBUTE",
            help="benchmark your own Celery app's task instead of the seed's (importable from "
            "the current directory or PYTHONPATH)",
        ),
        click.option("--task", metavar="NAME", help="--app: the registered task name to run"),
        click.option("--args", metavar="JSON", help="--app: positional arguments, a JSON array"),
        click.option("--kwargs", metavar="JSON", help="--app: keyword arguments, a JSON object"),
        click.option(
            "--tasks",
            type=click.IntRange(1, MAX_TASKS),
            metavar="M",
            help="--app: runs per pool and concurrency [20]",
        ),
        click.option(
            "--pools",
            metavar="LIST",
            help="--app: pools to run, of prefork,gevent,threads,solo [all four]",
        ),
        click.option(
            "--task-timeout",
            type=click.FloatRange(0, MAX_TASK_TIMEOUT_S, min_open=True),
            metavar="S",
            help="--app: a run not ended this many seconds after it started is timed out [60]",
        ),
    ]
    for decorator in reversed(decorators):
        function = decorator(function)
    return function


def refuse_mixed_modes(args: SimpleNamespace) -> None:
    """App flags without --app, or seed flags with it: one line naming the flag."""
    ctx = click.get_current_context(silent=True)

    def given(name: str) -> bool:
        if ctx is None:
            return bool(getattr(args, name, None))
        source = ctx.get_parameter_source(name)
        return source is not None and source is not ParameterSource.DEFAULT

    if args.app is None:
        for name, flag in APP_ONLY.items():
            if given(name):
                raise UsageError(f"{flag}: only with --app MODULE:ATTRIBUTE")
        return
    for name, flag in SEED_ONLY.items():
        if given(name):
            raise UsageError(f"{flag}: the seed benchmark's flag; not with --app")


def _concurrency(args: SimpleNamespace) -> Any:
    """The --concurrency list; not given, 1,4: one task against four in flight."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.get_parameter_source("concurrency") is ParameterSource.DEFAULT:
        return DEFAULT_CONCURRENCY
    return args.concurrency


def _plan(args: SimpleNamespace) -> AppPlan:
    from membench.run.app.runner import AppPlan
    from membench.run.app.spec import AppSpecError, parse_concurrencies, parse_pools
    from membench.run.app.spec import resolve as resolve_spec

    if not args.task:
        raise UsageError("--task: required with --app (the registered task name)")
    try:
        pools = parse_pools(args.pools or "prefork,gevent,threads,solo")
        concurrencies = parse_concurrencies(_concurrency(args), MAX_CONCURRENCY)
    except AppSpecError as exc:
        raise UsageError(str(exc)) from None
    tasks = 20 if args.tasks is None else args.tasks
    timeout = 60.0 if args.task_timeout is None else args.task_timeout
    options = worker_options(
        args.malloc, args.max_tasks_per_child, args.max_memory_per_child, set(pools)
    )
    try:
        spec = resolve_spec(args.app, args.task, args.args or "[]", args.kwargs or "{}")
    except AppSpecError as exc:
        raise UsageError(str(exc)) from None
    return AppPlan(spec, pools, concurrencies, tasks, timeout, options, force=args.force)


def cmd_app_run(args: SimpleNamespace) -> int:
    plan = _plan(args)
    broker = args.broker or None
    if broker:
        check_broker(broker)
    with held_output(args.output) as output:  # last of the checks: it creates the directory
        return _measure(plan, broker, output)


def _measure(plan: AppPlan, broker: str | None, output: Path) -> int:
    from membench.run.app.report import app_results_document, format_app_table
    from membench.run.app.runner import AppRunner
    from membench.run.report import command_line

    rows: list[AppRun] = []
    started_at = time.time()
    measuring = Measuring(broker)
    with measuring:
        url = measuring.start_broker()
        adopter = Adopter()

        def progress(line: str) -> None:
            print(f"membench: {line}", file=sys.stderr)

        AppRunner(plan, url, progress, adopter).run(rows)
        measuring.complete = True
    document = app_results_document(
        plan,
        rows,
        broker=measuring.shown,
        command=command_line(),
        started_at=started_at,
        complete=measuring.complete,
    )
    print(format_app_table(rows, plan))
    measuring.write_results(output, document)
    if not measuring.complete:
        print("membench: results are INCOMPLETE (interrupted)", file=sys.stderr)
        return EXIT_INTERRUPTED
    bad = [r for r in rows if r.status != "ok" or r.escaped_processes]
    if bad:
        print(f"membench: {len(bad)} of {len(rows)} row(s) failed or refused", file=sys.stderr)
        return EXIT_FAILED_RUNS
    return EXIT_FAILED_RUNS if measuring.unwritten else EXIT_OK
