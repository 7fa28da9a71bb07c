"""`membench loadgen`: fire a schedule's scenarios against running workers until told to stop."""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType, SimpleNamespace
from typing import Any

import click

from membench import settings
from membench.cli.options import (
    EXIT_FAILED_RUNS,
    EXIT_OK,
    UsageError,
    broker_option,
    check_broker,
    check_metrics_host,
    check_targets_dir,
    duration_option,
    source_of,
)
from membench.loadgen.annotations import GrafanaAnnotator
from membench.loadgen.metrics import LoadgenMetrics
from membench.loadgen.schedule import ScheduleError, load_schedule
from membench.loadgen.scheduler import GRACE_S, Scheduler, format_summary
from membench.processes import catch_stop_signals, leave_hung_up_terminal, port_in_use
from membench.urls import UrlError, parse_url

log = logging.getLogger("membench.loadgen")
GRAFANA_FORM = "http://HOST[:PORT][/PREFIX] (the token goes in $MEMBENCH_GRAFANA_TOKEN)"


class _Stop(Exception):
    """SIGINT/SIGTERM/SIGHUP, raised in the main thread to leave Scheduler.wait()."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    if signum == signal.SIGHUP:
        leave_hung_up_terminal()  # the summary must not die writing to a closed terminal
    raise _Stop(signal.Signals(signum).name)


def cmd_loadgen(args: SimpleNamespace) -> int:
    """Validate, serve metrics, fire until --duration/--runs/a signal, print a summary."""
    try:
        schedule = load_schedule(args.schedule)
    except ScheduleError as exc:
        raise UsageError(f"--schedule: {exc}") from None
    plans = schedule.plans
    if args.scenarios:
        wanted = [s.strip() for s in args.scenarios.split(",") if s.strip()]
        if not wanted:
            raise UsageError(f"--scenarios: names no scenario, got {args.scenarios!r}")
        in_schedule = {p.scenario for p in plans}
        for name in wanted:
            if name not in in_schedule:
                raise UsageError(
                    f"--scenarios: {name!r} is not in {schedule.source} "
                    f"(it has {', '.join(sorted(in_schedule))})"
                )
        plans = [p for p in plans if p.scenario in wanted]
    check_metrics_host(args.metrics_host)
    if args.metrics_port and port_in_use(args.metrics_host, args.metrics_port):
        raise UsageError(
            f"--metrics-port: port {args.metrics_port} on {args.metrics_host} is in use"
        )
    targets = check_targets_dir()
    grafana_url = args.grafana_url or None
    grafana_token = settings.grafana_token()
    try:  # urllib would send a user:password to the resolver as part of the host name
        if grafana_url:
            parse_url(grafana_url, ("http", "https"), GRAFANA_FORM, credentials=False)
    except UrlError as exc:
        raise UsageError(f"{source_of('grafana_url', '--grafana-url')}: {exc}") from None

    from membench.broker import client_app, redact

    broker = args.broker or settings.DEFAULT_BROKER_URL
    check_broker(broker)

    from membench.exporter.server import start_exporter

    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    app = client_app(broker)
    annotator = None
    if grafana_url and grafana_token:
        annotator = GrafanaAnnotator(grafana_url, grafana_token)
    elif grafana_url:
        log.warning("%s is not set: no Grafana annotations", settings.GRAFANA_TOKEN)
    metrics = LoadgenMetrics(p.scenario for p in plans)
    scheduler = Scheduler(app, plans, metrics, max_runs=args.runs, annotator=annotator)
    exporter = None
    # Installed before anything starts, so a signal at any point still ends in a clean stop.
    previous = {signal.SIGINT: signal.signal(signal.SIGINT, _raise_stop)}
    previous |= catch_stop_signals(_raise_stop)
    try:
        try:
            try:
                exporter = start_exporter(
                    metrics.registry,
                    args.metrics_host,
                    args.metrics_port,
                    targets_dir=targets,
                    job="loadgen",
                    target_labels={},
                )
            except OSError as exc:
                raise UsageError(
                    f"--metrics-host: cannot serve on {args.metrics_host}:{args.metrics_port}: "
                    f"{exc.strerror or exc}"
                ) from None
            log.info(
                "firing %s from %s against %s; metrics on http://%s:%d/metrics",
                ", ".join(f"{p.scenario} every {p.period_s:g} s" for p in plans),
                schedule.source,
                redact(broker),
                args.metrics_host,
                exporter.port,
            )
            scheduler.start()
            scheduler.wait(args.duration)
        except _Stop as exc:
            log.info("%s: stopping; waiting up to %.0f s for runs in flight", exc, GRACE_S)
        # A second signal stops at once (default action) instead of waiting for the grace.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        catch_stop_signals(signal.SIG_DFL)
        scheduler.join()
    finally:
        if exporter is not None:
            exporter.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    print(format_summary(scheduler.stats), flush=True)
    if scheduler.crashed:
        print(
            f"membench loadgen: crashed while firing {', '.join(scheduler.crashed)} (see the log)",
            file=sys.stderr,
        )
        return EXIT_FAILED_RUNS
    bad = sum(s.failure + s.timeout for s in scheduler.stats.values())
    if bad:
        print(f"membench loadgen: {bad} run(s) failed or timed out", file=sys.stderr)
        return EXIT_FAILED_RUNS
    return EXIT_OK


@click.command("loadgen")
@click.option(
    "--schedule",
    required=True,
    help="schedule file (TOML, see docs/loadgen.md): a regular file of at most 1 MiB",
)
@duration_option("stop after this long: 90, 90s, 30m, 1h30m (default: until a signal)")
@click.option(
    "--runs",
    type=click.IntRange(min=1),
    help="stop once every scenario fired this many runs (default: no limit)",
)
@click.option(
    "--scenarios", help="comma list: fire only these scenarios of the schedule (default: all)"
)
@broker_option("Redis URL")
@click.option(
    "--metrics-host",
    default=settings.DEFAULT_METRICS_HOST,
    show_default=True,
    help="address /metrics binds",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=settings.DEFAULT_LOADGEN_METRICS_PORT,
    show_default=True,
    help="/metrics port; 0 = any free",
)
@click.option(
    "--grafana-url",
    envvar=settings.GRAFANA_URL,
    show_envvar=True,
    help=f"post an annotation per run to this Grafana (needs ${settings.GRAFANA_TOKEN})",
)
def command(**options: Any) -> int:
    """Fire scenarios on a TOML schedule against running `membench worker`s; export run
    metrics; Ctrl-C/SIGTERM/SIGHUP stops cleanly and prints a summary."""
    return cmd_loadgen(SimpleNamespace(**options))
