"""A real multi-host run on this machine (issue 20 item 5): four hosts, each a network namespace
with its own address and hostname on one bridge, every part started as a user would start it
there with `ip netns exec`:

  redis    redis-server bound to its address, with a password
  prefork  `membench worker prefork_threads --concurrency 2 --metrics-host <its address>`
  gevent   `membench worker gevent_greenlets --metrics-host 0.0.0.0` with
           MEMBENCH_ADVERTISE_HOST=<its address>: the advertised-host path
  monitor  Prometheus (the product's config and rules, 1 s scrapes) and `membench loadgen`

No part reaches another through loopback: every bind is a host's own address (or, on the gevent
host, all of its addresses), the broker URL and Prometheus URL name host addresses, and the
workers advertise theirs in file_sd targets. The namespaces share the filesystem, so the
targets directory is the discovery channel, as in `membench stack up`.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import prometheus_config, require_binary
from netns import Host, Network, ip, why_no_namespaces

from membench import settings
from membench.broker import redis_server_executable
from membench.exporter import names
from membench.processes import stop, wait_for
from membench.targets import addresses_by_pid
from membench.workers.scenarios import SCENARIOS

PREFORK, GEVENT = SCENARIOS["prefork_threads"], SCENARIOS["gevent_greenlets"]
PREFORK_CHILDREN = 2
WORKERS_JOB = "membench-workers"  # prometheus/prometheus.yml's job for file_sd "workers"
# The product's alert for a worker whose processes were scraped and are now down or gone.
ABSENT_ALERT = "MembenchWorkerAbsent"
# Its `for:` in the test's copy of the rules, when the product's is longer: the expression,
# labels and annotations stay the product's.
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


def membench_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "membench", *args]


def clean_environment() -> dict[str, str]:
    """Ours without broker or membench settings: each process gets exactly what it is told."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MEMBENCH_") and k != "CELERY_BROKER_URL"
    }


def shorten_alert_for(rules_dir: Path, alert: str, at_most_s: int) -> bool:
    """Cap `alert`'s `for:` in the rules copy at `at_most_s`; False if no rule defines it."""
    found = False
    for path in sorted(rules_dir.glob("*.yml")):
        document = yaml.safe_load(path.read_text())
        for group in document.get("groups", []):
            for rule in group.get("rules", []):
                if rule.get("alert") == alert:
                    found = True
                    if duration_s(rule.get("for", "0s")) > at_most_s:
                        rule["for"] = f"{at_most_s}s"
                        path.write_text(yaml.safe_dump(document, sort_keys=False))
    return found


def duration_s(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+)(ms|[smhdwy])", str(text)))


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


def stop_all(cluster: Cluster) -> None:
    for proc in reversed(cluster.procs.values()):
        stop(proc, timeout=10)


def test_every_exporter_advertises_membench_advertise_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers and the loadgen alike: a wildcard bind is registered under the advertised host."""
    from prometheus_client import CollectorRegistry

    from membench.exporter.server import start_exporter

    monkeypatch.setenv(settings.ADVERTISE_HOST, "10.1.2.3")
    exporter = start_exporter(CollectorRegistry(), "127.0.0.1", targets_dir=tmp_path, job="loadgen")
    try:
        (entry,) = json.loads(next((tmp_path / "loadgen").glob("*.json")).read_text())
        assert entry["targets"] == [f"10.1.2.3:{exporter.port}"]
    finally:
        exporter.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    reason = why_no_namespaces("unshare", "ss")
    if reason:
        pytest.skip(reason)
    prometheus = require_binary("prometheus")
    directory = tmp_path_factory.mktemp("multihost")
    config = prometheus_config(directory, "1s")
    text = (config / "prometheus.yml").read_text()
    (config / "prometheus.yml").write_text(
        text.replace("evaluation_interval: 5s", "evaluation_interval: 1s")
    )
    has_absent_alert = shorten_alert_for(config / "rules", ABSENT_ALERT, ALERT_FOR_S)
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
            stop_all(cluster)


def wait_all_workers_up(cluster: Cluster) -> list[dict[str, Any]]:
    expected = PREFORK_CHILDREN + 2  # the prefork main, its children, the gevent worker

    def all_up() -> list[dict[str, Any]] | None:
        for name, proc in cluster.procs.items():
            if name.startswith("loadgen"):
                continue  # a loadgen ends when its runs are done
            assert proc.poll() is None, f"{name} exited {proc.returncode}: {cluster.log(name)}"
        targets = cluster.worker_targets()
        up = [t for t in targets if t["health"] == "up"]
        return targets if len(targets) == expected and len(up) == expected else None

    return wait_for(all_up, 120, interval=0.5, what="every worker process scraped")


@pytest.mark.slow
def test_every_worker_process_is_scraped_across_the_network_by_its_advertised_address(
    cluster: Cluster,
) -> None:
    targets = wait_all_workers_up(cluster)
    by_host: dict[str, list[str]] = {}
    for target in targets:
        address = urllib.parse.urlsplit(target["scrapeUrl"]).netloc
        assert target["labels"]["instance"] == address, target
        by_host.setdefault(address.rpartition(":")[0], []).append(target["labels"]["role"])
    assert not [h for h in by_host if h.startswith("127.") or h in ("localhost", "0.0.0.0")]
    assert sorted(by_host[cluster.prefork.address]) == ["child"] * PREFORK_CHILDREN + ["main"]
    assert by_host[cluster.gevent.address] == ["main"]
    assert set(by_host) == {cluster.prefork.address, cluster.gevent.address}

    # Scraped data, not only `up`: every process's memory, prefork children included.
    rss = cluster.query(f'{names.PROCESS_RSS_BYTES}{{job="{WORKERS_JOB}"}}')
    seen = {(s["metric"]["instance"], s["metric"]["role"]) for s in rss}
    assert seen == {(t["labels"]["instance"], t["labels"]["role"]) for t in targets}

    # Each host registered its targets under its own hostname (file_sd files are
    # <hostname>_<pid>.json), and the pid is the worker's or its children's.
    worker_files = {p.name.rpartition("_")[0] for p in (cluster.targets_dir / "workers").glob("*")}
    assert worker_files == {cluster.prefork.hostname, cluster.gevent.hostname}

    # Binds: the prefork worker and redis on their host's address only; the gevent worker on
    # all of its host's addresses, as told; nothing of theirs on loopback alone.
    prefork_ports = cluster.prefork.listening()
    assert prefork_ports and all(
        a.startswith(f"{cluster.prefork.address}:") for a in prefork_ports
    ), prefork_ports
    assert cluster.redis.listening() == {f"{cluster.redis.address}:{REDIS_PORT}"}
    assert all(a.startswith("0.0.0.0:") for a in cluster.gevent.listening())
    assert f"{cluster.monitor.address}:{PROMETHEUS_PORT}" in cluster.monitor.listening()


@pytest.fixture(scope="module")
def loadgen_run(cluster: Cluster) -> subprocess.CompletedProcess[str]:
    """`membench loadgen --runs N` on the monitor host against both workers, to its end."""
    wait_all_workers_up(cluster)
    proc = cluster.loadgen("loadgen", "--runs", str(LOADGEN_RUNS))
    try:
        proc.wait(180)
    except subprocess.TimeoutExpired:
        stop(proc)
        pytest.fail(f"loadgen did not finish: {cluster.log('loadgen')}")
    log = cluster.log("loadgen", tail=1 << 20)
    return subprocess.CompletedProcess(proc.args, proc.returncode, log, "")


@pytest.mark.slow
def test_a_loadgen_run_completes_across_the_network(
    cluster: Cluster, loadgen_run: subprocess.CompletedProcess[str]
) -> None:
    output = loadgen_run.stdout
    assert loadgen_run.returncode == 0, output
    summary = loadgen_summary(output)
    for scenario in (PREFORK.name, GEVENT.name):
        fired, success, failure, timeout, _ = summary[scenario]
        assert (fired, success, failure, timeout) == (LOADGEN_RUNS, LOADGEN_RUNS, 0, 0), output
    # What Prometheus scraped from the loadgen across the network says success too.
    scraped = cluster.query(
        f"max by (instance, scenario, outcome) (max_over_time({names.LOADGEN_RUNS_TOTAL}[10m]))"
    )
    counts = {
        (s["metric"]["scenario"], s["metric"]["outcome"]): float(s["value"][1]) for s in scraped
    }
    for scenario in (PREFORK.name, GEVENT.name):
        assert counts[(scenario, "success")] >= 1, counts
        assert counts[(scenario, "failure")] == counts[(scenario, "timeout")] == 0, counts
    assert {s["metric"]["instance"].rpartition(":")[0] for s in scraped} == {
        cluster.monitor.address
    }
    # And so do the workers, on their own hosts (their last run within a scrape or two).
    runs = f'sum by (scenario) ({names.TASK_RUNS_TOTAL}{{task="{names.BENCHMARK_TASK}"}})'

    def successes() -> dict[str, float]:
        found = cluster.query(runs.replace("}", ',outcome="success"}', 1))
        return {s["metric"]["scenario"]: float(s["value"][1]) for s in found}

    every_run = {PREFORK.name: LOADGEN_RUNS, GEVENT.name: LOADGEN_RUNS}
    wait_for(lambda: successes() == every_run, 30, interval=0.5, what="the workers' successes")
    assert {s["metric"]["scenario"] for s in cluster.query(runs)} == set(every_run)
    outcomes = cluster.query(runs.replace("}", ',outcome!="success"}', 1) + " > 0")
    assert not outcomes, outcomes


@pytest.mark.slow
def test_membench_report_reads_the_runs_from_prometheus_across_the_network(
    cluster: Cluster, loadgen_run: subprocess.CompletedProcess[str]
) -> None:
    output = cluster.directory / "report"
    # From the redis host: Prometheus is reached only by the monitor's address.
    argv = membench_argv("report", "--prometheus", cluster.prometheus, "--last", "10m")
    result = cluster.redis.run([*argv, "--output", str(output)], env=cluster.env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BENCHMARK RESULTS" in result.stdout
    for scenario in (PREFORK, GEVENT):
        (row,) = [line for line in result.stdout.splitlines() if line.startswith(scenario.label)][
            :1
        ]
        assert re.search(r"\d+\.\d\d\s+\d+\.\d\d$", row), row
    assert (output / "report.json").is_file()


@pytest.mark.slow
def test_a_worker_told_no_address_binds_loopback_and_no_other_host_reaches_it(
    cluster: Cluster,
) -> None:
    scenario = SCENARIOS["solo_threads"]  # a queue the loadgen does not fire at
    proc = cluster.start(
        "worker-default", cluster.gevent, [*membench_argv("worker"), scenario.name]
    )
    targets = cluster.targets_dir
    addresses = wait_for(lambda: addresses_by_pid(targets).get(proc.pid), 60, what="its target")
    assert [a.rpartition(":")[0] for a in addresses] == ["127.0.0.1"]
    assert addresses[0] in cluster.gevent.listening()

    def scraped_down() -> bool:
        found = [t for t in cluster.worker_targets() if t["labels"]["instance"] == addresses[0]]
        return bool(found) and found[0]["health"] == "down"

    # Prometheus, on another host, finds the target and cannot scrape it.
    wait_for(scraped_down, 60, interval=0.5, what="its target scraped and down")
    stop(cluster.procs.pop("worker-default"))
    assert proc.pid not in addresses_by_pid(targets)  # a stopped worker deregisters


@pytest.mark.slow
def test_a_vanished_worker_host_fires_the_absent_alert_and_leaves_no_process(
    cluster: Cluster,
) -> None:
    assert cluster.has_absent_alert, f"prometheus/rules define no alert {ABSENT_ALERT}"
    targets = wait_all_workers_up(cluster)
    prefork_instances = {
        t["labels"]["instance"]
        for t in targets
        if t["labels"]["instance"].startswith(f"{cluster.prefork.address}:")
    }
    # Mid-run: the host vanishes while its worker holds a task the loadgen waits for.
    received_before = cluster.log("worker-prefork", tail=1 << 24).count(TASK_RECEIVED)
    loadgen = cluster.loadgen("loadgen-continuous", prefork_hold_s=30)

    def task_received() -> bool:
        return cluster.log("worker-prefork", tail=1 << 24).count(TASK_RECEIVED) > received_before

    wait_for(task_received, 60, interval=0.2, what="a task received by the prefork worker")

    worker = cluster.procs.pop("worker-prefork")
    tree = {worker.pid, *(int(p) for p in _children(worker.pid))}
    killed = cluster.network.remove_host(cluster.prefork)  # by pid, then the namespace goes
    worker.wait(10)
    assert tree <= set(killed), (tree, killed)
    assert cluster.prefork.processes_inside() == []
    assert cluster.prefork.name not in ip("netns", "list").stdout
    assert cluster.prefork.port_on_bridge not in cluster.network.bridge_ports()

    def vanished(alert: dict[str, str]) -> bool:
        """The alert is about the torn-down host: its instance, or its scenario when the rule
        aggregates instances away."""
        if "instance" in alert:
            return alert["instance"] in prefork_instances
        return alert.get("scenario") == PREFORK.name

    def fired() -> list[dict[str, str]]:
        return [a for a in cluster.firing(ABSENT_ALERT) if vanished(a)]

    wait_for(fired, ALERT_FOR_S + 120, interval=1, what=f"{ABSENT_ALERT} firing")
    others = [a for a in cluster.firing(ABSENT_ALERT) if not vanished(a)]
    assert not others, others  # the gevent host is still there

    # The loadgen reports the run the vanished host never finished: never silently lost.
    loadgen.send_signal(signal.SIGTERM)
    assert loadgen.wait(60) == 1, cluster.log("loadgen-continuous")
    output = cluster.log("loadgen-continuous", tail=1 << 20)
    assert loadgen_summary(output)[PREFORK.name][3] >= 1, output  # its timeout column


def loadgen_summary(output: str) -> dict[str, list[int]]:
    """The loadgen's closing table: fired, success, failure, timeout, skipped by scenario."""
    rows = re.findall(r"^(\S+)((?:\s+\d+){5})$", output, re.MULTILINE)
    return {scenario: [int(n) for n in counts.split()] for scenario, counts in rows}


def _children(pid: int) -> list[str]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return path.read_text().split() if path.exists() else []
