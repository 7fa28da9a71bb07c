"""`membench stack up|down`: the compose stack's services as local processes on 127.0.0.1."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from membench.cli.options import (
    EXIT_FAILED_RUNS,
    UsageError,
    broker_option,
    check_broker,
    duration_option,
    writable_dir,
)
from membench.loadgen.schedule import EXAMPLE_SCHEDULE
from membench.workers.scenarios import SEED_SCENARIOS


@click.command("stack")
@click.argument("action", type=click.Choice(["up", "down"]))
@click.option(
    "--dir",
    "directory",
    default=".membench/stack",
    show_default=True,
    help="state and logs directory",
)
@broker_option("Redis URL instead of an embedded redis-server")
@click.option(
    "--schedule",
    default=str(EXAMPLE_SCHEDULE),
    show_default="the example schedule",
    help="loadgen schedule file",
)
@click.option(
    "--scenarios",
    default=",".join(SEED_SCENARIOS),
    show_default="the seed's four",
    help="workers to start",
)
@duration_option("stop after this long: 90, 90s, 30m, 1h30m (default: until a signal)")
def command(
    action: str,
    directory: str,
    broker: str | None,
    schedule: str,
    scenarios: str,
    duration: float | None,
) -> int:
    """Start redis, a worker per scenario, loadgen, Flower, Prometheus and Grafana (when
    installed) on 127.0.0.1; Ctrl-C or `membench stack down` stops them all."""
    from membench.stack import state, supervisor
    from membench.workers.scenarios import parse_scenarios

    where = Path(directory).resolve()
    try:
        if action == "down":
            return state.stack_down(where)
        try:
            names = [s.name for s in parse_scenarios(scenarios)]
        except ValueError as exc:
            raise UsageError(f"--scenarios: {exc}") from None
        schedule_path = Path(schedule)
        if not schedule_path.is_file():
            raise UsageError(f"--schedule: {schedule_path} is not a file")
        writable_dir("--dir", where)
        running = state.recorded_stack(where)  # a stale file is removed, and said so
        if running is not None:
            raise UsageError(
                f"--dir: a stack runs from {where} as pid {running['pid']} "
                "(`membench stack down` first)"
            )
        if broker:
            check_broker(broker)
        return supervisor.run_stack(where, broker or None, schedule_path, names, duration)
    except state.StackError as exc:
        print(f"membench stack: error: {exc}", file=sys.stderr)
        return EXIT_FAILED_RUNS
