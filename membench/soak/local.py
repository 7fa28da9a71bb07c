"""The local soak: `membench stack up` on a schedule (a compressed one by default) in the output
directory, faults injected on a period, progress every interval, then the window's figures read
from the stack's own Prometheus (analysis.py), the stack stopped and every pid checked gone, and
each firing accounted for from the loadgen's log."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from membench.loadgen.schedule import load_schedule
from membench.processes import (
    Interrupted,
    ProcessIdentity,
    catch_stop_signals,
    pid_alive,
    same_process,
    spawn,
)
from membench.query.client import Prometheus, PrometheusError
from membench.query.timerange import Window
from membench.soak.accounting import FaultEffects, ScenarioAccount, account
from membench.soak.analysis import SERIES_COUNT, Analysis, analyse
from membench.soak.faults import FAULT_MAX_S, FAULTS_BY_NAME, Fault, Injector
from membench.soak.growth import Cut

SCHEDULE = """\
# Written by `membench soak`: a compressed soak schedule (small tasks, short period).
[defaults]
subtasks = 8
size_mb = 4.0
hold_s = 0.2
workers = 4
payload = "bytes"
period_s = 6.0
jitter_s = 1.0
deadline_s = {deadline_s}

[scenarios.prefork_threads]

[scenarios.prefork_sequential]

[scenarios.gevent_threads]

[scenarios.gevent_greenlets]
"""
# A run whose task is lost (its worker killed, its result lost with redis-server) is counted a
# timeout after this long, not after the 64 s derived from the task, and the scenario, which
# skips while a run is in flight, fires again: the runs take <= 1.7 s, so 20 s is generous.
DEADLINE_S = 20.0
WORKERS = 'job="membench-workers"'  # the stack's worker targets (prometheus/prometheus.yml)
STARTUP_S = 180.0  # for stack.json, then for Prometheus to hold every worker
# Faults that leave each process in place but may move its level: a cut, reported as a step.
# (A replaced process is cut at its new start time; Prometheus's restart moves no worker.)
LEVEL_FAULTS = frozenset({"restart_redis", "stop_worker"})


class SoakError(Exception):
    """The soak cannot go on; the message says why in one line."""


@dataclass(frozen=True)
class Plan:
    duration_s: float
    schedule: Path | None  # None: SCHEDULE
    faults: bool
    fault_every_s: float
    interval_s: float
    warmup_s: float
    output: Path


@dataclass
class StackStop:
    exit_code: int | None
    stop_seconds: float
    pids_checked: dict[str, int]
    pids_still_alive: dict[str, int]


@dataclass
class LocalRun:
    """What the local soak did, beside the figures: its stack, faults, accounting and stop."""

    schedule: str  # the schedule file's text
    stack_command: list[str]
    stack_dir: str
    started: float
    ended: float
    faults: list[Fault] = field(default_factory=list)
    fault_effects: list[FaultEffects] = field(default_factory=list)
    injector_error: str | None = None
    accounting: dict[str, ScenarioAccount] = field(default_factory=dict)
    restarts: list[dict[str, Any]] = field(default_factory=list)
    loadgen_summary: str = ""
    stop: StackStop | None = None

    @property
    def unaccounted(self) -> int:
        return sum(a.unaccounted for a in self.accounting.values())

    def failures(self) -> list[str]:
        """What failed the soak beside memory: a fault never recovered from or not injected,
        a process that outlived the stop."""
        found = [
            f"fault {f.kind} at t={f.at - self.started:.0f}s: never recovered from"
            for f, e in zip(self.faults, self.fault_effects, strict=False)
            if not e.recovered
        ]
        if self.injector_error:
            found.append(f"a fault could not be injected: {self.injector_error}")
        if self.stop is not None and self.stop.pids_still_alive:
            found.append(f"processes outlived the stop: {self.stop.pids_still_alive}")
        return found


def say(text: str) -> None:
    print(f"membench soak: {text}", file=sys.stderr, flush=True)


def _wait_ready(proc: subprocess.Popen[bytes], stack_dir: Path, log: Path) -> tuple[str, int]:
    """Prometheus's URL once it holds the main process of every worker, and their number."""
    deadline = time.monotonic() + STARTUP_S
    state_file = stack_dir / "stack.json"
    while not state_file.exists():
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise SoakError(f"`membench stack up` exited with {proc.returncode}:\n{tail}")
        if time.monotonic() > deadline:
            raise SoakError(f"no {state_file} after {STARTUP_S:g} s; see {log}")
        time.sleep(0.5)  # polling a file another process writes, with a deadline
    state = json.loads(state_file.read_text())
    url = state.get("prometheus_url")
    if not url:
        raise SoakError("stack.json has no prometheus_url: Prometheus did not start")
    workers = sum(1 for name in state.get("services", {}) if name.startswith("worker-"))
    client = Prometheus(url)
    while True:
        with contextlib.suppress(PrometheusError):
            mains = client.query(f'membench_process_rss_bytes{{{WORKERS},role="main"}}')
            if len(mains) >= workers:
                return url, workers
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SoakError(f"Prometheus at {url} has no data for every worker; see {log}")
        time.sleep(1.0)  # polling Prometheus, with a deadline


def _progress(url: str, t: float) -> None:
    client = Prometheus(url)
    try:
        series = client.query(SERIES_COUNT)
        runs = client.query("sum(membench_loadgen_runs_total)")
    except PrometheusError as exc:  # e.g. Prometheus restarting under a fault: said, not fatal
        say(f"t={t:6.0f}s (Prometheus did not answer: {exc})")
        return
    count = series[0]["value"][1] if series else "-"
    done = float(runs[0]["value"][1]) if runs else 0.0
    say(f"t={t:6.0f}s series={count} runs={done:.0f}")


def stop_stack(
    proc: subprocess.Popen[bytes], state: dict[str, Any] | None, signalled: list[ProcessIdentity]
) -> StackStop:
    """SIGTERM the `stack up` process, wait for it, then check every pid of stack.json is gone,
    and every pid a fault signalled (their replacements are in stack.json)."""
    began = time.monotonic()
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    pids: dict[str, int] = {}
    if state:
        pids["stack-up"] = int(state["pid"])
        pids.update({name: int(s["pid"]) for name, s in state.get("services", {}).items()})

    def alive() -> dict[str, int]:
        found = {name: pid for name, pid in pids.items() if pid_alive(pid)}
        # The processes faults signalled, by identity: their pids may name others by now.
        found.update({f"signalled-{i['pid']}": i["pid"] for i in signalled if same_process(i)})
        return found

    deadline = time.monotonic() + 10
    while alive() and time.monotonic() < deadline:
        time.sleep(0.2)  # the kernel reaps them; a deadline bounds the wait
    return StackStop(
        proc.returncode,
        round(time.monotonic() - began, 2),
        {**pids, **{f"signalled-{i['pid']}": i["pid"] for i in signalled}},
        alive(),
    )


def run(plan: Plan, limit_bytes_per_s: float) -> tuple[LocalRun, Analysis | None, str | None]:
    """The soak; returns what it did, the figures (None if Prometheus could not be read) and
    the error that ended it early (None: it ran its duration). Never leaves a process behind."""
    stack_dir = plan.output / "stack"
    shutil.rmtree(stack_dir, ignore_errors=True)  # a finished soak's; the command checked none runs
    if plan.schedule is None:
        schedule = plan.output / "schedule.toml"
        schedule.write_text(SCHEDULE.format(deadline_s=DEADLINE_S))
    else:
        schedule = plan.schedule
    scenarios = [p.scenario for p in load_schedule(schedule).plans]
    command = [sys.executable, "-m", "membench", "stack", "up", "--dir", str(stack_dir)]
    command += ["--schedule", str(schedule), "--scenarios", ",".join(scenarios)]
    log = plan.output / "stack-up.log"
    log.unlink(missing_ok=True)
    stack_dir.mkdir(parents=True)
    local = LocalRun(schedule.read_text(), command, str(stack_dir), time.time(), time.time())
    previous = catch_stop_signals()
    previous[signal.SIGINT] = signal.signal(signal.SIGINT, _interrupt)
    say(f"starting the stack in {stack_dir} (log {log})")
    proc = spawn(command, log_path=log)
    injector: Injector | None = None
    state: dict[str, Any] | None = None
    analysis: Analysis | None = None
    error: str | None = None
    url: str | None = None
    try:
        url, workers = _wait_ready(proc, stack_dir, log)
        say(f"stack up ({workers} workers), Prometheus at {url}; soaking {plan.duration_s:g} s")
        local.started = time.time()
        end = local.started + plan.duration_s
        if plan.faults:
            injector = Injector(stack_dir, local.started, plan.fault_every_s, end)
            injector.start()
        next_progress = local.started
        while (now := time.time()) < end:
            if proc.poll() is not None:
                raise SoakError(f"`membench stack up` exited early ({proc.returncode}); see {log}")
            if now >= next_progress:
                _progress(url, now - local.started)
                next_progress += plan.interval_s
            time.sleep(max(0.0, min(next_progress, end) - time.time(), 0.05))
    except Interrupted as exc:
        error = f"interrupted by {exc}"
        say(f"{error}: writing what was measured so far")
    except SoakError as exc:
        error = str(exc)
        say(f"error: {error}")
    finally:
        for signum in previous:
            signal.signal(signum, signal.SIG_IGN)  # the stop and the figures run to the end
        local.ended = time.time()
        if injector is not None:
            if error is None:  # a fault still in progress finishes, its recovery watched
                injector.join(timeout=FAULT_MAX_S)
            injector.stopping.set()  # a SIGSTOPped worker gets its SIGCONT first
            injector.join(timeout=60)
            local.faults, local.injector_error = list(injector.faults), injector.error
            local.ended = time.time()
        try:
            if url is not None:
                analysis = _figures(url, local, plan, limit_bytes_per_s)
        finally:  # whatever the figures did, the stack stops and its pids are checked
            with contextlib.suppress(OSError, ValueError):  # today's pids, after restarts
                state = json.loads((stack_dir / "stack.json").read_text())
            say("stopping the stack (SIGTERM to `stack up`)")
            signalled = [i for f in local.faults for i in f.identities]
            local.stop = stop_stack(proc, state, signalled)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    local.restarts = (state or {}).get("restarts", [])
    loadgen_log = stack_dir / "logs" / "loadgen.log"
    text = loadgen_log.read_text(errors="replace") if loadgen_log.exists() else ""
    start = text.rfind("scenario ")
    local.loadgen_summary = text[start:].strip() if start >= 0 else ""
    local.fault_effects, local.accounting = account(
        local.faults, text, local.loadgen_summary, time.time()
    )
    return local, analysis, error


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


def _figures(url: str, local: LocalRun, plan: Plan, limit: float) -> Analysis | None:
    """The window's figures from the stack's Prometheus, read before the stack stops."""
    cuts = [
        Cut(f.at, f.kind, f.scenario)
        for f in local.faults
        if f.kind in LEVEL_FAULTS and FAULTS_BY_NAME[f.kind].replaces_process is False
    ]
    ended = round(local.ended, 3)
    window = Window(ended, max(1, round(ended - local.started)))
    try:
        return analyse(Prometheus(url), window, limit, plan.warmup_s, cuts, WORKERS)
    except PrometheusError as exc:
        say(f"error: could not read the figures from {url}: {exc}")
        return None
