"""`membench run`: every scenario on fresh Celery workers; the seed's table, results.json, plot.

Heavy imports (celery, matplotlib) happen inside the command, so bad input is refused fast and
before anything starts.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import click

from membench.cli.apprun import app_options, cmd_app_run, refuse_mixed_modes
from membench.cli.measuring import Measuring, held_output
from membench.cli.options import (
    EXIT_FAILED_RUNS,
    EXIT_INTERRUPTED,
    EXIT_OK,
    FIELD_FLAGS,
    MAX_CONCURRENCY,
    GreedyOption,
    UsageError,
    broker_option,
    check_broker,
    worker_option_group,
    worker_options,
    writable_dir,
)
from membench.descendants import Adopter
from membench.procfs import read_meminfo
from membench.units import MIB
from membench.workers.params import MAX_HOLD_S, MAX_SIZE_MB, MAX_SUBTASKS, MAX_WORKERS
from membench.workers.scenarios import SCENARIOS, SEED_SCENARIOS

if TYPE_CHECKING:
    from membench.run.records import RunConfig


def _user_payload_sha256(payload: str) -> str | None:
    """A MODULE:FUNCTION payload must import and resolve here, before any process starts; the
    sha256 of its module file goes to results.json. None for built-in payloads."""
    from membench.workers.params import is_user_payload
    from membench.workers.user_payload import PayloadError, module_sha256

    if not is_user_payload(payload):
        return None  # a built-in name, or refused with the others by BatchParams
    try:
        return module_sha256(payload)
    except PayloadError as exc:
        raise UsageError(f"--payload: {exc}") from None


def _run_config(args: SimpleNamespace) -> RunConfig:
    from membench.run.records import RunConfig
    from membench.workers.params import InvalidParameter
    from membench.workers.scenarios import parse_scenarios

    try:
        scenarios = parse_scenarios(args.scenarios)
    except ValueError as exc:
        raise UsageError(f"--scenarios: {exc}") from None
    config = RunConfig(
        scenarios=scenarios,
        subtasks=args.subtasks,
        size_mb=args.size_mb,
        hold_s=args.hold_s,
        workers=args.workers,
        concurrency=args.concurrency,
        runs=args.runs,
        payload=args.payload,
        payload_sha256=_user_payload_sha256(args.payload),
        reuse_worker=args.reuse_worker,
        warmup=args.warmup,
        options=worker_options(
            args.malloc,
            args.max_tasks_per_child,
            args.max_memory_per_child,
            {s.pool for s in scenarios},
        ),
        malloc_trim=args.malloc_trim,
        targets_dir=Path(args.targets_dir).resolve() if args.targets_dir else None,
    )
    try:
        planned = [config.params(s) for s in scenarios]
    except InvalidParameter as exc:
        raise UsageError(f"{FIELD_FLAGS.get(exc.field, exc.field)}: {exc.message}") from None
    held = max(p.held_at_once() * p.size_bytes for p in planned)
    available = read_meminfo()["MemAvailable"]
    if held > 0.8 * available and not args.force:
        raise UsageError(
            f"--size/--workers: the run would hold {held / MIB:.0f} MB of live data at once, "
            f"over 80% of the {available / MIB:.0f} MB available (use --force to run anyway)"
        )
    return config


def _run_plans(args: SimpleNamespace) -> list[tuple[str, RunConfig]]:
    """(label, RunConfig) per combination of --matrix (one unlabelled plan without it); every
    combination is validated before anything starts."""
    from membench.run.matrix import MATRIX_FLAGS, MatrixError, parse_matrix

    if not args.matrix:
        return [("", _run_config(args))]
    try:
        combinations = parse_matrix(args.matrix)
    except MatrixError as exc:
        raise UsageError(f"--matrix: {exc}") from None
    plans = []
    for combination in combinations:
        overridden = SimpleNamespace(**vars(args))
        for axis, value in combination.items():
            setattr(overridden, MATRIX_FLAGS[axis].dest, value)
        label = " ".join(f"{axis}={value}" for axis, value in combination.items())
        try:
            plans.append((label, _run_config(overridden)))
        except UsageError as exc:
            raise UsageError(f"--matrix {label}: {exc}") from None
    return plans


def cmd_run(args: SimpleNamespace) -> int:
    refuse_mixed_modes(args)
    if args.app is not None:
        return cmd_app_run(args)
    if not isinstance(args.concurrency, int):
        raise UsageError(f"--concurrency: a list is for --app runs, got {args.concurrency}")
    plans = _run_plans(args)
    sizing = args.sizing
    broker = args.broker or None
    if broker:
        check_broker(broker)
    if args.targets_dir:
        writable_dir("--targets-dir", Path(args.targets_dir))
    with held_output(args.output) as output:  # last of the checks: it creates the directory
        return _measure(plans, sizing, broker, output)


def _measure(
    plans: list[tuple[str, RunConfig]], sizing: int | None, broker: str | None, output: Path
) -> int:
    """Every plan, on an embedded redis-server unless `broker` is given; write what was measured
    even when interrupted."""
    from membench.broker import redact
    from membench.cli.progress import Progress
    from membench.results.document import write_results
    from membench.results.model import (
        BenchmarkResults,
        Combination,
        CombinationScenario,
        MatrixSummary,
    )
    from membench.run.matrix import combination_dir
    from membench.run.records import ScenarioResult
    from membench.run.report import (
        MATRIX_FILE,
        RESULTS_FILE,
        command_line,
        format_matrix_summary,
        format_table,
        results_document,
    )
    from membench.run.runner import BrokerLost, Runner
    from membench.run.sizing import format_sizing

    done: list[tuple[str, BenchmarkResults, Path]] = []
    measuring = Measuring(broker)

    def write(
        label: str,
        config: RunConfig,
        results: list[ScenarioResult],
        started_at: float,
        finished: bool,
    ) -> None:
        where = combination_dir(output, label)
        document = results_document(
            config,
            results,
            broker=measuring.shown,
            command=command_line(),
            started_at=started_at,
            complete=finished,
            sizing=sizing,
        )
        # The table first: whatever happens to the files, what was measured reaches stdout.
        if label:
            print(f"\n{label}")
        print(format_table(results, config.runs, config.warmup))
        print(format_sizing(document.sizing))
        measuring.write_results(where, document)
        done.append((label, document, where))

    def replace_broker() -> str | None:
        """The embedded redis-server died: start another and go on (an external one: stop)."""
        if measuring.embedded is None:
            return None
        # Same port and password: the worker and client connections that retry reconnect.
        measuring.embedded.restart()
        print("membench run: the embedded redis-server died; restarted it", file=sys.stderr)
        return measuring.url

    with measuring:
        url = measuring.start_broker()
        # From here on, an orphan of any process this run starts becomes our child: what
        # escapes a worker's process group or session is found, killed and reported.
        adopter = Adopter()
        for number, (label, config) in enumerate(plans, 1):
            if label:
                print(f"membench: [{number}/{len(plans)}] {label}", file=sys.stderr)
            results: list[ScenarioResult] = []
            started_at = time.time()
            progress = Progress(len(config.scenarios), config.runs, warmup=config.warmup)
            try:
                Runner(config, url, progress, replace_broker, adopter).run(results)
            except BrokerLost as exc:
                write(label, config, results, started_at, finished=False)
                print(f"membench run: error: stopped: {redact(str(exc))}", file=sys.stderr)
                return EXIT_FAILED_RUNS
            except BaseException:
                write(label, config, results, started_at, finished=False)
                raise
            write(label, config, results, started_at, finished=True)
        measuring.complete = True
    if len(plans) > 1:
        summary = MatrixSummary(
            complete=measuring.complete,
            command=command_line(),
            combinations=[
                Combination(
                    label=label,
                    results=str((where / RESULTS_FILE).relative_to(output)),
                    scenarios=[
                        CombinationScenario(s.scenario, s.approach, s.summary)
                        for s in document.scenarios
                    ],
                )
                for label, document, where in done
            ],
        )
        print("\n" + format_matrix_summary(summary.combinations))
        if measuring.save(output / MATRIX_FILE, lambda path: write_results(path, summary)):
            print(f"\nWrote {output / MATRIX_FILE}")
    if not measuring.complete:
        print("membench: results are INCOMPLETE (interrupted)", file=sys.stderr)
        return EXIT_INTERRUPTED
    scenarios = [s for _, document, _ in done for s in document.scenarios]
    failed = [r for s in scenarios for r in s.runs if r.status != "ok"]
    escaped = [e for s in scenarios for e in s.escaped_processes]
    if escaped:
        print(
            f"membench: {len(escaped)} process(es) escaped their worker (killed; see "
            "escaped_processes in results.json): the runs' memory does not include them",
            file=sys.stderr,
        )
        return EXIT_FAILED_RUNS
    if failed:
        print(f"membench: {len(failed)} run(s) failed", file=sys.stderr)
        return EXIT_FAILED_RUNS
    if measuring.unwritten:
        return EXIT_FAILED_RUNS
    return EXIT_OK


class ConcurrencyList(click.ParamType[int | str]):
    """N, as the seed's int; with --app also N,N2,... (kept as text for membench.run.app.spec)."""

    name = "N[,N2...]"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> int | str:
        if "," in str(value):
            return str(value)
        return click.IntRange(1, MAX_CONCURRENCY).convert(value, param, ctx)


# The seed benchmark's flags and defaults, to the letter: (flag, parameter, type, default, help).
# MB is the seed's unit and the table's: 2^20 bytes (MiB), said so in help and table footers.
SEED_FLAGS: tuple[tuple[str, str, Any, Any, str], ...] = (
    ("--subtasks", "subtasks", click.IntRange(1, MAX_SUBTASKS), 10, "subtasks per task"),
    (
        "--size",
        "size_mb",
        click.FloatRange(0, MAX_SIZE_MB, min_open=True),
        20.0,
        "MB (2^20 bytes) of data each subtask builds",
    ),
    (
        "--time",
        "hold_s",
        click.FloatRange(0, MAX_HOLD_S),
        0.5,
        "seconds each subtask holds its data",
    ),
    ("--workers", "workers", click.IntRange(1, MAX_WORKERS), 4, "threads/greenlets in the task"),
    (
        "--concurrency",
        "concurrency",
        ConcurrencyList(),
        1,
        "worker processes/greenlets (with --app, a list: 1,4,8)",
    ),
    ("--runs", "runs", click.IntRange(1, 10_000), 3, "runs per scenario"),
)


def seed_flags(function: Any) -> Any:
    for flag, name, kind, default, text in reversed(SEED_FLAGS):
        function = click.option(
            flag, name, type=kind, default=default, show_default=True, help=text
        )(function)
    return function


@click.command("run")
@seed_flags
@click.option(
    "--warmup",
    type=click.IntRange(0, 10_000),
    default=0,
    show_default=True,
    help="extra runs per scenario before the measured ones, not counted",
)
@click.option(
    "--scenarios",
    default=",".join(SEED_SCENARIOS),
    show_default="the seed's four",
    help=f"comma list of scenarios or `all` ({', '.join(SCENARIOS)})",
)
@click.option(
    "--payload",
    default="bytes",
    show_default=True,
    help="bytes: one buffer per subtask; records: ~1 KiB str objects; dicts: JSON-like nested "
    "dicts; numpy: the seed's subtask (np.random.random, sleep, np.mean, np.std); cpu-numpy, "
    "cpu-python: compute instead of sleeping, --time CPU seconds per subtask (numpy releases the "
    "GIL, Python holds it); MODULE:FUNCTION: your FUNCTION(index, size_mb, hold_s), importable "
    "from the current directory or PYTHONPATH",
)
@click.option(
    "--output", default=".", show_default=True, help="directory for results.json and the plot"
)
@broker_option("Redis URL to use instead of an embedded redis-server")
@click.option(
    "--reuse-worker",
    is_flag=True,
    help="run every run of a scenario on one long-lived worker (default: fresh per run)",
)
@click.option("--force", is_flag=True, help="run even if the live data exceeds 80% of MemAvailable")
@worker_option_group
@click.option(
    "--malloc-trim",
    is_flag=True,
    help="after each run, have the worker gc and malloc_trim(0) (jemalloc: purge), then "
    "measure what it still holds",
)
@click.option(
    "--targets-dir",
    metavar="DIR",
    help="write the workers' Prometheus file_sd targets here (to watch a run live); each "
    "run then waits up to 30 s for Prometheus to scrape the worker before going on",
)
@click.option(
    "--sizing",
    type=click.IntRange(1, MAX_CONCURRENCY),
    metavar="N",
    help="state, per approach, the memory a worker needs at --concurrency N and a "
    "--max-memory-per-child that does not recycle after every task [default: --concurrency]",
)
@click.option(
    "--matrix",
    cls=GreedyOption,
    multiple=True,
    metavar="AXIS=V1,V2 ...",
    help="run every combination, e.g. malloc=glibc,arena2,jemalloc payload=bytes,records; "
    "axes: malloc, payload, workers, size, subtasks, time, concurrency",
)
@app_options
def command(**options: Any) -> int:
    """Run each scenario on a fresh Celery worker and compare memory and time; with --app, your
    own task under each pool."""
    return cmd_run(SimpleNamespace(**options))
