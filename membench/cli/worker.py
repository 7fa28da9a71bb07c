"""`membench worker SCENARIO`: one scenario's Celery worker, an exporter in every process.

It validates, then execs `celery worker` with the scenario's pool: Celery's entry point applies
gevent's monkey-patching before the app is imported, and the worker keeps the pid we were given.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from membench import settings
from membench.cli.options import (
    MAX_CONCURRENCY,
    UsageError,
    broker_option,
    check_broker,
    check_metrics_host,
    check_targets_dir,
    positive_int,
    worker_option_group,
    worker_options,
)


def cmd_worker(
    scenario_name: str,
    concurrency: int,
    broker: str | None,
    metrics_port: int,
    metrics_host: str,
    queue: str | None,
    hostname: str | None,
    loglevel: str,
    malloc: str,
    max_tasks_per_child: int | None,
    max_memory_per_child: int | None,
    check: bool,
) -> int:
    from membench.processes import port_in_use
    from membench.run.worker import celery_worker_argv, expected_exporters, worker_environment
    from membench.workers.scenarios import SCENARIOS
    from membench.workers.user_payload import started_dir_environment

    scenario = SCENARIOS.get(scenario_name)
    if scenario is None:
        raise UsageError(
            f"SCENARIO: unknown scenario {scenario_name!r} (choose from {', '.join(SCENARIOS)})"
        )
    concurrency = positive_int("--concurrency", concurrency, MAX_CONCURRENCY)
    check_metrics_host(metrics_host)
    highest = 65535 - (concurrency if scenario.pool == "prefork" else 0)
    if not 0 <= metrics_port <= highest:
        children = f" (prefork children use the next {concurrency})" if highest < 65535 else ""
        raise UsageError(
            f"--metrics-port: must be between 0 and {highest}{children}, got {metrics_port}"
        )
    if metrics_port:
        for port in range(metrics_port, metrics_port + expected_exporters(scenario, concurrency)):
            if port_in_use(metrics_host, port):
                raise UsageError(f"--metrics-port: port {port} on {metrics_host} is in use")
    check_targets_dir()
    options = worker_options(malloc, max_tasks_per_child, max_memory_per_child, {scenario.pool})
    # The broker the worker will use, given or not: --check-broker (the default) asks it for a
    # PING, or a worker with nothing on the default port would retry for ever.
    check_broker(broker or settings.broker_url_or_default(), connect=check)

    env = dict(os.environ)
    env.update(worker_environment(scenario, metrics_host, metrics_port, options))
    env.update(started_dir_environment(env))  # --payload MODULE:FUNCTION imports from there
    if broker:
        env[settings.BROKER_URL] = broker
    argv = celery_worker_argv(
        scenario,
        concurrency,
        queue or f"membench.{scenario.name}",
        hostname or f"membench-{scenario.name}@%h",
        loglevel,
        options,
    )
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(argv[0], argv, env)


@click.command("worker")
@click.argument("scenario_name", metavar="SCENARIO")
@click.option(
    "--concurrency",
    type=click.IntRange(1, MAX_CONCURRENCY),
    default=1,
    show_default=True,
    help="worker processes (prefork) or greenlets/threads",
)
@broker_option("Redis URL")
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    envvar=settings.METRICS_PORT,
    show_envvar=True,
    help="main process port; prefork child i uses port+1+i; 0 = any free port (compose and "
    f"Kubernetes: {settings.DEFAULT_METRICS_PORT}, the instrument's default)",
)
@click.option(
    "--metrics-host",
    default=settings.DEFAULT_METRICS_HOST,
    envvar=settings.METRICS_HOST,
    show_envvar=True,
    show_default=True,
    help="address the exporters bind",
)
@click.option("--queue", help="queue to consume (default: membench.SCENARIO)")
@click.option("--hostname", help="celery node name (default: membench-SCENARIO@%h)")
@click.option(
    "--loglevel",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", "FATAL"], False),
    default="INFO",
    show_default=True,
)
@worker_option_group
@click.option(
    "--check-broker/--no-check-broker",
    "check",
    default=True,
    help="refuse to start while the broker does not answer (default), or let celery retry",
)
def command(**options: Any) -> int:
    """Start one scenario's Celery worker; every process serves /metrics."""
    return cmd_worker(**options)
