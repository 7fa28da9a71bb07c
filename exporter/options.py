"""What the instrument is told: `instrument()`'s arguments and the worker options Celery's command
line adds for it (`--membench-port`, `--membench-host`, `--membench-mode`), checked before any
worker starts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import click

from membench import settings
from membench.exporter import names

# Why this port: membench/settings.py. Children use the next ports.
DEFAULT_PORT = settings.DEFAULT_METRICS_PORT
PER_PROCESS = "per-process"
ONE_PORT = "one-port"
MODES = (PER_PROCESS, ONE_PORT)
DEFAULT_MAX_TASK_NAMES = 100


@dataclass(frozen=True, slots=True)
class InstrumentOptions:
    """What `instrument()` was given; worker options and their variables take precedence."""

    port: int | None = None
    host: str | None = None
    mode: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    max_task_names: int = DEFAULT_MAX_TASK_NAMES


def check_arguments(
    port: object, mode: object, labels: Mapping[str, str] | None, max_task_names: object
) -> None:
    if port is not None and (isinstance(port, bool) or not isinstance(port, int)):
        raise ValueError(f"instrument(port=...): must be an integer, got {port!r}")
    if port is not None and not 0 <= port <= 65535:
        raise ValueError(f"instrument(port=...): must be between 0 and 65535, got {port}")
    if mode is not None and mode not in MODES:
        raise ValueError(f"instrument(mode=...): must be one of {', '.join(MODES)}, got {mode!r}")
    if isinstance(max_task_names, bool) or not isinstance(max_task_names, int):
        raise ValueError(
            f"instrument(max_task_names=...): must be an integer, got {max_task_names!r}"
        )
    if max_task_names < 1:
        raise ValueError(
            f"instrument(max_task_names=...): must be at least 1, got {max_task_names}"
        )
    reserved = {*names.PROCESS_LABELS, names.TASK_LABEL, names.OUTCOME_LABEL, names.REASON_LABEL}
    for key, value in (labels or {}).items():
        if key in reserved or not key.isidentifier() or not isinstance(value, str):
            raise ValueError(f"instrument(labels=...): {key!r} cannot be a label of its own")


def worker_click_options() -> list[click.Option]:
    return [
        click.Option(
            ["--membench-port"],
            type=click.IntRange(0, 65535),
            envvar=settings.METRICS_PORT,
            show_envvar=True,
            help=f"port of the main process's /metrics; prefork child i uses port+1+i; "
            f"0 = any free port (default: {DEFAULT_PORT})",
        ),
        click.Option(
            ["--membench-host"],
            envvar=settings.METRICS_HOST,
            show_envvar=True,
            help=f"address the exporters bind (default: {settings.DEFAULT_METRICS_HOST})",
        ),
        click.Option(
            ["--membench-mode"],
            type=click.Choice(MODES),
            envvar=settings.METRICS_MODE,
            show_envvar=True,
            help="per-process: every process serves its own port; one-port: the main process "
            f"serves its children's memory too (default: {PER_PROCESS})",
        ),
    ]
