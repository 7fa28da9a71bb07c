"""The `membench` command: `run` the benchmark, start one scenario's `worker`.

Heavy imports (celery, matplotlib) happen inside commands, so `membench worker` execs fast and
bad input is refused before anything starts.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

from membench import loadgen
from membench.procfs import read_meminfo
from membench.workers.scenarios import SCENARIOS, SEED_SCENARIOS

EXIT_OK, EXIT_FAILED_RUNS, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
FIELD_FLAGS = {
    "subtasks": "--subtasks",
    "size_mb": "--size",
    "hold_s": "--time",
    "workers": "--workers",
    "payload": "--payload",
}


class UsageError(Exception):
    """Bad input: reported as one line, exit code 2, before any process starts."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not argparse's usage block: the message names the flag.
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _positive_int(flag: str, value: int, high: int = 1_000_000) -> int:
    if not 1 <= value <= high:
        raise UsageError(f"{flag}: must be between 1 and {high}, got {value}")
    return value


def _writable_dir(flag: str, path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".membench-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"{flag}: cannot write to {path}: {exc.strerror or exc}") from None
    return path


def _broker_url(args: argparse.Namespace) -> str | None:
    return args.broker or os.environ.get("MEMBENCH_BROKER_URL") or None


def _check_broker(url: str) -> None:
    from membench.broker import BrokerError, check_broker

    try:
        check_broker(url)
    except BrokerError as exc:
        raise UsageError(f"--broker: {exc}") from None


# ---- worker options (run and worker) ------------------------------------------------------------


def _worker_options(args: argparse.Namespace, scenarios: list[Any]) -> Any:
    from membench.run.worker import WorkerOptions

    for flag, value in (
        ("--max-tasks-per-child", args.max_tasks_per_child),
        ("--max-memory-per-child", args.max_memory_per_child),
    ):
        if value is None:
            continue
        _positive_int(flag, value, 1_000_000_000)
        if not any(s.pool == "prefork" for s in scenarios):
            raise UsageError(f"{flag}: recycles prefork children; no prefork scenario selected")
    _malloc_env(args.malloc)
    return WorkerOptions(args.malloc, args.max_tasks_per_child, args.max_memory_per_child)


def _malloc_env(name: str) -> dict[str, str]:
    from membench.workers.allocator import AllocatorUnavailable, allocator_env

    try:
        return allocator_env(name)
    except AllocatorUnavailable as exc:
        raise UsageError(f"--malloc: {exc}") from None


def _add_worker_options(parser: argparse.ArgumentParser) -> None:
    from membench.workers.allocator import ALLOCATORS

    parser.add_argument(
        "--malloc",
        default="glibc",
        choices=ALLOCATORS,
        help="the worker's allocator: glibc; arena2 (MALLOC_ARENA_MAX=2); jemalloc (LD_PRELOAD "
        "of libjemalloc.so.2); applied to the worker process only (default: glibc)",
    )
    parser.add_argument(
        "--max-tasks-per-child",
        type=int,
        help="prefork: replace a child after this many tasks (celery's flag)",
    )
    parser.add_argument(
        "--max-memory-per-child",
        type=int,
        metavar="KIB",
        help="prefork: replace a child after a task leaves it above this resident KiB",
    )


# ---- membench run -------------------------------------------------------------------------------


def _run_config(args: argparse.Namespace) -> Any:
    from membench.run.runner import RunConfig
    from membench.workers.params import InvalidParameter
    from membench.workers.scenarios import parse_scenarios

    try:
        scenarios = parse_scenarios(args.scenarios)
    except ValueError as exc:
        raise UsageError(f"--scenarios: {exc}") from None
    if not 0 <= args.warmup <= 10_000:
        raise UsageError(f"--warmup: must be between 0 and 10000, got {args.warmup}")
    config = RunConfig(
        scenarios=scenarios,
        subtasks=args.subtasks,
        size_mb=args.size,
        hold_s=args.time,
        workers=args.workers,
        concurrency=_positive_int("--concurrency", args.concurrency, 256),
        runs=_positive_int("--runs", args.runs, 10_000),
        payload=args.payload,
        reuse_worker=args.reuse_worker,
        warmup=args.warmup,
        options=_worker_options(args, scenarios),
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
            f"--size/--workers: the run would hold {held / 2**20:.0f} MB of live data at once, "
            f"over 80% of the {available / 2**20:.0f} MB available (use --force to run anyway)"
        )
    return config


class _Progress:
    """Which scenario and run is going, and how far: one live line on a terminal, else a log."""

    def __init__(
        self, total_scenarios: int, runs: int, stream: Any = sys.stderr, warmup: int = 0
    ) -> None:
        self.total = total_scenarios
        self.runs = runs
        self.warmup = warmup
        self.stream = stream
        self.tty = stream.isatty()

    def _run(self, run: int, warmup: bool) -> str:
        return f"warmup {run}/{self.warmup}" if warmup else f"run {run}/{self.runs}"

    def __call__(self, event: str, data: dict[str, Any]) -> None:
        if event == "run-start":
            self._line(
                f"[{data['index'] + 1}/{self.total}] {data['scenario']} "
                f"{self._run(data['run'], data.get('warmup', False))}: starting worker",
                final=not self.tty,
            )
        elif event == "tick" and self.tty:
            expected = f" of ~{data['expected']:.1f}" if data["expected"] else ""
            self._line(
                f"    {data['scenario']} {self._run(data['run'], data.get('warmup', False))}: "
                f"{data['elapsed']:.1f} s{expected} s, tree RSS {data['rss'] / 2**20:.0f} MB"
            )
        elif event == "run-end":
            r = data["result"]
            if r.status == "ok":
                text = (
                    f"    {r.scenario} {self._run(r.run, r.warmup)}: ok, {r.duration_s:.2f} s, "
                    f"peak {r.peak_rss_bytes / 2**20:.1f} MB"
                )
            else:
                text = f"    {r.scenario} {self._run(r.run, r.warmup)}: FAILED: {r.reason}"
            if r.scraped_by_prometheus is False:
                from membench.run.runner import PROMETHEUS_SCRAPE_WAIT_S

                text += (
                    "; WARNING: no Prometheus scraped the worker within "
                    f"{PROMETHEUS_SCRAPE_WAIT_S:.0f} s, its figures of this run are not in it"
                )
            self._line(text, final=True)

    def _line(self, text: str, final: bool = False) -> None:
        if self.tty:
            self.stream.write("\r\x1b[2K" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


def _raise_interrupted(signum: int, frame: Any) -> None:
    from membench.run.runner import Interrupted

    raise Interrupted(signal.Signals(signum).name)


def _run_plans(args: argparse.Namespace) -> list[tuple[str, Any]]:
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
        overridden = argparse.Namespace(**vars(args))
        for axis, value in combination.items():
            setattr(overridden, MATRIX_FLAGS[axis].dest, value)
        label = " ".join(f"{axis}={value}" for axis, value in combination.items())
        try:
            plans.append((label, _run_config(overridden)))
        except UsageError as exc:
            raise UsageError(f"--matrix {label}: {exc}") from None
    return plans


def cmd_run(args: argparse.Namespace) -> int:
    plans = _run_plans(args)
    broker = _broker_url(args)
    if broker:
        _check_broker(broker)
    if args.targets_dir:
        _writable_dir("--targets-dir", Path(args.targets_dir))
    # Last of the checks: it creates the directory, which must not happen for refused input.
    output = _writable_dir("--output", Path(args.output))

    from membench.broker import EmbeddedRedis, redact
    from membench.run.matrix import combination_dir
    from membench.run.report import (
        MATRIX_FILE,
        PLOT_FILE,
        RESULTS_FILE,
        command_line,
        format_matrix_summary,
        format_table,
        plot_results,
        results_document,
        write_json_atomic,
    )
    from membench.run.runner import Interrupted, Runner, ScenarioResult

    signal.signal(signal.SIGTERM, _raise_interrupted)
    done: list[tuple[str, dict[str, Any], Path]] = []
    embedded: EmbeddedRedis | None = None
    complete = False

    def write(label: str, config: Any, results: list[ScenarioResult], started_at: float) -> None:
        where = combination_dir(output, label)
        where.mkdir(parents=True, exist_ok=True)
        document = results_document(
            config,
            results,
            broker="embedded" if embedded else redact(broker or ""),
            command=command_line(),
            started_at=started_at,
            complete=complete,
        )
        write_json_atomic(where / RESULTS_FILE, document)
        plot_results(document, where / PLOT_FILE)
        if label:
            print(f"\n{label}")
        print(format_table(results, config.runs, config.warmup))
        print(f"\nWrote {where / RESULTS_FILE} and {where / PLOT_FILE}")
        done.append((label, document, where))

    try:
        if broker is None:
            embedded = EmbeddedRedis()
            broker = embedded.start()
            print(f"membench: embedded redis-server at {broker}", file=sys.stderr)
        for number, (label, config) in enumerate(plans, 1):
            if label:
                print(f"membench: [{number}/{len(plans)}] {label}", file=sys.stderr)
            results: list[ScenarioResult] = []
            started_at = time.time()
            progress = _Progress(len(config.scenarios), config.runs, warmup=config.warmup)
            try:
                Runner(config, broker, progress).run(results)
            except BaseException:
                write(label, config, results, started_at)
                raise
            if number == len(plans):
                complete = True
            write(label, config, results, started_at)
    except (KeyboardInterrupt, Interrupted) as exc:
        print(
            f"\nmembench: interrupted ({str(exc) or 'SIGINT'}); stopped every process",
            file=sys.stderr,
        )
    finally:
        if embedded is not None:
            embedded.stop()
    if len(plans) > 1:
        summary = {"complete": complete, "command": command_line(), "combinations": []}
        for label, document, where in done:
            entry = {"label": label, "results": str((where / RESULTS_FILE).relative_to(output))}
            figures = [
                {k: scenario[k] for k in ("scenario", "approach", "summary")}
                for scenario in document["scenarios"]
            ]
            summary["combinations"].append(entry | {"scenarios": figures})
        write_json_atomic(output / MATRIX_FILE, summary)
        print("\n" + format_matrix_summary(summary["combinations"]))
        print(f"\nWrote {output / MATRIX_FILE}")
    if not complete:
        print("membench: results are INCOMPLETE (interrupted)", file=sys.stderr)
        return EXIT_INTERRUPTED
    failed = [
        r for _, doc, _ in done for s in doc["scenarios"] for r in s["runs"] if r["status"] != "ok"
    ]
    if failed:
        print(f"membench: {len(failed)} run(s) failed", file=sys.stderr)
        return EXIT_FAILED_RUNS
    return EXIT_OK


# ---- membench worker ----------------------------------------------------------------------------


def cmd_worker(args: argparse.Namespace) -> int:
    """Validate, then exec `celery worker` with the scenario's pool (same pid: signals reach it)."""
    from membench.processes import port_in_use
    from membench.run.worker import (
        celery_worker_argv,
        expected_exporters,
        worker_environment,
    )
    from membench.workers.scenarios import SCENARIOS

    scenario = SCENARIOS.get(args.scenario)
    if scenario is None:
        raise UsageError(
            f"SCENARIO: unknown scenario {args.scenario!r} (choose from {', '.join(SCENARIOS)})"
        )
    concurrency = _positive_int("--concurrency", args.concurrency, 256)
    if not 0 <= args.metrics_port <= 65535 - concurrency - 1:
        raise UsageError(f"--metrics-port: must be between 0 and 65535, got {args.metrics_port}")
    if args.metrics_port:
        for port in range(
            args.metrics_port, args.metrics_port + expected_exporters(scenario, concurrency)
        ):
            if port_in_use(args.metrics_host, port):
                raise UsageError(f"--metrics-port: port {port} on {args.metrics_host} is in use")
    targets = os.environ.get("MEMBENCH_TARGETS_DIR")
    if targets and Path(targets).exists() and not Path(targets).is_dir():
        raise UsageError(f"MEMBENCH_TARGETS_DIR: {targets} is not a directory")
    options = _worker_options(args, [scenario])
    broker = _broker_url(args)
    if broker and args.check_broker:
        _check_broker(broker)

    env = dict(os.environ)
    env.update(worker_environment(scenario, args.metrics_host, args.metrics_port, options))
    if broker:
        env["MEMBENCH_BROKER_URL"] = broker
    argv = celery_worker_argv(
        scenario,
        concurrency,
        args.queue or f"membench.{scenario.name}",
        args.hostname or f"membench-{scenario.name}@%h",
        args.loglevel,
        options,
    )
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(argv[0], argv, env)


# ---- membench stack ----------------------------------------------------------------------------


def cmd_stack(args: argparse.Namespace) -> int:
    from membench.stack import supervisor as stack
    from membench.workers.scenarios import parse_scenarios

    directory = Path(args.dir).resolve()
    try:
        if args.action == "down":
            return stack.stack_down(directory)
        try:
            scenarios = [s.name for s in parse_scenarios(args.scenarios)]
        except ValueError as exc:
            raise UsageError(f"--scenarios: {exc}") from None
        schedule = Path(args.schedule)
        if not schedule.is_file():
            raise UsageError(f"--schedule: {schedule} is not a file")
        if args.duration is not None and not args.duration > 0:
            raise UsageError(f"--duration: must be > 0, got {args.duration}")
        _writable_dir("--dir", directory)
        if (directory / stack.STATE_FILE).exists():
            raise UsageError(
                f"--dir: a stack is already recorded in {directory} (`membench stack down` first)"
            )
        broker = _broker_url(args)
        if broker:
            _check_broker(broker)
        return stack.run_stack(directory, broker, schedule, scenarios, args.duration)
    except stack.StackError as exc:
        print(f"membench stack: error: {exc}", file=sys.stderr)
        return EXIT_FAILED_RUNS


# ---- parser -------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="membench", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = commands.add_parser(
        "run",
        help="run the scenarios and print the memory/time table",
        description="Run each scenario on a fresh Celery worker and compare memory and time.",
    )
    run.add_argument("--subtasks", type=int, default=10, help="subtasks per task (default: 10)")
    run.add_argument(
        "--size", type=float, default=20.0, help="MB of data each subtask builds (default: 20.0)"
    )
    run.add_argument(
        "--time", type=float, default=0.5, help="seconds each subtask holds its data (default: 0.5)"
    )
    run.add_argument(
        "--workers", type=int, default=4, help="threads/greenlets inside the task (default: 4)"
    )
    run.add_argument(
        "--concurrency", type=int, default=1, help="worker processes/greenlets (default: 1)"
    )
    run.add_argument("--runs", type=int, default=3, help="runs per scenario (default: 3)")
    run.add_argument(
        "--warmup",
        type=int,
        default=0,
        help="extra runs per scenario before the measured ones, not counted (default: 0)",
    )
    run.add_argument(
        "--scenarios",
        default=",".join(SEED_SCENARIOS),
        help=f"comma list of scenarios or `all` (default: the seed's four; all: "
        f"{', '.join(SCENARIOS)})",
    )
    run.add_argument(
        "--payload",
        default="bytes",
        help="bytes: one buffer per subtask; records: ~1 KB str objects; dicts: JSON-like "
        "nested dicts (default: bytes)",
    )
    run.add_argument("--output", default=".", help="directory for results.json and the plot")
    run.add_argument("--broker", help="Redis URL to use instead of an embedded redis-server")
    run.add_argument(
        "--reuse-worker",
        action="store_true",
        help="run every run of a scenario on one long-lived worker (default: fresh per run)",
    )
    run.add_argument(
        "--force", action="store_true", help="run even if the data exceeds 80%% of MemAvailable"
    )
    _add_worker_options(run)
    run.add_argument(
        "--malloc-trim",
        action="store_true",
        help="after each run, have the worker gc and malloc_trim(0) (jemalloc: purge), then "
        "measure what it still holds",
    )
    run.add_argument(
        "--targets-dir",
        metavar="DIR",
        help="write the workers' Prometheus file_sd targets here (to watch a run live); each "
        "run then waits up to 30 s for Prometheus to scrape the worker before going on",
    )
    run.add_argument(
        "--matrix",
        nargs="+",
        metavar="AXIS=V1,V2",
        help="run every combination, e.g. malloc=glibc,arena2,jemalloc payload=bytes,records; "
        "axes: malloc, payload, workers, size, subtasks, time, concurrency",
    )
    run.set_defaults(handler=cmd_run)

    worker = commands.add_parser(
        "worker",
        help="start one scenario's Celery worker with an exporter in every process",
        description="Start one scenario's Celery worker; every process serves /metrics.",
    )
    worker.add_argument("scenario", metavar="SCENARIO")
    worker.add_argument("--concurrency", type=int, default=1)
    worker.add_argument("--broker", help="Redis URL (default: $MEMBENCH_BROKER_URL)")
    worker.add_argument(
        "--metrics-port",
        type=int,
        default=int(os.environ.get("MEMBENCH_METRICS_PORT", "0")),
        help="main process port; prefork child i uses port+1+i; 0 = any free port (default: 0)",
    )
    worker.add_argument(
        "--metrics-host",
        default=os.environ.get("MEMBENCH_METRICS_HOST", "127.0.0.1"),
        help="address the exporters bind (default: 127.0.0.1)",
    )
    worker.add_argument("--queue", help="queue to consume (default: membench.SCENARIO)")
    worker.add_argument("--hostname", help="celery node name (default: membench-SCENARIO@%%h)")
    worker.add_argument("--loglevel", default="INFO")
    _add_worker_options(worker)
    worker.add_argument(
        "--no-check-broker",
        dest="check_broker",
        action="store_false",
        help="start even if the broker does not answer yet (celery retries)",
    )
    worker.set_defaults(handler=cmd_worker)

    from membench.loadgen import scheduler
    from membench.run import compare

    scheduler.add_parser(commands)
    compare.add_parser(commands)

    stack = commands.add_parser(
        "stack",
        help="run the compose stack's services as local processes (no Docker needed)",
        description="Start redis, a worker per scenario, loadgen, Flower, Prometheus and Grafana "
        "(when installed) on 127.0.0.1; Ctrl-C or `membench stack down` stops them all.",
    )
    stack.add_argument("action", choices=("up", "down"))
    stack.add_argument("--dir", default=".membench/stack", help="state and logs directory")
    stack.add_argument("--broker", help="Redis URL instead of an embedded redis-server")
    stack.add_argument(
        "--schedule",
        default=str(Path(loadgen.__file__).with_name("schedule.example.toml")),
        help="loadgen schedule file (default: the example schedule)",
    )
    stack.add_argument(
        "--scenarios",
        default=",".join(SEED_SCENARIOS),
        help="workers to start (default: the seed's four)",
    )
    stack.add_argument("--duration", type=float, help="stop after this many seconds")
    stack.set_defaults(handler=cmd_stack)

    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except UsageError as exc:
        print(f"membench {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def entry_point() -> None:
    sys.exit(main())
