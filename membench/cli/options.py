"""What the commands share: the one-line usage error, exit codes, and options used by several.

Every check here runs before any process starts; a failure is one line naming the flag, exit 2.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from membench import settings
from membench.durations import parse_seconds
from membench.files import not_a_directory
from membench.workers.allocator import ALLOCATORS

if TYPE_CHECKING:
    from membench.query.client import Prometheus, Query
    from membench.query.timerange import Window
    from membench.run.worker import WorkerOptions

EXIT_OK, EXIT_FAILED_RUNS, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
# Task parameter -> the `membench run` flag that sets it, to name the flag in errors.
FIELD_FLAGS = {
    "subtasks": "--subtasks",
    "size_mb": "--size",
    "hold_s": "--time",
    "workers": "--workers",
    "payload": "--payload",
}
MAX_CONCURRENCY = 256
# The largest --max-tasks-per-child / --max-memory-per-child.
MAX_RECYCLE = 1_000_000_000
# The longest --duration a command takes (a year): a longer one is a typo, or "for ever", which
# is what leaving --duration out already says.
MAX_DURATION_S = 366 * 24 * 3600.0


class UsageError(click.UsageError):
    """Bad input: reported as one line naming the flag, exit code 2, before any process starts."""

    def __init__(self, message: str) -> None:
        super().__init__(message, click.get_current_context(silent=True))


def refuse_blank_and_infinite(command: click.Command) -> None:
    """Give every option and argument of `command` (and of its subcommands) the checks no
    value of any of them may skip: a blank string (`--output ""` would write into the current
    directory, `--queue ""` silently became the default) and a number that is not finite
    (`--duration inf` ran for ever; NaN passes every range) are refused in one line naming
    the flag. Set once on the whole tree so that an option added later has them too."""
    for param in command.params:
        param.callback = _checked(param.callback)
    for sub in getattr(command, "commands", {}).values():
        refuse_blank_and_infinite(sub)


def read_environment(group: click.Group) -> None:
    """Let every option of every command read an environment variable, shown in --help: its
    own where settings names one (--broker: MEMBENCH_BROKER_URL, then CELERY_BROKER_URL), else
    MEMBENCH_<COMMAND>_<OPTION>, the option's long flag in capitals (`run --subtasks`:
    MEMBENCH_RUN_SUBTASKS). The command is part of the name because the same flag means
    different things in different commands (`--output`: a directory for `run`, a PNG for
    `plot`; `--metrics-port`: a worker's or the load generator's). click's own
    auto_envvar_prefix would name the variable after the Python parameter instead of the
    flag (MEMBENCH_RUN_SIZE_MB for --size), so the names are set here, once, for the tree."""
    for command in group.commands.values():
        for param in command.params:
            if not isinstance(param, click.Option):
                continue
            if param.envvar is None:
                flag = max((o for o in param.opts if o.startswith("--")), key=len)
                words = [settings.OPTION_PREFIX, command.name or "", flag[2:]]
                param.envvar = "_".join(words).upper().replace("-", "_")
            param.show_envvar = True


def _checked(callback: Callable[..., Any] | None) -> Callable[..., Any]:
    def check(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        for each in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(each, (str, Path)) and not str(each).strip():
                raise click.BadParameter("must not be empty", ctx, param)
            # Before any range: click's FloatRange lets NaN through (every comparison is false).
            if isinstance(each, float) and not math.isfinite(each):
                raise click.BadParameter(f"must be a finite number, got {each}", ctx, param)
        return callback(ctx, param, value) if callback is not None else value

    return check


class Duration(click.ParamType[float]):
    """Seconds (`90`) or a Prometheus duration (`30m`, `1h30m`), read by membench.durations; above
    0 and at most MAX_DURATION_S."""

    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        try:
            seconds = parse_seconds(str(value), zero=False)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if seconds > MAX_DURATION_S:
            self.fail(
                f"must be at most {MAX_DURATION_S / 86400:.0f} days, got {value!r}", param, ctx
            )
        return seconds


def duration_option(help_text: str) -> Callable[[Any], Any]:
    """--duration D: seconds or a Prometheus duration, above 0 and at most MAX_DURATION_S."""
    return click.option("--duration", type=Duration(), metavar="DURATION", help=help_text)


def positive_int(flag: str, value: int, high: int = 1_000_000) -> int:
    if not 1 <= value <= high:
        raise UsageError(f"{flag}: must be between 1 and {high}, got {value}")
    return value


def writable_dir(flag: str, path: Path) -> Path:
    """Create `path` if needed and prove it writable (a probe file, removed at once); what is
    in the way (a file, a device such as /dev/full) is named as the reason."""
    reason = not_a_directory(path)
    if reason is not None:
        raise UsageError(f"{flag}: {reason}")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".membench-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"{flag}: cannot write to {path}: {exc.strerror or exc}") from None
    return path


def check_broker(url: str, *, connect: bool = True) -> None:
    """The broker URL is usable (and, with `connect`, answers PING); else one line naming it."""
    from membench.broker import BrokerError, check_broker_url, redact
    from membench.broker import check_broker as answer

    try:
        answer(url) if connect else check_broker_url(url)
    except BrokerError as exc:
        where = source_of("broker", "--broker")
        if _unset("broker"):
            where += f" (not given: the default, {settings.DEFAULT_BROKER_URL})"
        raise UsageError(f"{where}: {redact(str(exc))}") from None


def _unset(parameter: str) -> bool:
    ctx = click.get_current_context(silent=True)
    return ctx is not None and ctx.get_parameter_source(parameter) is ParameterSource.DEFAULT


def source_of(parameter: str, flag: str, ctx: click.Context | None = None) -> str:
    """What to name in an error: the flag, or the environment variable the value came from."""
    ctx = ctx or click.get_current_context(silent=True)
    if ctx is None or ctx.get_parameter_source(parameter) is not ParameterSource.ENVIRONMENT:
        return flag
    option = next(p for p in ctx.command.params if p.name == parameter)
    names = [option.envvar] if isinstance(option.envvar, str) else list(option.envvar or [])
    # click reads the first of them that is set and not empty, as settings does.
    return next((name for name in names if os.environ.get(name)), flag)


def name_the_source(ctx: click.Context | None, message: str) -> str:
    """`message` ("--flag: ...") led by the environment variable instead, when the flag's value
    came from one: that is what the user has to fix."""
    flag, colon, rest = message.partition(": ")
    if ctx is None or not colon or not flag.startswith("--"):
        return message
    for param in ctx.command.params:
        if isinstance(param, click.Option) and flag in param.opts and param.name:
            return f"{source_of(param.name, flag, ctx)}: {rest}"
    return message


def check_metrics_host(host: str) -> None:
    """--metrics-host must be an address of this machine (0.0.0.0 and :: included)."""
    from membench.processes import bind_error

    error = bind_error(host)
    if error is not None:
        reason = error.strerror or str(error)
        raise UsageError(f"--metrics-host: cannot listen on {host!r}: {reason}")


def check_targets_dir() -> Path | None:
    """MEMBENCH_TARGETS_DIR, refused when it names something that is not a directory."""
    targets = settings.targets_dir()
    if targets is not None and targets.exists() and not targets.is_dir():
        raise UsageError(f"{settings.TARGETS_DIR}: {targets} is not a directory")
    return targets


def malloc_env(name: str) -> dict[str, str]:
    from membench.workers.allocator import AllocatorUnavailable, allocator_env

    try:
        return allocator_env(name)
    except AllocatorUnavailable as exc:
        raise UsageError(f"--malloc: {exc}") from None


def worker_options(
    malloc: str, max_tasks: int | None, max_memory: int | None, pools: set[str]
) -> WorkerOptions:
    """The worker settings of `run` and `worker`, checked against the pools they would apply to."""
    from membench.run.worker import WorkerOptions

    for flag, value in (
        ("--max-tasks-per-child", max_tasks),
        ("--max-memory-per-child", max_memory),
    ):
        if value is None:
            continue
        positive_int(flag, value, MAX_RECYCLE)
        if "prefork" not in pools:
            raise UsageError(f"{flag}: recycles prefork children; no prefork scenario selected")
    malloc_env(malloc)
    return WorkerOptions(malloc, max_tasks, max_memory)


def broker_option(help_text: str) -> Callable[[Any], Any]:
    return click.option(
        "--broker", envvar=list(settings.BROKER_URL_VARIABLES), show_envvar=True, help=help_text
    )


def worker_option_group(function: Any) -> Any:
    """--malloc, --max-tasks-per-child, --max-memory-per-child: shared by `run` and `worker`."""
    decorators = [
        click.option(
            "--malloc",
            type=click.Choice(ALLOCATORS),
            default="glibc",
            show_default=True,
            help="the worker's allocator: glibc; arena2 (MALLOC_ARENA_MAX=2); jemalloc "
            "(LD_PRELOAD of libjemalloc.so.2); applied to the worker process only",
        ),
        click.option(
            "--max-tasks-per-child",
            type=click.IntRange(1, MAX_RECYCLE),
            help="prefork: replace a child after this many tasks (celery's flag)",
        ),
        click.option(
            "--max-memory-per-child",
            type=click.IntRange(1, MAX_RECYCLE),
            metavar="KIB",
            help="prefork: replace a child after a task leaves it above this resident KiB "
            "(KiB: 1024 bytes, celery's unit)",
        ),
    ]
    for decorator in reversed(decorators):
        function = decorator(function)
    return function


class GreedyOption(click.Option):
    """An option that takes every following word up to the next option, like argparse's
    `nargs="+"`: `--matrix malloc=glibc,arena2 payload=bytes` (the seed-era spelling)."""

    def add_to_parser(self, parser: Any, ctx: click.Context) -> None:
        super().add_to_parser(parser, ctx)
        for name in self.opts:
            option = parser._long_opt.get(name)
            if option is None:
                continue
            take_one = option.process

            def take_all(value: Any, state: Any, take_one: Any = take_one) -> None:
                values = [value]
                while state.rargs and not state.rargs[0].startswith("-"):
                    values.append(state.rargs.pop(0))
                for each in values:
                    take_one(each, state)

            option.process = take_all


def prometheus_window(url: str, last: str | None, start: str | None, end: str | None) -> Window:
    """The time range of a --prometheus command (query.timerange.Window), once the URL and the
    range flags are checked: a bad one is a UsageError naming its flag."""
    from membench.query.client import check_url
    from membench.query.timerange import RangeError, resolve_range

    try:
        check_url(url)
    except ValueError as exc:
        raise UsageError(f"--prometheus: {exc}") from None
    try:
        return resolve_range(last, start, end, time.time())
    except RangeError as exc:
        raise UsageError(str(exc)) from None


def reachable_prometheus(url: str, on_query: Callable[[Query], None] | None = None) -> Prometheus:
    """A query.client.Prometheus for `url` that answered; one that does not is a UsageError."""
    from membench.query.client import Prometheus, PrometheusError

    client = Prometheus(url, on_query=on_query)
    try:
        client.check()
    except PrometheusError as exc:
        raise UsageError(f"--prometheus: {exc}") from None
    return client
