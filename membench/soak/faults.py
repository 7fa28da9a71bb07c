"""The local soak's fault injector (`--faults`): every N seconds the next fault of FAULTS, injected
into the running local stack, with what it hit and when Prometheus was whole again; the soak runs
it in a thread and accounting.py matches it to the loadgen's runs afterwards."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from membench.exporter import names
from membench.processes import ProcessIdentity, pid_alive, process_identity
from membench.procfs import list_children
from membench.query.client import Prometheus, PrometheusError
from membench.stack.supervisor import http_ok
from membench.targets import addresses_by_pid

STOP_S = 30.0  # how long stop_worker keeps a worker SIGSTOPped
MID_TASK_WAIT_S = 30.0  # how long an injector waits for a task to be running before it fires
RECOVERY_WAIT_S = 180.0  # how long the Prometheus fault waits for every target to be up again
FAULT_MAX_S = MID_TASK_WAIT_S + STOP_S + RECOVERY_WAIT_S  # the longest one fault can take


@dataclass(frozen=True)
class FaultKind:
    name: str
    scenario: str | None  # the scenario whose processes it hits; None: the shared services
    replaces_process: bool  # a process of `scenario` is replaced (its memory starts afresh)
    what: str


FAULTS = (
    FaultKind(
        "kill_prefork_child",
        "prefork_sequential",
        True,
        "SIGKILL the pool child of worker-prefork_sequential while it runs a task",
    ),
    FaultKind(
        "kill_gevent_worker",
        "gevent_greenlets",
        True,
        "SIGKILL worker-gevent_greenlets while it runs a task; `stack up` restarts it",
    ),
    FaultKind(
        "restart_redis",
        None,
        False,
        "SIGKILL the embedded redis-server; `stack up` restarts it on its port and password",
    ),
    FaultKind(
        "restart_prometheus",
        None,
        False,
        "SIGKILL Prometheus; `stack up` restarts it on its port and TSDB",
    ),
    FaultKind(
        "stop_worker",
        "prefork_threads",
        False,
        f"SIGSTOP worker-prefork_threads (main + child) mid-task for {STOP_S:g} s, then SIGCONT",
    ),
)
FAULTS_BY_NAME = {kind.name: kind for kind in FAULTS}


@dataclass
class Fault:
    """One injected fault: when, into which process, and what the injector saw."""

    kind: str
    scenario: str | None
    what: str
    at: float  # unix time of the signal
    ended_at: float  # unix time the fault was over (SIGCONT for stop_worker; else `at`)
    pids: list[int]
    # Who each pid was when signalled: a pid freed by the fault may name another process by
    # the end of an hour (pid_max is 32768 here), so the stop check compares identities.
    identities: list[ProcessIdentity] = field(default_factory=list)
    mid_task: bool | None = None  # a task was running in the process when it was signalled
    prometheus_ready_s: float | None = None  # restart_prometheus: /-/ready answers again
    targets_up_s: float | None = None  # restart_prometheus: every worker target scraped up again
    error: str | None = None
    details: dict[str, int] = field(default_factory=dict)  # counts the injector saw


def _scrape(address: str, timeout: float) -> str:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=timeout) as response:
        return str(response.read().decode())


def _gauge(exposition: str, name: str) -> float:
    """The first sample of the labelled gauge `name` in an exposition; 0 when there is none."""
    for line in exposition.splitlines():
        if line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def children(pid: int) -> list[int]:
    """The pid's child processes; none once it is gone."""
    try:
        return sorted(set(list_children(pid)))
    except FileNotFoundError:
        return []


def _busy(targets: Path, pid: int) -> bool:
    """The process's own exporter says a task is running in it now."""
    for address in addresses_by_pid(targets).get(pid, []):
        try:
            exposition = _scrape(address, timeout=1.0)
        except (OSError, http.client.HTTPException):  # a half-written answer: not busy yet
            continue
        if _gauge(exposition, names.PROCESS_TASKS_IN_PROGRESS):
            return True
    return False


class Injector(threading.Thread):
    """Injects FAULTS in turn at start + every_s, start + 2 every_s, ... while before `until`."""

    def __init__(self, stack_dir: Path, start: float, every_s: float, until: float) -> None:
        super().__init__(name="soak-faults", daemon=True)
        self.stack_dir, self.start_at, self.every_s, self.until = stack_dir, start, every_s, until
        self.targets = stack_dir / "prometheus" / "targets"
        self.faults: list[Fault] = []
        self.stopping = threading.Event()
        self.error: str | None = None  # the last fault that could not be injected, and why

    def schedule(self) -> list[float]:
        """Fault times; the last leaves at least half a period to watch the recovery."""
        times, k = [], 1
        while self.start_at + k * self.every_s <= self.until - self.every_s / 2:
            times.append(self.start_at + k * self.every_s)
            k += 1
        return times

    def run(self) -> None:
        for n, at in enumerate(self.schedule()):
            if self.stopping.wait(max(0.0, at - time.time())):
                return
            kind = FAULTS[n % len(FAULTS)]
            try:
                fault = self.inject(kind)
            except Exception as exc:  # this fault is reported as failed; the next still runs
                now = time.time()
                fault = Fault(kind.name, kind.scenario, kind.what, now, now, [])
                fault.error = f"{type(exc).__name__}: {exc}"
                self.error = fault.error
            self.faults.append(fault)
            print(
                f"membench soak: fault {n + 1} at t={fault.at - self.start_at:.0f}s: {fault.kind} "
                f"(pids {fault.pids}, mid-task {fault.mid_task}){_error(fault)}",
                file=sys.stderr,
                flush=True,
            )

    def state(self) -> dict[str, Any]:
        return dict(json.loads((self.stack_dir / "stack.json").read_text()))

    def _wait_busy(self, pid: int) -> bool:
        deadline = time.monotonic() + MID_TASK_WAIT_S
        while time.monotonic() < deadline and not self.stopping.is_set():
            if _busy(self.targets, pid):
                return True
            time.sleep(0.1)  # polling the exporter, not synchronisation; tasks last >= 0.4 s
        return False

    def inject(self, kind: FaultKind) -> Fault:
        state = self.state()
        services = state["services"]
        if kind.name == "kill_prefork_child":
            pids = children(services[f"worker-{kind.scenario}"]["pid"])[:1]
            mid_task = bool(pids) and self._wait_busy(pids[0])
            return self._signal(kind, pids, signal.SIGKILL, mid_task)
        if kind.name == "kill_gevent_worker":
            pid = services[f"worker-{kind.scenario}"]["pid"]
            return self._signal(kind, [pid], signal.SIGKILL, self._wait_busy(pid))
        if kind.name == "restart_redis":
            return self._signal(kind, [services["redis"]["pid"]], signal.SIGKILL, None)
        if kind.name == "restart_prometheus":
            return self._restart_prometheus(kind, services["prometheus"]["pid"], state)
        pid = services[f"worker-{kind.scenario}"]["pid"]
        child = children(pid)
        mid_task = bool(child) and self._wait_busy(child[0])
        fault = self._signal(kind, [pid, *child], signal.SIGSTOP, mid_task, group=pid)
        self.stopping.wait(STOP_S)  # the fault's length; a stop request cuts it short
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGCONT)
        fault.ended_at = time.time()
        return fault

    def _signal(
        self,
        kind: FaultKind,
        pids: list[int],
        sig: signal.Signals,
        mid_task: bool | None,
        group: int | None = None,
    ) -> Fault:
        identities = [i for i in map(process_identity, pids) if i]
        at = time.time()
        fault = Fault(kind.name, kind.scenario, kind.what, at, at, pids, identities, mid_task)
        if not pids:
            fault.error = "no process to signal"
            return fault
        try:
            if group is not None:
                os.killpg(group, sig)  # the worker's process group: main and pool children
            else:
                for pid in pids:
                    os.kill(pid, sig)
        except ProcessLookupError as exc:
            fault.error = f"signal failed: {exc}"
        return fault

    def _restart_prometheus(self, kind: FaultKind, pid: int, state: dict[str, Any]) -> Fault:
        url = state["prometheus_url"]
        client = Prometheus(url)
        workers = 'up{role!=""}'  # the worker targets: only their file_sd entries carry a role
        expected = len(client.query(f"{workers} == 1"))
        fault = self._signal(kind, [pid], signal.SIGKILL, None)
        fault.details["worker_targets_before"] = expected
        deadline = time.monotonic() + RECOVERY_WAIT_S
        while time.monotonic() < deadline and not self.stopping.is_set():
            now = time.time()
            if (
                fault.prometheus_ready_s is None
                and not pid_alive(pid)
                and http_ok(f"{url}/-/ready")
            ):
                fault.prometheus_ready_s = round(now - fault.at, 2)
            if fault.prometheus_ready_s is not None:
                fresh = f"({workers} == 1) and (timestamp({workers}) > {fault.at:.3f})"
                with contextlib.suppress(PrometheusError):
                    if len(client.query(fresh)) >= expected:
                        fault.targets_up_s = round(time.time() - fault.at, 2)
                        return fault
            time.sleep(0.2)  # polling Prometheus, not synchronisation
        fault.error = f"worker targets not all up again within {RECOVERY_WAIT_S:g} s"
        return fault


def _error(fault: Fault) -> str:
    return f"; error: {fault.error}" if fault.error else ""
