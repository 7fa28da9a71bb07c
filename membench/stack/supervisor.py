"""`membench stack up|down`: the compose stack's services as local processes, on loopback.

Embedded redis, one worker per scenario, loadgen and Flower always; Prometheus when the
`prometheus` binary is on PATH, Alertmanager (with Prometheus) when `prometheus-alertmanager`
or `alertmanager` is, Grafana when `grafana-server` is. Same commands as compose, and
the same `restart: unless-stopped` (membench/stack/restarts.py).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from membench import settings
from membench.descendants import Adopter, Escaped
from membench.processes import (
    Interrupted,
    catch_stop_signals,
    free_port,
    spawn,
    stop,
    wait_for,
)
from membench.prometheus import CONFIG_DIR
from membench.stack.monitoring import alertmanager_binary, start_alertmanager, start_grafana
from membench.stack.restarts import CrashLoop, Restart, RestartPolicy, describe_exit
from membench.stack.state import STATE_FILE, ServiceState, StackError, write_state
from membench.targets import addresses_by_pid, read_targets, write_target

FLOWER_COMMAND = [sys.executable, "-m", "celery", "-A", "membench.workers.app", "flower"]
INSTALL_HINTS = {
    "prometheus": "apt-get install --no-install-recommends prometheus",
    "prometheus-alertmanager": "apt-get install --no-install-recommends prometheus-alertmanager",
    "grafana-server": "install Grafana from https://grafana.com/grafana/download (apt repo)",
}


@dataclass
class Service:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    url: str = ""
    argv: list[str] = field(default_factory=list)  # what a restart runs again
    env: dict[str, str] | None = None
    started: float = field(default_factory=time.monotonic)


@dataclass
class Stack:
    """The running services, in start order (stopped in reverse)."""

    directory: Path
    services: list[Service] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)
    broker: Any = None  # the EmbeddedRedis, stopped after every service that uses it
    redis: Service | None = None  # the embedded redis-server's process, supervised like a service
    restarts: list[Restart] = field(default_factory=list)
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    # Adopts every orphan of the services: what escaped one is killed at the stop, and said.
    adopter: Adopter | None = None
    escaped: list[Escaped] = field(default_factory=list)

    def add(self, name: str, argv: list[str], env: dict[str, str], url: str = "") -> Service:
        log = self.directory / "logs" / f"{name}.log"
        service = Service(name, spawn(argv, env=env, log_path=log), log, url, argv, env)
        self.services.append(service)
        return service

    def watched(self) -> list[Service]:
        """Every supervised process, the embedded redis-server first: a service that died with
        it restarts against a broker that is back."""
        return ([self.redis] if self.redis is not None else []) + self.services

    def record(self, prometheus_url: str | None) -> None:
        """Write stack.json: this process, and the pid and URL of every supervised service."""
        services = {s.name: ServiceState(pid=s.proc.pid, url=s.url) for s in self.watched()}
        write_state(self.directory, prometheus_url, services, self.restarts)

    def dead(self) -> list[Service]:
        return [s for s in self.watched() if s.proc.poll() is not None]

    def restart_dead(self) -> list[Restart]:
        """Restart each dead service whose back-off is over, as compose's `restart:
        unless-stopped` does; every restart is said on stderr and kept in `restarts`.
        Raises CrashLoop when one keeps dying right after it starts."""
        from membench.broker import BrokerError  # redis-py: not loaded by `stack down`

        done = []
        for service in self.dead():
            now = time.monotonic()
            if self.policy.on_death(service.name, now - service.started, now) > now:
                continue
            died_at, ran_s = self.policy.noticed[service.name]
            record = Restart(
                service.name,
                service.proc.pid,
                describe_exit(service.proc.returncode),
                round(ran_s, 3),
                died_at,
            )
            try:
                self._respawn(service)
                record.restarted_at, record.new_pid = time.time(), service.proc.pid
            except (OSError, BrokerError) as exc:
                record.error = str(exc)  # tried again on the next pass, backed off
            self.policy.restarted(service.name)
            service.started = time.monotonic()
            self.restarts.append(record)
            done.append(record)
            again = f"restarted as pid {record.new_pid}" if record.new_pid else record.error
            print(
                f"membench stack: {service.name} (pid {record.old_pid}) {record.exit} after "
                f"{record.ran_s:.1f} s; {again} (restart {self.restart_count(service.name)}; "
                f"see {service.log})",
                file=sys.stderr,
                flush=True,
            )
        return done

    def find_worker_urls(self) -> bool:
        """Fill each worker's main exporter URL from its target file; True if one changed."""
        changed = False
        missing = [s for s in self.services if s.name.startswith("worker-") and not s.url]
        if not missing:
            return False  # the supervision loop asks twice a second: no directory read then
        # The file's name carries the pid: `membench worker` execs Celery, so it is the service's.
        by_pid = addresses_by_pid(self.directory / "prometheus" / "targets")
        for service in missing:
            addresses = by_pid.get(service.proc.pid)
            if addresses:
                service.url = f"http://{addresses[0]}/metrics"
                changed = True
        return changed

    def restart_count(self, name: str) -> int:
        """The service's restarts that started a new process (failed attempts are not)."""
        return sum(1 for r in self.restarts if r.service == name and r.new_pid is not None)

    def _respawn(self, service: Service) -> None:
        if service is self.redis:
            # Same port and password: workers, loadgen and Flower reconnect to the URL they have.
            # restart() reaps the dead process itself.
            self.broker.restart()
            service.proc = self.broker.proc
            return
        stop(service.proc, timeout=5)  # reaps it, and ends what it left in its process group
        service.proc = spawn(service.argv, env=service.env, log_path=service.log)
        if service.name.startswith("worker-"):
            service.url = ""  # its exporter port is new: found again from its target file

    def stop(self) -> None:
        # Signal every service first, then wait: their warm shutdowns (a gevent worker's takes
        # ~4 s) overlap instead of adding up, as compose stops its services.
        for service in reversed(self.services):
            with contextlib.suppress(ProcessLookupError):
                os.kill(service.proc.pid, signal.SIGTERM)
        for service in reversed(self.services):
            # sig=0: wait, never signal twice. A second SIGTERM ends the loadgen at once (its
            # way out of a grace period), losing its runs in flight and its summary.
            stop(service.proc, timeout=20, sig=0)
        # Each service led its own process group, killed whole by `stop`.
        groups = {service.proc.pid for service in self.services}
        self.services.clear()
        if self.broker is not None:
            self.broker.stop()
            self.broker = None
            self.redis = None
        if self.adopter is not None:
            self.escaped += self.adopter.end_strays(stopped=groups)
        (self.directory / STATE_FILE).unlink(missing_ok=True)


def http_ok(url: str) -> bool:
    """The URL answers 200 within a second."""
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def prepare_prometheus_dir(directory: Path) -> Path:
    """A copy of prometheus/ (config + rules) whose targets/ the local exporters write into."""
    source = CONFIG_DIR
    if not (source / "prometheus.yml").exists():
        raise StackError(f"{source}/prometheus.yml not found: the installed package is incomplete")
    copy = directory / "prometheus"
    shutil.rmtree(copy, ignore_errors=True)
    ignored = shutil.ignore_patterns("targets", "compose-targets", "*.py", "__pycache__")
    shutil.copytree(source, copy, ignore=ignored)
    (copy / "targets").mkdir()
    return copy


MEMBENCH_COMMAND = [sys.executable, "-m", "membench"]


def service_commands(
    schedule: Path, scenarios: list[str], loadgen_port: int, flower_port: int
) -> dict[str, list[str]]:
    """The Python services' commands: docker-compose.yml runs the same ones (a test checks)."""
    commands = {
        f"worker-{name}": [*MEMBENCH_COMMAND, "worker", name, "--metrics-port", "0"]
        for name in scenarios
    }
    commands["loadgen"] = [
        *MEMBENCH_COMMAND,
        "loadgen",
        "--schedule",
        str(schedule),
        "--metrics-port",
        str(loadgen_port),
        # Only the scenarios that have a worker: others would time out every period.
        "--scenarios",
        ",".join(scenarios),
    ]
    commands["flower"] = [*FLOWER_COMMAND, "--address=127.0.0.1", f"--port={flower_port}"]
    return commands


def start_stack(
    directory: Path, broker: str | None, schedule: Path, scenarios: list[str]
) -> tuple[Stack, str | None]:
    """Start every service and wait until each is ready; on any failure stop what started."""
    from membench.broker import EmbeddedRedis

    (directory / "logs").mkdir(parents=True, exist_ok=True)
    stack = Stack(directory, adopter=Adopter())
    try:
        if broker is None:
            stack.broker = EmbeddedRedis(log_dir=directory / "logs")
            broker = stack.broker.start()
            stack.redis = Service("redis", stack.broker.proc, directory / "logs" / "redis.log")
        prometheus_dir = prepare_prometheus_dir(directory)
        targets = prometheus_dir / "targets"
        env = dict(os.environ)
        env.update({settings.BROKER_URL: broker, settings.TARGETS_DIR: str(targets)})
        env["PYTHONUNBUFFERED"] = "1"
        loadgen_port, flower_port = free_port(), free_port()
        urls = {
            "loadgen": f"http://127.0.0.1:{loadgen_port}/metrics",
            "flower": f"http://127.0.0.1:{flower_port}",
        }
        for name, argv in service_commands(schedule, scenarios, loadgen_port, flower_port).items():
            stack.add(name, argv, env, urls.get(name, ""))
        write_target(targets / "flower", f"127.0.0.1:{flower_port}", {})
        prometheus_url = None
        if shutil.which("prometheus"):
            port = free_port()
            prometheus_url = f"http://127.0.0.1:{port}"
            write_target(targets / "prometheus", f"127.0.0.1:{port}", {})
            stack.add(
                "prometheus",
                [
                    "prometheus",
                    f"--config.file={prometheus_dir / 'prometheus.yml'}",
                    f"--storage.tsdb.path={directory / 'prometheus-data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                env,
                prometheus_url,
            )
        else:
            stack.missing["prometheus"] = INSTALL_HINTS["prometheus"]
        binary = alertmanager_binary()
        if binary and prometheus_url:
            start_alertmanager(stack, binary, targets / "alertmanager")
        else:
            stack.missing["prometheus-alertmanager"] = INSTALL_HINTS["prometheus-alertmanager"]
        if shutil.which("grafana-server") and prometheus_url:
            start_grafana(stack, prometheus_url)
        else:
            stack.missing["grafana-server"] = INSTALL_HINTS["grafana-server"]

        def ready() -> bool:
            if stack.dead():
                service = stack.dead()[0]
                raise StackError(f"{service.name} exited early; see {service.log}")
            workers = read_targets(targets, "workers")
            roles = {(t["labels"]["scenario"], t["labels"]["role"]) for t in workers}
            return all((name, "main") in roles for name in scenarios) and all(
                http_ok(s.url if s.name != "flower" else s.url + "/healthcheck")
                for s in stack.services
                if s.url.startswith("http")
            )

        wait_for(ready, timeout=90, interval=0.2, what="every service to be ready")
        stack.find_worker_urls()
    except BaseException:
        stack.stop()
        raise
    return stack, prometheus_url


def summary(stack: Stack, prometheus_url: str | None) -> str:
    lines = ["membench stack is up (Ctrl-C or `membench stack down` stops everything):"]
    if stack.broker is not None:
        from membench.broker import redact  # its URL holds the password: services get it by env

        lines.append(
            f"  {'redis (embedded)':<28} pid {stack.broker.proc.pid:<8} {redact(stack.broker.url)}"
        )
    for service in stack.services:
        url = service.url.removesuffix("/api/health").removesuffix("/-/ready")
        lines.append(f"  {service.name:<28} pid {service.proc.pid:<8} {url}")
    if prometheus_url:
        lines.append(f"  targets:  {prometheus_url}/targets    rules: {prometheus_url}/rules")
    for binary, hint in stack.missing.items():
        lines.append(f"  not started: {binary} is not on PATH ({hint})")
    if (stack.directory / "grafana-admin-password").exists():
        lines.append(f"  grafana admin password: {stack.directory / 'grafana-admin-password'}")
    lines.append(f"  logs: {stack.directory / 'logs'}")
    return "\n".join(lines)


def run_stack(
    directory: Path,
    broker: str | None,
    schedule: Path,
    scenarios: list[str],
    duration: float | None,
) -> int:
    """Start, print the summary, then supervise (a service that dies is restarted, said and
    recorded) until Ctrl-C/SIGTERM/SIGHUP/--duration, or a crash loop (exit 1)."""
    catch_stop_signals()
    stack, prometheus_url = start_stack(directory, broker, schedule, scenarios)
    exit_code = 0
    try:
        stack.record(prometheus_url)
        print(summary(stack, prometheus_url), flush=True)
        deadline = time.monotonic() + duration if duration else None
        while deadline is None or time.monotonic() < deadline:
            try:
                restarted = stack.restart_dead()
            except CrashLoop as exc:
                print(f"membench stack: {exc}; stopping the stack", file=sys.stderr)
                exit_code = 1
                break
            if stack.find_worker_urls() or restarted:
                stack.record(prometheus_url)  # `stack down` and soaks read today's pids
            time.sleep(0.5)  # supervision poll, not synchronisation
    except (KeyboardInterrupt, Interrupted):
        pass
    finally:
        stack.stop()
        print(
            f"membench stack: stopped every process{_restart_summary(stack)}",
            file=sys.stderr,
            flush=True,
        )
    if stack.escaped:
        described = "; ".join(e.describe() for e in stack.escaped)
        print(
            f"membench stack: {len(stack.escaped)} process(es) had escaped their service "
            f"(a new session or process group) and ran on after it stopped, killed: {described}",
            file=sys.stderr,
        )
        exit_code = 1
    return exit_code


def _restart_summary(stack: Stack) -> str:
    """'' or '; 2 restart(s) while up: redis 1, worker-gevent_greenlets 1' (never silent)."""
    done = Counter(r.service for r in stack.restarts if r.new_pid is not None)
    failed = len(stack.restarts) - done.total()
    said = ""
    if done:
        listed = ", ".join(f"{name} {n}" for name, n in sorted(done.items()))
        said += f"; {done.total()} restart(s) while up: {listed}"
    if failed:
        said += f"; {failed} restart attempt(s) failed (see stack.json)"
    return said
