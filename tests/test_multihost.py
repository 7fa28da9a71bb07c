"""A real multi-host run on this machine (issue 20 item 5): four hosts as network namespaces on
one bridge, each part started there as a user would (tests/multihost.py says which where). Every
worker process is scraped across the network by its advertised address, a loadgen run completes,
`membench report` reads it back, a worker told no address stays on loopback, and a worker host
torn down mid-run fires the vanished-worker alert and leaves no process behind.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import require_binary
from multihost import (
    ABSENT_ALERT,
    ALERT_FOR_S,
    GEVENT,
    LOADGEN_RUNS,
    PREFORK,
    PREFORK_CHILDREN,
    PROMETHEUS_PORT,
    REDIS_PORT,
    TASK_RECEIVED,
    WORKERS_JOB,
    Cluster,
    children,
    loadgen_summary,
    membench_argv,
    running_cluster,
)
from netns import ip, why_no_namespaces

from membench import settings
from membench.exporter import names
from membench.processes import stop, wait_for
from membench.targets import addresses_by_pid
from membench.workers.scenarios import SCENARIOS


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
    with running_cluster(tmp_path_factory.mktemp("multihost"), prometheus) as cluster:
        yield cluster


@pytest.mark.slow
def test_every_worker_process_is_scraped_across_the_network_by_its_advertised_address(
    cluster: Cluster,
) -> None:
    targets = cluster.wait_all_workers_up()
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
    cluster.wait_all_workers_up()
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
        row = next(line for line in result.stdout.splitlines() if line.startswith(scenario.label))
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


@pytest.mark.long
@pytest.mark.slow
def test_a_vanished_worker_host_fires_the_absent_alert_and_leaves_no_process(
    cluster: Cluster,
) -> None:
    assert cluster.has_absent_alert, f"prometheus/rules define no alert {ABSENT_ALERT}"
    targets = cluster.wait_all_workers_up()
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
    tree = {worker.pid, *(int(p) for p in children(worker.pid))}
    killed = cluster.network.remove_host(cluster.prefork)  # by pid, then the namespace goes
    worker.wait(10)
    assert tree <= set(killed), (tree, killed)
    assert cluster.prefork.processes_inside() == []
    assert cluster.prefork.name not in ip("netns", "list").stdout
    # The kernel tears a namespace's devices down in a work queue after its last user left.
    wait_for(
        lambda: cluster.prefork.port_on_bridge not in cluster.network.bridge_ports(),
        30,
        what="the vanished host's port off the bridge",
    )

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
