"""`membench stack up|down`: the compose stack's services as local processes, on loopback.

Embedded redis, one worker per scenario, loadgen and Flower always; Prometheus when the
`prometheus` binary is on PATH, Grafana when `grafana-server` is. Same commands as compose.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import membench.grafana
from membench import settings
from membench.processes import (
    Interrupted,
    free_port,
    raise_interrupted,
    spawn,
    stop,
    wait_for,
)
from membench.prometheus import CONFIG_DIR
from membench.stack.state import STATE_FILE, StackError, write_state
from membench.targets import read_targets, write_target

GRAFANA_DIR = Path(membench.grafana.__file__).resolve().parent
FLOWER_COMMAND = [sys.executable, "-m", "celery", "-A", "membench.workers.app", "flower"]
INSTALL_HINTS = {
    "prometheus": "apt-get install --no-install-recommends prometheus",
    "grafana-server": "install Grafana from https://grafana.com/grafana/download (apt repo)",
}


@dataclass
class Service:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    url: str = ""


@dataclass
class Stack:
    """The running services, in start order (stopped in reverse)."""

    directory: Path
    services: list[Service] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)
    broker: Any = None  # the EmbeddedRedis, stopped after every service that uses it

    def add(self, name: str, argv: list[str], env: dict[str, str], url: str = "") -> Service:
        log = self.directory / "logs" / f"{name}.log"
        service = Service(name, spawn(argv, env=env, log_path=log), log, url)
        self.services.append(service)
        return service

    def dead(self) -> list[Service]:
        services = list(self.services)
        if self.broker is not None and self.broker.proc is not None:
            services.append(Service("redis", self.broker.proc, self.directory / "logs/redis.log"))
        return [s for s in services if s.proc.poll() is not None]

    def stop(self) -> None:
        # Signal every service first, then wait: their warm shutdowns (a gevent worker's takes
        # ~4 s) overlap instead of adding up, as compose stops its services.
        for service in reversed(self.services):
            with contextlib.suppress(ProcessLookupError):
                os.kill(service.proc.pid, signal.SIGTERM)
        for service in reversed(self.services):
            stop(service.proc, timeout=20)
        self.services.clear()
        if self.broker is not None:
            self.broker.stop()
            self.broker = None
        (self.directory / STATE_FILE).unlink(missing_ok=True)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _prepare_prometheus_dir(directory: Path) -> Path:
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
    stack = Stack(directory)
    try:
        if broker is None:
            stack.broker = EmbeddedRedis(log_dir=directory / "logs")
            broker = stack.broker.start()
        prometheus_dir = _prepare_prometheus_dir(directory)
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
        if shutil.which("grafana-server") and prometheus_url:
            _start_grafana(stack, prometheus_url)
        else:
            stack.missing["grafana-server"] = INSTALL_HINTS["grafana-server"]

        def ready() -> bool:
            if stack.dead():
                service = stack.dead()[0]
                raise StackError(f"{service.name} exited early; see {service.log}")
            workers = read_targets(targets, "workers")
            roles = {(t["labels"]["scenario"], t["labels"]["role"]) for t in workers}
            return all((name, "main") in roles for name in scenarios) and all(
                _http_ok(s.url if s.name != "flower" else s.url + "/healthcheck")
                for s in stack.services
                if s.url.startswith("http")
            )

        wait_for(ready, timeout=90, interval=0.2, what="every service to be ready")
        for target in read_targets(targets, "workers"):
            if target["labels"]["role"] == "main":
                service_name = f"worker-{target['labels']['scenario']}"
                for service in stack.services:
                    if service.name == service_name:
                        service.url = f"http://{target['targets'][0]}/metrics"
    except BaseException:
        stack.stop()
        raise
    return stack, prometheus_url


def _start_grafana(stack: Stack, prometheus_url: str) -> None:
    port = free_port()
    password = os.environ.get("GRAFANA_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
    home = Path(shutil.which("grafana-server") or "").resolve().parent.parent / "share/grafana"
    env = dict(
        os.environ,
        GF_PATHS_PROVISIONING=str(GRAFANA_DIR / "provisioning"),
        GF_PATHS_DATA=str(stack.directory / "grafana-data"),
        GF_PATHS_LOGS=str(stack.directory / "logs"),
        GF_SERVER_HTTP_ADDR="127.0.0.1",
        GF_SERVER_HTTP_PORT=str(port),
        GF_SECURITY_ADMIN_PASSWORD=password,
        GF_USERS_ALLOW_SIGN_UP="false",
        GF_ANALYTICS_REPORTING_ENABLED="false",
    )
    env[settings.PROMETHEUS_URL] = prometheus_url
    env[settings.GRAFANA_DASHBOARDS_DIR] = str(GRAFANA_DIR / "dashboards")
    argv = ["grafana-server"] + ([f"--homepath={home}"] if home.is_dir() else [])
    stack.add("grafana", argv, env, f"http://127.0.0.1:{port}/api/health")
    if not os.environ.get("GRAFANA_ADMIN_PASSWORD"):
        secret = stack.directory / "grafana-admin-password"
        secret.touch(mode=0o600)  # before writing: never readable by other local users
        secret.write_text(password + "\n")


def summary(stack: Stack, prometheus_url: str | None) -> str:
    lines = ["membench stack is up (Ctrl-C or `membench stack down` stops everything):"]
    if stack.broker is not None:
        from membench.broker import redact  # its URL holds the password: services get it by env

        lines.append(
            f"  {'redis (embedded)':<28} pid {stack.broker.proc.pid:<8} {redact(stack.broker.url)}"
        )
    for service in stack.services:
        url = service.url.removesuffix("/api/health") if service.url else ""
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
    """Start, print the summary, then supervise until Ctrl-C/SIGTERM/--duration or a crash."""
    signal.signal(signal.SIGTERM, raise_interrupted)
    stack, prometheus_url = start_stack(directory, broker, schedule, scenarios)
    exit_code = 0
    try:
        write_state(stack, prometheus_url)
        print(summary(stack, prometheus_url), flush=True)
        deadline = time.monotonic() + duration if duration else None
        while deadline is None or time.monotonic() < deadline:
            dead = stack.dead()
            if dead:
                for service in dead:
                    print(
                        f"membench stack: {service.name} exited with code "
                        f"{service.proc.returncode}; see {service.log}",
                        file=sys.stderr,
                    )
                exit_code = 1
                break
            time.sleep(0.5)  # supervision poll, not synchronisation
    except (KeyboardInterrupt, Interrupted):
        pass
    finally:
        stack.stop()
        print("membench stack: stopped every process", file=sys.stderr, flush=True)
    return exit_code
