"""Fire scenarios on their schedule against running workers, for hours.

One thread per scenario; a firing is skipped while that scenario's previous run is in flight.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from membench.loadgen.annotations import GrafanaAnnotator
from membench.loadgen.metrics import LoadgenMetrics
from membench.loadgen.schedule import ScenarioPlan

if TYPE_CHECKING:
    from celery import Celery
    from celery.result import AsyncResult

    from membench.workers.app import MembenchTask

log = logging.getLogger("membench.loadgen")

TASK_NAME = "membench.process_batch"
GRACE_S = 5.0  # compose's stop_grace_period is 10 s: stop well within it
# Celery's result drainer waits for pubsub messages in 1 s steps whatever get()'s timeout, so
# deadlines, skips and stop requests are accounted to about a second (fine for a soak). Polling
# the result key instead would leave the pubsub socket unread and its buffer growing for hours.
POLL_S = 1.0


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
        app: Celery[MembenchTask],
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
        result: AsyncResult[object],
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
            # str: celery-types' Literal of states omits REVOKED, which an expired task reports.
            state: str = result.state
            if state == states.SUCCESS:
                report = value if isinstance(value, dict) else {}
                done = report.get("subtasks_done")
                if done != plan.params.subtasks:
                    return "failure", f"{done} of {plan.params.subtasks} subtasks done"
                return "success", f"task {report.get('wall_s', 0.0):.2f} s"
            if state == states.REVOKED:
                return "timeout", "expired in the queue before a worker started it"
            return "failure", f"{type(value).__name__}: {value}"

    def _linger(
        self,
        plan: ScenarioPlan,
        stats: ScenarioStats,
        slots: _Slots,
        result: AsyncResult[object],
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


SUMMARY_COLUMNS = ("fired", "success", "failure", "timeout", "skipped")


def format_summary(stats: Mapping[str, ScenarioStats]) -> str:
    width = max([len("scenario"), *(len(s) for s in stats)])
    lines = ["scenario".ljust(width) + "".join(f"{c:>9}" for c in SUMMARY_COLUMNS)]
    for scenario, s in stats.items():
        lines.append(
            scenario.ljust(width) + "".join(f"{getattr(s, c):>9}" for c in SUMMARY_COLUMNS)
        )
    return "\n".join(lines)
