"""`membench soak`: a leak verdict a pipeline can gate on, over the local stack (its own workers,
faults on request) or, with --prometheus URL, over workers already running anywhere.

Exit 0 pass, 1 fail (or inconclusive without --allow-inconclusive), 2 bad input (one line naming
the flag, before any process starts or any query runs), 130 interrupted with what was measured
so far written.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import click

from membench.cli.options import UsageError, prometheus_window, reachable_prometheus, writable_dir

if TYPE_CHECKING:
    from membench.soak.verdict import Thresholds

LOCAL_ONLY = ("--duration", "--schedule", "--faults", "--fault-every", "--interval")
RANGE_ONLY = ("--last", "--start", "--end")


def _seconds(flag: str, text: str, zero: bool = False) -> float:
    from membench.durations import parse_seconds

    try:
        return parse_seconds(text, zero=zero)
    except ValueError as exc:
        raise UsageError(f"{flag}: {exc}") from None


def _given(ctx: click.Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


@click.command("soak")
@click.option(
    "--duration",
    metavar="DURATION",
    default="30m",
    show_default=True,
    help="soak length: 30m, 2h, ...",
)
@click.option("--schedule", metavar="FILE", help="loadgen schedule [default: a compressed one]")
@click.option("--faults", is_flag=True, help="inject a fault every --fault-every, rotating")
@click.option(
    "--fault-every",
    metavar="DURATION",
    default="10m",
    show_default=True,
    help="time between faults",
)
@click.option(
    "--interval", metavar="DURATION", default="30s", show_default=True, help="progress line every"
)
@click.option(
    "--warmup",
    metavar="DURATION",
    default="5m",
    show_default=True,
    help="samples this soon after a process starts are left out of its growth",
)
@click.option(
    "--max-growth",
    type=click.FloatRange(0, min_open=True),
    default=10.0,
    show_default=True,
    help="MB/h (MB = 2^20 bytes) a worker process may grow by",
)
@click.option(
    "--max-lost", type=click.IntRange(0), default=0, show_default=True, help="runs that may be lost"
)
@click.option("--allow-inconclusive", is_flag=True, help="exit 0 when too short to call")
@click.option(
    "--output", metavar="DIR", default="membench-soak", show_default=True, help="directory"
)
@click.option(
    "--prometheus",
    "url",
    metavar="URL",
    help="judge the workers this Prometheus scrapes instead of running a stack",
)
@click.option("--last", metavar="DURATION", help="with --prometheus: the window [default: 1h]")
@click.option("--start", metavar="TIME", help="with --prometheus: RFC3339 or unix seconds")
@click.option("--end", metavar="TIME", help="with --prometheus: [default: now]")
@click.pass_context
def command(
    ctx: click.Context,
    duration: str,
    schedule: str | None,
    faults: bool,
    fault_every: str,
    interval: str,
    warmup: str,
    max_growth: float,
    max_lost: int,
    allow_inconclusive: bool,
    output: str,
    url: str | None,
    last: str | None,
    start: str | None,
    end: str | None,
) -> int:
    """Soak Celery workers and give a verdict on their memory: growth per worker process (a
    slope with its interval), per task, runs lost, churn, OOM kills."""
    from membench.soak.verdict import Thresholds

    for flag in LOCAL_ONLY if url else RANGE_ONLY:
        if _given(ctx, flag.lstrip("-").replace("-", "_")):
            other = "only without --prometheus" if url else "only with --prometheus"
            raise UsageError(f"{flag}: {other}")
    thresholds = Thresholds(max_growth, max_lost, allow_inconclusive)
    warmup_s = _seconds("--warmup", warmup, zero=True)
    directory = Path(output)
    if url:
        return _remote(url, last, start, end, warmup_s, thresholds, directory)
    return _local(
        duration, schedule, faults, fault_every, interval, warmup_s, thresholds, directory
    )


def _remote(
    url: str,
    last: str | None,
    start: str | None,
    end: str | None,
    warmup_s: float,
    thresholds: Thresholds,
    directory: Path,
) -> int:
    from membench.soak import run_remote

    window = prometheus_window(url, last, start, end)
    client = reachable_prometheus(url)
    writable_dir("--output", directory)
    return run_remote(client, window, warmup_s, thresholds, directory)


def _local(
    duration: str,
    schedule: str | None,
    faults: bool,
    fault_every: str,
    interval: str,
    warmup_s: float,
    thresholds: Thresholds,
    directory: Path,
) -> int:
    from membench.loadgen.schedule import ScheduleError, load_schedule
    from membench.soak import run_local
    from membench.soak.local import Plan
    from membench.stack.state import recorded_stack

    duration_s = _seconds("--duration", duration)
    every_s = _seconds("--fault-every", fault_every)
    interval_s = _seconds("--interval", interval)
    if faults and duration_s < 1.5 * every_s:
        raise UsageError("--faults: --duration must cover 1.5 x --fault-every (fault + recovery)")
    schedule_path = None
    if schedule is not None:
        schedule_path = Path(schedule).resolve()
        try:
            load_schedule(schedule_path)
        except ScheduleError as exc:
            raise UsageError(f"--schedule: {exc}") from None
    if shutil.which("prometheus") is None:
        raise UsageError(
            "--prometheus: not given, and the local soak needs the `prometheus` binary on PATH "
            "(apt-get install --no-install-recommends prometheus)"
        )
    writable_dir("--output", directory)
    running = recorded_stack(directory / "stack")
    if running is not None:
        raise UsageError(
            f"--output: a stack runs from {directory / 'stack'} as pid {running['pid']}"
        )
    plan = Plan(duration_s, schedule_path, faults, every_s, interval_s, warmup_s, directory)
    return run_local(plan, thresholds)
