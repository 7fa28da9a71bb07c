"""`membench loadgen`: fire scenarios on a TOML schedule against running workers, for hours.

One thread per scenario; a firing is skipped while that scenario's previous run is in flight.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import signal
import sys
import threading
import time
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from membench.exporter import names
from membench.workers.params import BatchParams, InvalidParameter
from membench.workers.scenarios import SCENARIOS

if TYPE_CHECKING:
    from celery import Celery
    from celery.result import AsyncResult

# Celery, prometheus_client and urllib.request are imported inside functions: cli.py imports
# this module, and `membench worker` must exec fast.

log = logging.getLogger("membench.loadgen")

TASK_NAME = "membench.process_batch"
OUTCOMES = ("success", "failure", "timeout")
# `membench run`'s defaults, so a scenario table may be empty.
BUILTIN_PARAMS: dict[str, Any] = {
    "subtasks": 10,
    "size_mb": 20.0,
    "hold_s": 0.5,
    "workers": 4,
    "payload": "bytes",
}
PARAM_KEYS = ("subtasks", "size_mb", "hold_s", "workers", "payload")
TIMING_KEYS = ("period_s", "jitter_s", "deadline_s")
DEFAULTS_KEYS = (*PARAM_KEYS, "time", *TIMING_KEYS)
SCENARIO_KEYS = (*DEFAULTS_KEYS, "queue")
# Bounded so that a typo cannot overflow threading's timeouts; a week is far beyond any soak.
MAX_SECONDS = 7 * 24 * 3600.0
MAX_DURATION_S = 366 * 24 * 3600.0
GRACE_S = 5.0  # compose's stop_grace_period is 10 s: stop well within it
# Celery's result drainer waits for pubsub messages in 1 s steps whatever get()'s timeout, so
# deadlines, skips and stop requests are accounted to about a second (fine for a soak). Polling
# the result key instead would leave the pubsub socket unread and its buffer growing for hours.
POLL_S = 1.0


class ScheduleError(ValueError):
    """The schedule file is unusable; the one-line message names the file, table and key."""


# ---- schedule ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScenarioPlan:
    """What to fire for one scenario, how often, and how long to wait for its result."""

    scenario: str
    params: BatchParams
    period_s: float
    jitter_s: float = 0.0
    deadline_s: float | None = None  # None: derived from the parameters
    queue: str = ""  # "": membench.<scenario>, the queue `membench worker` consumes

    @property
    def queue_name(self) -> str:
        return self.queue or f"membench.{self.scenario}"

    @property
    def generous_deadline_s(self) -> float:
        """`membench run`'s deadline for these parameters (>= 60 s)."""
        from membench.run.runner import RunConfig

        scenario = SCENARIOS[self.scenario]
        p = self.params
        config = RunConfig([scenario], p.subtasks, p.size_mb, p.hold_s, p.workers, 1, 1, p.payload)
        return config.deadline_seconds(scenario)

    @property
    def effective_deadline_s(self) -> float:
        return self.deadline_s if self.deadline_s is not None else self.generous_deadline_s


@dataclass(frozen=True)
class Schedule:
    source: str
    plans: list[ScenarioPlan]


def load_schedule(path: str | Path) -> Schedule:
    """Read and validate a schedule file; raises ScheduleError."""
    source = str(path)
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as exc:
        raise ScheduleError(f"{source}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ScheduleError(f"{source}: not UTF-8 text: {exc.reason}") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScheduleError(f"{source}: invalid TOML: {exc}") from None
    return parse_schedule(document, source)


def _where(table: str, key: str, origin: str) -> str:
    return f"[{table}] {key}" if origin == table else f"[{table}] {key} (from [{origin}])"


def _seconds(value: Any, *, allow_zero: bool) -> float:
    """A finite number of seconds; raises ValueError with the reason."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be a number of seconds, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        raise ValueError(f"must be {'>= 0' if allow_zero else '> 0'} and finite, got {value!r}")
    if number > MAX_SECONDS:
        raise ValueError(f"must be <= {MAX_SECONDS:.0f}, got {value!r}")
    return number


def _table(source: str, name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ScheduleError(f"{source}: [{name}]: must be a table, got {value!r}")
    return value


def _check_keys(source: str, table: str, raw: Mapping[str, Any], allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    for key in raw:
        if key not in allowed:
            hint = ""
            if key in ("strategy", "pool"):
                hint = "; the scenario decides it"
            elif key == "queue":
                hint = "; set it per scenario, two scenarios must not share a queue"
            raise ScheduleError(
                f"{source}: [{table}] {key}: unknown key (allowed: {', '.join(allowed)}){hint}"
            )
    if "time" in raw and "hold_s" in raw:
        raise ScheduleError(f"{source}: [{table}] time: `time` and `hold_s` are the same key")


def parse_schedule(document: Mapping[str, Any], source: str = "<schedule>") -> Schedule:
    """Validate a parsed TOML document: [defaults] plus one [scenarios.NAME] table per scenario."""
    for key in document:
        if key not in ("defaults", "scenarios"):
            raise ScheduleError(
                f"{source}: {key}: unknown top-level key (expected [defaults] and "
                f"[scenarios.NAME] tables)"
            )
    defaults = _table(source, "defaults", document.get("defaults", {}))
    _check_keys(source, "defaults", defaults, DEFAULTS_KEYS)
    scenarios = _table(source, "scenarios", document.get("scenarios", {}))
    if not scenarios:
        raise ScheduleError(f"{source}: [scenarios]: no scenario (add a [scenarios.NAME] table)")
    plans: list[ScenarioPlan] = []
    queues: dict[str, str] = {}
    for name, raw_table in scenarios.items():
        table = f"scenarios.{name}"
        if name not in SCENARIOS:
            raise ScheduleError(
                f"{source}: [{table}]: unknown scenario {name!r} "
                f"(choose from {', '.join(SCENARIOS)})"
            )
        raw = _table(source, table, raw_table)
        _check_keys(source, table, raw, SCENARIO_KEYS)
        plan = _plan(source, name, defaults, raw)
        if plan.queue_name in queues:
            raise ScheduleError(
                f"{source}: [{table}] queue: {plan.queue_name!r} is already the queue of "
                f"{queues[plan.queue_name]}"
            )
        queues[plan.queue_name] = name
        plans.append(plan)
    return Schedule(source, plans)


def _plan(
    source: str, name: str, defaults: Mapping[str, Any], raw: Mapping[str, Any]
) -> ScenarioPlan:
    table = f"scenarios.{name}"
    # Each value with the table it came from and the spelling the user wrote, for messages.
    merged: dict[str, tuple[Any, str, str]] = {
        k: (v, "built-in default", k) for k, v in BUILTIN_PARAMS.items()
    }
    for origin, layer in (("defaults", defaults), (table, raw)):
        for key, value in layer.items():
            canonical = "hold_s" if key == "time" else key
            merged[canonical] = (value, origin, key)

    def where(key: str) -> str:
        if key not in merged:
            return f"[{table}] {key}"
        _, origin, spelled = merged[key]
        return _where(table, spelled, origin)

    def fail(key: str, message: str) -> ScheduleError:
        return ScheduleError(f"{source}: {where(key)}: {message}")

    try:
        params = BatchParams.validate(
            {k: merged[k][0] for k in PARAM_KEYS} | {"strategy": SCENARIOS[name].strategy}
        )
    except InvalidParameter as exc:
        raise fail(exc.field, exc.message) from None

    if "period_s" not in merged:
        raise ScheduleError(
            f"{source}: [{table}] period_s: is required (set it in [defaults] or the scenario)"
        )
    timing: dict[str, float] = {}
    for key in TIMING_KEYS:
        if key in merged:
            try:
                timing[key] = _seconds(merged[key][0], allow_zero=key == "jitter_s")
            except ValueError as exc:
                raise fail(key, str(exc)) from None
    period, jitter = timing["period_s"], timing.get("jitter_s", 0.0)
    if jitter >= period:
        # Firings would overtake each other and the period would no longer mean anything.
        raise fail("jitter_s", f"must be < period_s ({period:g}), got {jitter:g}")
    queue = raw.get("queue", "")
    if "queue" in raw and (not isinstance(queue, str) or not queue.strip() or " " in queue):
        raise fail("queue", f"must be a non-empty queue name without spaces, got {queue!r}")
    return ScenarioPlan(name, params, period, jitter, timing.get("deadline_s"), queue)


# ---- metrics and annotations -------------------------------------------------------------------


class LoadgenMetrics:
    """The loadgen's own registry; every scenario's series exist from the first scrape."""

    def __init__(self, scenarios: Iterable[str]) -> None:
        from prometheus_client import (
            CollectorRegistry,
            Counter,
            Gauge,
            Histogram,
            disable_created_metrics,
        )

        # `_created` series double the series count and no rule or panel reads them.
        disable_created_metrics()
        self.registry = CollectorRegistry(auto_describe=True)
        self.runs = Counter(
            names.LOADGEN_RUNS_TOTAL,
            "Scheduled runs by outcome (success, failure, timeout).",
            ["scenario", names.OUTCOME_LABEL],
            registry=self.registry,
        )
        self.duration = Histogram(
            names.LOADGEN_RUN_DURATION_SECONDS,
            "Send-to-result time of finished runs (success and failure; timeouts excluded).",
            ["scenario"],
            buckets=names.TASK_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.skipped = Counter(
            names.LOADGEN_SKIPPED_TOTAL,
            "Firings skipped because the scenario's previous run was still in flight.",
            ["scenario"],
            registry=self.registry,
        )
        self.last_run = Gauge(
            names.LOADGEN_LAST_RUN_TIMESTAMP_SECONDS,
            "Unix time the scenario's last run ended (any outcome).",
            ["scenario"],
            registry=self.registry,
        )
        for scenario in scenarios:
            # Pre-initialised so rate()/increase() and absent() work before the first event.
            for outcome in OUTCOMES:
                self.runs.labels(scenario=scenario, outcome=outcome)
            self.duration.labels(scenario=scenario)
            self.skipped.labels(scenario=scenario)


# Dashboards show annotations carrying this tag (grafana/generate.py's annotation query).
ANNOTATION_TAG = "membench"


@dataclass
class GrafanaAnnotator:
    """Posts one Grafana annotation per finished run; failures are logged, never fatal."""

    url: str
    token: str
    timeout_s: float = 2.0
    _failing: bool = field(default=False, repr=False)

    def post(self, scenario: str, outcome: str, start: float, end: float, text: str) -> bool:
        import urllib.request  # only when annotating: keeps `membench worker` start-up lean

        body = {
            "time": int(start * 1000),
            "timeEnd": int(end * 1000),
            "tags": [ANNOTATION_TAG, scenario, outcome],
            "text": text,
        }
        request = urllib.request.Request(
            f"{self.url.rstrip('/')}/api/annotations",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                response.read()
        except (OSError, ValueError) as exc:
            # One warning per outage, not one per run for hours.
            if not self._failing:
                log.warning("grafana annotation to %s failed: %s", self.url, exc)
            self._failing = True
            return False
        if self._failing:
            log.info("grafana annotations to %s work again", self.url)
        self._failing = False
        return True


# ---- scheduler ---------------------------------------------------------------------------------


@dataclass
class ScenarioStats:
    fired: int = 0
    success: int = 0
    failure: int = 0
    timeout: int = 0
    skipped: int = 0
    in_flight: int = 0  # 0 or 1: a firing is skipped rather than sent next to a running one


class _Slots:
    """Firing times on a fixed grid (no drift), each delayed by a random 0..jitter."""

    def __init__(self, t0: float, period: float, jitter: float, rng: random.Random) -> None:
        self.t0, self.period, self.jitter, self.rng = t0, period, jitter, rng
        self.k = 0
        self.at = t0 + rng.uniform(0, jitter)

    def advance(self) -> None:
        self.k += 1
        self.at = self.t0 + self.k * self.period + self.rng.uniform(0, self.jitter)


class Scheduler:
    """Fires each plan on its period from its own thread; awaits every run with a deadline."""

    def __init__(
        self,
        app: Celery,
        plans: list[ScenarioPlan],
        metrics: LoadgenMetrics | None = None,
        *,
        max_runs: int | None = None,
        grace_s: float = GRACE_S,
        annotator: GrafanaAnnotator | None = None,
        seed: int | None = None,
    ) -> None:
        self.app = app
        self.plans = plans
        self.metrics = metrics or LoadgenMetrics(p.scenario for p in plans)
        self.max_runs = max_runs
        self.grace_s = grace_s
        self.annotator = annotator
        self.stats = {p.scenario: ScenarioStats() for p in plans}
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._stop_at: float | None = None
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._running = 0
        self.crashed: list[str] = []  # scenarios whose thread died on an unexpected error

    # -- lifecycle --

    def start(self) -> None:
        t0 = time.monotonic()
        self._running = len(self.plans)
        for plan in self.plans:
            slots = _Slots(t0, plan.period_s, plan.jitter_s, random.Random(self._rng.random()))
            thread = threading.Thread(
                target=self._scenario_loop,
                args=(plan, slots),
                name=f"loadgen-{plan.scenario}",
                daemon=True,  # a second Ctrl-C must not hang on a thread waiting for Redis
            )
            self._threads.append(thread)
            thread.start()

    def wait(self, duration: float | None = None) -> None:
        """Until `duration` passes, stop() is called, or every scenario did its max_runs."""
        self._stop.wait(duration)

    def stop(self) -> None:
        if self._stop_at is None:
            self._stop_at = time.monotonic()
        self._stop.set()

    def join(self) -> None:
        """Stop firing and wait for in-flight runs (up to the grace; then they count as timeout)."""
        self.stop()
        for thread in self._threads:
            thread.join()

    def run(self, duration: float | None = None) -> dict[str, ScenarioStats]:
        self.start()
        try:
            self.wait(duration)
        finally:
            self.join()
        return self.stats

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # -- one scenario --

    def _scenario_loop(self, plan: ScenarioPlan, slots: _Slots) -> None:
        stats = self.stats[plan.scenario]
        try:
            while not self._stop.wait(max(0.0, slots.at - time.monotonic())):
                slots.advance()
                self._fire(plan, stats, slots)
                if self.max_runs is not None and stats.fired >= self.max_runs:
                    break
        except Exception:
            # Never let one scenario die quietly while the others go on.
            log.exception("%s: scheduler thread crashed; stopping the loadgen", plan.scenario)
            self.crashed.append(plan.scenario)
            self.stop()
        finally:
            with self._lock:
                self._running -= 1
                if self._running == 0:
                    self.stop()  # nothing left to fire: wake wait()

    def _count_skips(self, plan: ScenarioPlan, stats: ScenarioStats, slots: _Slots) -> None:
        """Count the firing times that passed while the scenario's run was in flight."""
        now, skipped = time.monotonic(), 0
        while not self._stop.is_set() and slots.at <= now:
            skipped += 1
            slots.advance()
        if skipped:
            stats.skipped += skipped
            self.metrics.skipped.labels(scenario=plan.scenario).inc(skipped)
            log.info(
                "%s: skipped %d firing(s), run %d in flight (%d skipped in total)",
                plan.scenario,
                skipped,
                stats.fired,
                stats.skipped,
            )

    def _limit(self, deadline: float) -> float:
        """The deadline, shortened to the grace once a stop is requested."""
        if self._stop_at is not None:
            return min(deadline, self._stop_at + self.grace_s)
        return deadline

    def _fire(self, plan: ScenarioPlan, stats: ScenarioStats, slots: _Slots) -> None:
        stats.fired += 1
        run = stats.fired
        deadline_s = plan.effective_deadline_s
        started_wall, started = time.time(), time.monotonic()
        try:
            result = self.app.send_task(
                TASK_NAME,
                kwargs=plan.params.as_kwargs(),
                queue=plan.queue_name,
                # A message still queued at the deadline is dropped by the worker, so a scenario
                # whose worker is down or late does not run a backlog when it comes back.
                expires=deadline_s,
            )
        except Exception as exc:
            self._record(plan, run, "failure", 0.0, started_wall, f"could not send: {exc}")
            return
        stats.in_flight = 1
        try:
            outcome, detail = self._await(plan, stats, slots, result, started + deadline_s)
            self._record(
                plan, run, outcome, time.monotonic() - started, started_wall, detail, deadline_s
            )
            if outcome == "timeout":
                self._linger(plan, stats, slots, result, run, started)
        finally:
            stats.in_flight = 0
            self._count_skips(plan, stats, slots)

    def _await(
        self,
        plan: ScenarioPlan,
        stats: ScenarioStats,
        slots: _Slots,
        result: AsyncResult,
        deadline: float,
    ) -> tuple[str, str]:
        from celery import states
        from celery.exceptions import TimeoutError as ResultTimeout

        warned = False
        while True:
            self._count_skips(plan, stats, slots)
            now, limit = time.monotonic(), self._limit(deadline)
            if now >= limit:
                why = "stopping" if limit < deadline else "deadline"
                return "timeout", f"no result by the {why}"
            try:
                value = result.get(timeout=min(POLL_S, limit - now), propagate=False)
            except ResultTimeout:
                continue
            except Exception as exc:  # the backend is unreachable: retry until the deadline
                if not warned:
                    log.warning("%s: waiting for the result failed: %s", plan.scenario, exc)
                    warned = True
                time.sleep(min(POLL_S, max(0.0, limit - now)))  # back off, then poll again
                continue
            state = result.state
            if state == states.SUCCESS:
                done = value.get("subtasks_done") if isinstance(value, dict) else None
                if done != plan.params.subtasks:
                    return "failure", f"{done} of {plan.params.subtasks} subtasks done"
                return "success", f"task {value.get('wall_s', 0.0):.2f} s"
            if state == states.REVOKED:
                return "timeout", "expired in the queue before a worker started it"
            return "failure", f"{type(value).__name__}: {value}"

    def _linger(
        self,
        plan: ScenarioPlan,
        stats: ScenarioStats,
        slots: _Slots,
        result: AsyncResult,
        run: int,
        started: float,
    ) -> None:
        """After a timeout, keep the scenario busy while its task still runs on the worker.

        Otherwise the next firing would queue behind it and work would pile up. Bounded by the
        generous deadline, so a task lost with its worker cannot block the scenario for ever.
        """
        from celery import states
        from celery.exceptions import TimeoutError as ResultTimeout

        try:
            if self._stop.is_set():
                return
            try:
                state = result.state
            except Exception:
                return
            if state in states.READY_STATES:
                return  # it ended (or expired) between the deadline and now: nothing runs
            if state == states.PENDING:
                # Not started: it expires unread; the revoke covers a worker that already
                # reserved it.
                result.revoke()
                return
            cap = time.monotonic() + plan.generous_deadline_s
            while not self._stop.is_set() and time.monotonic() < cap:
                self._count_skips(plan, stats, slots)
                try:
                    result.get(timeout=POLL_S, propagate=False)
                except ResultTimeout:
                    continue
                except Exception:
                    return
                log.info(
                    "%s run %d: ended late after %.2f s (%s, counted as timeout)",
                    plan.scenario,
                    run,
                    time.monotonic() - started,
                    result.state.lower(),
                )
                return
        finally:
            # Unsubscribe and drop the waiter: over hours, unfinished results would accumulate.
            try:
                result.forget()
            except Exception as exc:
                log.debug("forgetting %s failed: %s", result.id, exc)

    def _record(
        self,
        plan: ScenarioPlan,
        run: int,
        outcome: str,
        duration: float,
        started_wall: float,
        detail: str,
        deadline_s: float | None = None,
    ) -> None:
        stats = self.stats[plan.scenario]
        setattr(stats, outcome, getattr(stats, outcome) + 1)
        self.metrics.runs.labels(scenario=plan.scenario, outcome=outcome).inc()
        if outcome != "timeout":
            # A timeout's duration is the deadline, not the run's: it would skew the quantiles.
            self.metrics.duration.labels(scenario=plan.scenario).observe(duration)
        ended = time.time()
        self.metrics.last_run.labels(scenario=plan.scenario).set(ended)
        limit = f" (deadline {deadline_s:.1f} s)" if outcome == "timeout" and deadline_s else ""
        log.info(
            "%s run %d: %s in %.2f s%s: %s",
            plan.scenario,
            run,
            outcome,
            duration,
            limit,
            detail,
        )
        if self.annotator is not None:
            p = plan.params
            self.annotator.post(
                plan.scenario,
                outcome,
                started_wall,
                ended,
                f"membench loadgen {plan.scenario} run {run}: {outcome} in {duration:.2f} s "
                f"({p.subtasks}x{p.size_mb:g} MB {p.payload}, hold {p.hold_s:g} s, "
                f"workers {p.workers}): {detail}",
            )


# ---- summary and CLI ---------------------------------------------------------------------------

SUMMARY_COLUMNS = ("fired", "success", "failure", "timeout", "skipped")


def format_summary(stats: Mapping[str, ScenarioStats]) -> str:
    width = max([len("scenario"), *(len(s) for s in stats)])
    lines = ["scenario".ljust(width) + "".join(f"{c:>9}" for c in SUMMARY_COLUMNS)]
    for scenario, s in stats.items():
        lines.append(
            scenario.ljust(width) + "".join(f"{getattr(s, c):>9}" for c in SUMMARY_COLUMNS)
        )
    return "\n".join(lines)


class _Stop(Exception):
    """SIGINT/SIGTERM, raised in the main thread to leave Scheduler.wait()."""


def _raise_stop(signum: int, frame: Any) -> None:
    raise _Stop(signal.Signals(signum).name)


def cmd_loadgen(args: argparse.Namespace) -> int:
    """Validate, serve metrics, fire until --duration/--runs/a signal, print a summary."""
    from membench.cli import run as cli
    from membench.processes import port_in_use

    try:
        schedule = load_schedule(args.schedule)
    except ScheduleError as exc:
        raise cli.UsageError(f"--schedule: {exc}") from None
    plans = schedule.plans
    if args.scenarios:
        wanted = [s.strip() for s in args.scenarios.split(",") if s.strip()]
        in_schedule = {p.scenario for p in plans}
        for name in wanted:
            if name not in in_schedule:
                raise cli.UsageError(
                    f"--scenarios: {name!r} is not in {schedule.source} "
                    f"(it has {', '.join(sorted(in_schedule))})"
                )
        plans = [p for p in plans if p.scenario in wanted]
    if args.duration is not None and not 0 < args.duration <= MAX_DURATION_S:
        raise cli.UsageError(
            f"--duration: must be > 0 and <= {MAX_DURATION_S:.0f}, got {args.duration}"
        )
    if args.runs is not None and args.runs < 1:
        raise cli.UsageError(f"--runs: must be >= 1, got {args.runs}")
    if not 0 <= args.metrics_port <= 65535:
        raise cli.UsageError(
            f"--metrics-port: must be between 0 and 65535, got {args.metrics_port}"
        )
    if args.metrics_port and port_in_use(args.metrics_host, args.metrics_port):
        raise cli.UsageError(
            f"--metrics-port: port {args.metrics_port} on {args.metrics_host} is in use"
        )
    targets = os.environ.get("MEMBENCH_TARGETS_DIR") or None
    if targets and Path(targets).exists() and not Path(targets).is_dir():
        raise cli.UsageError(f"MEMBENCH_TARGETS_DIR: {targets} is not a directory")
    grafana_url = args.grafana_url or os.environ.get("MEMBENCH_GRAFANA_URL") or None
    grafana_token = os.environ.get("MEMBENCH_GRAFANA_TOKEN") or None
    if grafana_url and urlsplit(grafana_url).scheme not in ("http", "https"):
        raise cli.UsageError(
            f"--grafana-url: must be an http:// or https:// URL, got {grafana_url}"
        )

    from membench.broker import client_app, redact
    from membench.workers.app import broker_url_from_env

    broker = cli._broker_url(args) or broker_url_from_env()
    cli._check_broker(broker)

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
        log.warning("MEMBENCH_GRAFANA_TOKEN is not set: no Grafana annotations")
    metrics = LoadgenMetrics(p.scenario for p in plans)
    scheduler = Scheduler(app, plans, metrics, max_runs=args.runs, annotator=annotator)
    exporter = None
    # Installed before anything starts, so a signal at any point still ends in a clean stop.
    previous = {s: signal.signal(s, _raise_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            try:
                exporter = start_exporter(
                    metrics.registry,
                    args.metrics_host,
                    args.metrics_port,
                    targets_dir=Path(targets) if targets else None,
                    job="loadgen",
                    target_labels={},
                )
            except OSError as exc:
                raise cli.UsageError(
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
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
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
        return cli.EXIT_FAILED_RUNS
    bad = sum(s.failure + s.timeout for s in scheduler.stats.values())
    if bad:
        print(f"membench loadgen: {bad} run(s) failed or timed out", file=sys.stderr)
        return cli.EXIT_FAILED_RUNS
    return cli.EXIT_OK


def add_parser(commands: Any) -> None:
    """Add `loadgen` to the `membench` subcommands (inherits the one-line-error parser class)."""
    parser = commands.add_parser(
        "loadgen",
        help="fire scenarios on a schedule against running workers (soak tests)",
        description="Fire scenarios on a TOML schedule against running `membench worker`s; "
        "export run metrics; Ctrl-C/SIGTERM stops cleanly and prints a summary.",
    )
    parser.add_argument("--schedule", required=True, help="schedule file (TOML, see docs)")
    parser.add_argument(
        "--duration", type=float, help="stop after this many seconds (default: until a signal)"
    )
    parser.add_argument(
        "--runs", type=int, help="stop once every scenario fired this many runs (default: no limit)"
    )
    parser.add_argument(
        "--scenarios", help="comma list: fire only these scenarios of the schedule (default: all)"
    )
    parser.add_argument("--broker", help="Redis URL (default: $MEMBENCH_BROKER_URL)")
    parser.add_argument(
        "--metrics-host", default="127.0.0.1", help="address /metrics binds (default: 127.0.0.1)"
    )
    parser.add_argument(
        "--metrics-port", type=int, default=9200, help="/metrics port; 0 = any free (default: 9200)"
    )
    parser.add_argument(
        "--grafana-url",
        help="post an annotation per run to this Grafana (default: $MEMBENCH_GRAFANA_URL; "
        "needs $MEMBENCH_GRAFANA_TOKEN)",
    )
    parser.set_defaults(handler=cmd_loadgen)
