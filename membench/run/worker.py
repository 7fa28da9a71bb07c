"""One scenario's Celery worker as a subprocess: the command line, readiness, its process tree."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from membench import settings
from membench.processes import pid_alive, spawn, stop, wait_for
from membench.procfs import list_tree
from membench.targets import addresses_by_pid, prune_dead_targets
from membench.workers.scenarios import Scenario
from membench.workers.user_payload import started_dir_environment

CELERY_APP = "membench.workers.app"


class WorkerFailed(Exception):
    """The worker exited or never became ready; the message carries the tail of its log."""


# Celery's gevent worker loop waits in drain_events(timeout=2.0) and, with its one prefetch slot
# in use, Redis is not polled: a task sent after the previous one finished started 2.0 s late
# (measured: 2.0 s every time; prefork 0.005 s). A second slot keeps Redis polled (0.007 s).
# The runner and the loadgen never have more than one task in flight per worker, so the extra
# slot never reserves a backlog; pool concurrency still runs one task at a time.
GEVENT_PREFETCH_ARGS = {"gevent": ["--prefetch-multiplier", "2"]}


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """How a worker is started beyond its scenario: allocator and prefork child recycling."""

    malloc: str = "glibc"  # glibc | arena2 | jemalloc (membench.workers.allocator)
    max_tasks_per_child: int | None = None  # prefork only
    max_memory_per_child_kib: int | None = None  # prefork only


def celery_worker_argv(
    scenario: Scenario,
    concurrency: int,
    queue: str,
    hostname: str,
    loglevel: str = "INFO",
    options: WorkerOptions | None = None,
) -> list[str]:
    """The celery command `membench worker` execs. `python -m celery` applies gevent's
    monkey-patching when it sees `-P gevent`, before the app is imported."""
    recycling: list[str] = []
    if options is not None and scenario.pool == "prefork":  # only prefork has children to replace
        if options.max_tasks_per_child:
            recycling += ["--max-tasks-per-child", str(options.max_tasks_per_child)]
        if options.max_memory_per_child_kib:
            recycling += ["--max-memory-per-child", str(options.max_memory_per_child_kib)]
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        CELERY_APP,
        "worker",
        "-P",
        scenario.pool,
        "-c",
        str(concurrency),
        "-Q",
        queue,
        "-n",
        hostname,
        # Gossip and mingle only slow start-up (~1 s); one worker per queue needs neither.
        "--without-gossip",
        "--without-mingle",
        "-E",
        "-l",
        loglevel,
        *GEVENT_PREFETCH_ARGS.get(scenario.pool, []),
        *recycling,
    ]


def worker_environment(
    scenario: Scenario, metrics_host: str, metrics_port: int, options: WorkerOptions
) -> dict[str, str]:
    """What a worker's environment adds for membench: identity, exporter address, allocator."""
    from membench.workers.allocator import allocator_env

    return {
        settings.SCENARIO: scenario.name,
        settings.METRICS_HOST: metrics_host,
        settings.METRICS_PORT: str(metrics_port),
        **allocator_env(options.malloc),
    }


# A worker starts in 0.6-1.0 s here and announces it in the ready file; pinging earlier only
# blocked the polling (measured: ~2 pings of 54 ms per start, one start in 12 seen 61 ms late).
PING_AFTER_S = 2.0


def expected_exporters(scenario: Scenario, concurrency: int) -> int:
    return 1 + (concurrency if scenario.pool == "prefork" else 0)


class WorkerProcess:
    """A `membench worker` subprocess for one scenario, on its own queue, with its own targets."""

    def __init__(
        self,
        scenario: Scenario,
        concurrency: int,
        broker_url: str,
        workdir: Path,
        token: str,
        extra_env: dict[str, str] | None = None,
        options: WorkerOptions | None = None,
        targets_dir: Path | None = None,
    ) -> None:
        self.scenario = scenario
        self.options = options or WorkerOptions()
        self.concurrency = concurrency
        self.queue = f"membench.{scenario.name}.{token}"
        self.hostname = f"membench-{scenario.name}-{token}@%h"
        # Its own directory unless given one a Prometheus watches (`membench run --targets-dir`).
        self.targets_dir = targets_dir or workdir / f"targets-{token}"
        self.log_path = workdir / f"worker-{scenario.name}-{token}.log"
        self._broker_url = broker_url
        self._extra_env = extra_env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready_s: float | None = None
        self.ready_at: float | None = None  # wall clock, comparable with sample times
        # The worker writes its pid here from Celery's worker_ready signal (instrumentation.py).
        self.ready_path = workdir / f"ready-{scenario.name}-{token}"
        self._app: Any = None  # the Celery app wait_ready was given: stop() asks the worker

    def start(self) -> None:
        """Spawn celery itself, as `membench worker` would exec it (input already validated):
        going through `membench worker` cost a second interpreter start, ~0.2 s per worker."""
        env = dict(os.environ)
        env.update(self._extra_env)
        env.update(worker_environment(self.scenario, "127.0.0.1", 0, self.options))
        env.update(
            {
                settings.BROKER_URL: self._broker_url,
                settings.TARGETS_DIR: str(self.targets_dir),
                settings.READY_FILE: str(self.ready_path),
                "PYTHONUNBUFFERED": "1",
                # --payload MODULE:FUNCTION imports from the directory membench was started in.
                **started_dir_environment(env),
            }
        )
        self.ready_path.unlink(missing_ok=True)
        argv = celery_worker_argv(
            self.scenario, self.concurrency, self.queue, self.hostname, options=self.options
        )
        self._started = time.monotonic()
        self.proc = spawn(argv, env=env, log_path=self.log_path)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])

    def exit_reason(self) -> str:
        assert self.proc is not None
        code = self.proc.returncode
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        return f"worker process {how}"

    def wait_ready(self, app: Any, timeout: float = 60.0) -> float:
        """Wait until the worker is ready and every exporter registered; return seconds.

        Ready: Celery's worker_ready signal, which fires once the worker consumes its queue, and
        on which the worker writes its pid to `ready_path` (polled every 2 ms: a failed open).
        A ping answer also counts (a worker that could not write the file), from PING_AFTER_S
        on: pinging alone cost up to a ping timeout (0.2 s) per attempt made before the worker
        listened, a gevent worker's control consumer can start later than worker_ready, and
        each ping blocks the polling for its 50 ms timeout.
        """
        self._app = app
        deadline = time.monotonic() + timeout
        node = self.node
        ready = False
        next_ping = time.monotonic() + PING_AFTER_S
        while time.monotonic() < deadline:
            if not self.alive():
                raise WorkerFailed(f"{self.exit_reason()} before ready: {self.log_tail()}")
            if not ready:
                ready = self._announced_ready()
            if not ready and time.monotonic() >= next_ping:
                ready = bool(app.control.ping(destination=[node], timeout=0.05))
                next_ping = time.monotonic() + 0.25
            if ready and len(self.registered_pids()) >= expected_exporters(
                self.scenario, self.concurrency
            ):
                self.ready_s = time.monotonic() - self._started
                self.ready_at = time.time()
                return self.ready_s
            time.sleep(0.002)
        raise WorkerFailed(f"worker not ready within {timeout:.0f} s: {self.log_tail()}")

    def _announced_ready(self) -> bool:
        try:
            return self.ready_path.read_text().strip() == str(self.pid)
        except FileNotFoundError:
            return False

    def registered_pids(self) -> set[int]:
        """Processes of this worker with a file_sd target (a shared directory may hold others)."""
        return set(self._registered_targets())

    def _registered_targets(self) -> dict[int, list[str]]:
        """Exporter addresses by pid, of this worker's processes with a file_sd target."""
        tree = set(self.tree())
        return {pid: a for pid, a in addresses_by_pid(self.targets_dir).items() if pid in tree}

    def tree(self) -> list[int]:
        return list_tree(self.pid) if self.alive() else []

    def wait_scraped(self, timeout: float) -> bool:
        """Wait until Prometheus has scraped every exporter of the tree once more; False if not
        within `timeout`. Stopping a worker right after its task would otherwise take its last
        task's gauges with it before any Prometheus watching `targets_dir` saw them."""
        addresses = [a for group in self._registered_targets().values() for a in group]
        seen = {address: _prometheus_scrapes(address) for address in addresses}
        if not seen or min(seen.values()) < 0:
            return False

        def scraped() -> bool:
            if not self.alive():
                raise TimeoutError("worker exited")
            return all(_prometheus_scrapes(a) > n for a, n in seen.items())

        try:
            return wait_for(scraped, timeout=timeout)
        except TimeoutError:
            return False

    def stop(self, timeout: float = 20.0, sig: int = signal.SIGTERM) -> int | None:
        """Stop the worker tree: SIGTERM (warm: waits for a running task), then SIGKILL.

        An idle worker (nothing active or reserved, as the worker itself answers over the
        broker) is killed at once instead: Celery's warm shutdown of an idle worker takes
        1.5-4 s of timeouts (the gevent loop's 2 s drain, the pool's and pidbox threads' 1 s
        polls) and saves nothing a run needs. Its file_sd targets are removed here, as the
        worker would have done. Not knowing (no app from wait_ready, no answer) means warm.
        """
        if self.proc is None:
            return None
        tree = self.tree()
        if sig == signal.SIGTERM and self._idle():
            code = stop(self.proc, timeout=timeout, sig=signal.SIGKILL)
        else:
            code = stop(self.proc, timeout=timeout, sig=sig)
        # Killed pool children, orphaned, are reaped by init, not by us: return once none of
        # them runs any more (a zombie holds no memory, no port, no CPU), as after a warm stop.
        with contextlib.suppress(TimeoutError):
            wait_for(lambda: not any(pid_alive(p) for p in tree), timeout=5.0, interval=0.005)
        self._remove_targets()
        self.ready_path.unlink(missing_ok=True)
        return code

    @property
    def node(self) -> str:
        """The worker's Celery node name, as control commands address it (%h expanded)."""
        return self.hostname.replace("%h", socket.gethostname())

    def _idle(self) -> bool:
        if self._app is None or not self.alive():
            return False
        node = self.node
        inspect = self._app.control.inspect(destination=[node], timeout=0.5)
        # A client's first broadcast is answered before its reply queue is bound, and the answer
        # is lost (kombu's redis mailbox binds it only to collect): ask again once, then the
        # reply arrives in milliseconds. Without it every first stop was a warm one (~4.7 s).
        for _ in range(2):
            try:
                active = (inspect.active() or {}).get(node)
                reserved = (inspect.reserved() or {}).get(node) if active is not None else None
            except Exception:  # no answer is not an answer: warm shutdown
                return False
            if active is not None and reserved is not None:
                return bool(active == [] and reserved == [])
        return False

    def _remove_targets(self) -> None:
        """Targets of this worker's (now dead) processes; a shared directory keeps the others'."""

        job_dir = self.targets_dir / "workers"
        if job_dir.is_dir():
            prune_dead_targets(job_dir)

    def abandon(self) -> int | None:
        """Stop now, dropping a running task: Celery's cold shutdown (SIGQUIT), then SIGKILL."""
        return self.stop(timeout=5.0, sig=signal.SIGQUIT)


def _prometheus_scrapes(address: str) -> int:
    """How many Prometheus scrapes the exporter at host:port has begun; -1 if it does not answer."""
    import urllib.request

    from membench.exporter.server import SCRAPES_HEADER

    try:
        with urllib.request.urlopen(f"http://{address}/", timeout=2.0) as reply:
            return int(reply.headers.get(SCRAPES_HEADER, -1))
    except (OSError, ValueError):
        return -1
