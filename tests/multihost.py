"""The multi-host run's cluster: four hosts on one bridge (tests/netns.py) running redis-server,
a prefork worker, a gevent worker, Prometheus and the loadgen, each started as a user would with
`ip netns exec`; and the reads the tests make of it, all from the monitor host.

  redis    redis-server bound to its address, with a password
  prefork  `membench worker prefork_threads --concurrency 2 --metrics-host <its address>`
  gevent   `membench worker gevent_greenlets --metrics-host 0.0.0.0` with
           MEMBENCH_ADVERTISE_HOST=<its address>: the advertised-host path
  monitor  Prometheus (the product's config and rules, 1 s scrapes and evaluations) and
           `membench loadgen` (a wildcard bind, advertised by address)

No part reaches another through loopback: every bind is a host's own address (or all of a
host's addresses), the broker and Prometheus URLs name host addresses, and the workers advertise
theirs in file_sd targets. The namespaces share the filesystem, so the targets directory is the
discovery channel, as in `membench stack up`.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from helpers import prometheus_config
from netns import Host, Network

from membench import settings
from membench.broker import redis_server_executable
from membench.durations import parse_duration
from membench.exporter import names
from membench.processes import stop, wait_for
from membench.workers.scenarios import SCENARIOS

PREFORK, GEVENT = SCENARIOS["prefork_threads"], SCENARIOS["gevent_greenlets"]
PREFORK_CHILDREN = 2
WORKERS_JOB = "membench-workers"  # prometheus/prometheus.yml's job for file_sd "workers"
# The product's alert for a worker whose processes were scraped and are now down or gone.
ABSENT_ALERT = "MembenchWorkerAbsent"
# Its `for:` in the test's copy of the rules, when the product's is longer.
ALERT_FOR_S = 30
PROMETHEUS_PORT, REDIS_PORT = 9090, 6379  # each host has its own ports: no collision
SCHEDULE = f"""
[defaults]
subtasks = 2
size_mb = 1.0
hold_s = 0.2
workers = 2
period_s = 2
jitter_s = 0.2
[scenarios.{GEVENT.name}]
"""
LOADGEN_RUNS = 4
TASK_RECEIVED = f"Task {names.BENCHMARK_TASK}["  # Celery's log line as a worker gets a task


@dataclass
class Cluster:
    network: Network
    redis: Host
    prefork: Host
    gevent: Host
    monitor: Host
    directory: Path
    targets_dir: Path
    has_absent_alert: bool
    env: dict[str, str]  # what every membench process on any host is given
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def prometheus(self) -> str:
        return f"http://{self.monitor.address}:{PROMETHEUS_PORT}"

    def api(self, path: str, **params: str) -> Any:
        """A Prometheus API answer's data, fetched from the monitor host (None if none)."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        body = self.monitor.fetch(f"{self.prometheus}/api/v1/{path}{query}")
        if body is None:
            return None
        answer = json.loads(body)
        return answer["data"] if answer.get("status") == "success" else None

    def query(self, promql: str) -> list[dict[str, Any]]:
        data = self.api("query", query=promql)
        return data["result"] if data else []

    def worker_targets(self) -> list[dict[str, Any]]:
        data = self.api("targets", state="active")
        return [
            t for t in (data or {}).get("activeTargets", []) if t["labels"]["job"] == WORKERS_JOB
        ]

    def firing(self, alert: str) -> list[dict[str, str]]:
        data = self.api("alerts") or {"alerts": []}
        return [
            a["labels"]
            for a in data["alerts"]
            if a["labels"].get("alertname") == alert and a["state"] == "firing"
        ]

    def start(self, name: str, host: Host, argv: list[str], **env: str) -> subprocess.Popen[bytes]:
        proc = host.spawn(argv, self.env | env, self.directory / f"{name}.log")
        self.procs[name] = proc
        return proc

    def log(self, name: str, tail: int = 3000) -> str:
        path = self.directory / f"{name}.log"
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""

    def loadgen(
        self, name: str, *args: str, prefork_hold_s: float = 0.2
    ) -> subprocess.Popen[bytes]:
        schedule = self.directory / f"{name}.toml"
        schedule.write_text(SCHEDULE + f"[scenarios.{PREFORK.name}]\nhold_s = {prefork_hold_s}\n")
        argv = [*membench_argv("loadgen"), "--schedule", str(schedule), *args]
        # A wildcard bind advertised by address, as the gevent worker's.
        argv += ["--metrics-host", "0.0.0.0", "--metrics-port", "0"]
        return self.start(
            name, self.monitor, argv, **{settings.ADVERTISE_HOST: self.monitor.address}
        )

    def wait_all_workers_up(self) -> list[dict[str, Any]]:
        """The worker targets once every worker process is scraped and up."""
        expected = PREFORK_CHILDREN + 2  # the prefork main, its children, the gevent worker

        def all_up() -> list[dict[str, Any]] | None:
            for name, proc in self.procs.items():
                if name.startswith("loadgen"):
                    continue  # a loadgen ends when its runs are done
                assert proc.poll() is None, f"{name} exited {proc.returncode}: {self.log(name)}"
            targets = self.worker_targets()
            up = [t for t in targets if t["health"] == "up"]
            return targets if len(targets) == expected and len(up) == expected else None

        return wait_for(all_up, 120, interval=0.5, what="every worker process scraped")


def membench_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "membench", *args]


def clean_environment() -> dict[str, str]:
    """Ours without broker or membench settings: each process gets exactly what it is told."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MEMBENCH_") and k != "CELERY_BROKER_URL"
    }


def hasten_alert(rules_dir: Path, alert: str, for_s: int) -> bool:
    """In the rules copy, cap `alert`'s `for:` at `for_s` and its group's evaluation interval
    at the global one (1 s); the expression, labels and annotations stay the product's. False
    if no rule defines the alert."""
    found = False
    for path in sorted(rules_dir.glob("*.yml")):
        document = yaml.safe_load(path.read_text())
        for group in document.get("groups", []):
            if not any(rule.get("alert") == alert for rule in group.get("rules", [])):
                continue
            found = True
            group.pop("interval", None)
            for rule in group["rules"]:
                if rule.get("alert") == alert and parse_duration(rule.get("for", "1s")) > for_s:
                    rule["for"] = f"{for_s}s"
            path.write_text(yaml.safe_dump(document, sort_keys=False))
    return found


def start_redis(cluster: Cluster, password: str) -> None:
    config = cluster.directory / "redis.conf"
    lines = [f"bind {cluster.redis.address}", f"port {REDIS_PORT}", 'save ""', "appendonly no"]
    lines += [f'dir "{cluster.directory}"', f"requirepass {password}"]
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("\n".join(lines) + "\n")
    cluster.start("redis", cluster.redis, [redis_server_executable(), str(config)])
    ping = "import os, redis; redis.Redis.from_url(os.environ['U'], socket_timeout=2).ping()"
    url = cluster.env[settings.BROKER_URL]

    def answers() -> bool:
        done = cluster.monitor.run([sys.executable, "-c", ping], env=cluster.env | {"U": url})
        return done.returncode == 0

    wait_for(answers, 60, interval=0.3, what=f"redis-server on {cluster.redis.address}")


@contextmanager
def running_cluster(directory: Path, prometheus: str) -> Iterator[Cluster]:
    """Every host and part up (the workers not necessarily scraped yet); all gone at the end."""
    config = prometheus_config(directory, "1s")
    text = (config / "prometheus.yml").read_text()
    (config / "prometheus.yml").write_text(
        text.replace("evaluation_interval: 5s", "evaluation_interval: 1s")
    )
    has_absent_alert = hasten_alert(config / "rules", ABSENT_ALERT, ALERT_FOR_S)
    with Network() as network:
        hosts = [network.add_host(label) for label in ("redis", "prefork", "gevent", "monitor")]
        password = secrets.token_urlsafe(24)
        env = clean_environment() | {
            settings.BROKER_URL: f"redis://:{password}@{hosts[0].address}:{REDIS_PORT}/0",
            settings.TARGETS_DIR: str(config / "targets"),
            "PYTHONUNBUFFERED": "1",
        }
        cluster = Cluster(network, *hosts, directory, config / "targets", has_absent_alert, env)
        try:
            start_redis(cluster, password)
            cluster.start(
                "prometheus",
                cluster.monitor,
                [
                    prometheus,
                    f"--config.file={config / 'prometheus.yml'}",
                    f"--storage.tsdb.path={directory / 'tsdb'}",
                    f"--web.listen-address={cluster.monitor.address}:{PROMETHEUS_PORT}",
                ],
            )
            worker = membench_argv("worker")
            prefork_bind = ["--metrics-host", cluster.prefork.address, "--metrics-port", "0"]
            cluster.start(
                "worker-prefork",
                cluster.prefork,
                [*worker, PREFORK.name, "--concurrency", str(PREFORK_CHILDREN), *prefork_bind],
            )
            cluster.start(
                "worker-gevent",
                cluster.gevent,
                [*worker, GEVENT.name, "--metrics-host", "0.0.0.0", "--metrics-port", "0"],
                **{settings.ADVERTISE_HOST: cluster.gevent.address},
            )
            yield cluster
        finally:
            for proc in reversed(cluster.procs.values()):
                stop(proc, timeout=10)


def loadgen_summary(output: str) -> dict[str, list[int]]:
    """The loadgen's closing table: fired, success, failure, timeout, skipped by scenario."""
    rows = re.findall(r"^(\S+)((?:\s+\d+){5})$", output, re.MULTILINE)
    return {scenario: [int(n) for n in counts.split()] for scenario, counts in rows}


def children(pid: int) -> list[str]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return path.read_text().split() if path.exists() else []
